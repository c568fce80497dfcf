"""Who holds and who waits: ``flom --status``, ``flom -V`` while waiting, the daemon's
per-lock log lines (issue 10, items 2-4), with real daemons, clients and certificates."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys

import pytest

import pyflom
from conftest import FlomSandbox, wait_for
from pki import (  # noqa: F401
    CaFiles,
    NodeFiles,
    Standard,
    certs_fixture,
    pki_fixture,
    tls_options,
)
from pyflom import codec
from pyflom.settings import Settings
from pyflom.status import format_table, query_status
from pyflom.uniqueid import peer_id


def status(box: FlomSandbox, *args: str) -> dict[str, object]:
    result = box.run("--status=json", *args)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert isinstance(document, dict)
    return document


def entries(document: dict[str, object], name: str) -> dict[str, list[dict[str, object]]]:
    for res in document["resources"]:  # type: ignore[attr-defined]
        if res["name"] == name:
            return res  # type: ignore[no-any-return]
    raise AssertionError(f"no resource {name!r} in {document}")


def start_holder(box: FlomSandbox, *args: str) -> subprocess.Popen[str]:
    """``flom ARGS -- sh`` whose command holds the lock until it reads a line."""
    proc = box.start("-d", "-1", *args, "--", "sh", "-c", "echo held; read _", stdin=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "held\n"
    return proc


def start_waiter(box: FlomSandbox, *args: str) -> subprocess.Popen[str]:
    return box.start("-d", "-1", *args, "--", "true")


def waiters_of(box: FlomSandbox, name: str) -> int:
    document = status(box, "-r", name)
    resources = document["resources"]
    assert isinstance(resources, list)
    return len(resources[0]["waiters"]) if resources else 0  # type: ignore[no-any-return]


def release(proc: subprocess.Popen[str]) -> None:
    """Let a holder's command end (it reads one line), so that it unlocks."""
    assert proc.stdin is not None
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert proc.wait(timeout=60) == 0


def test_status_lists_holders_and_waiters_in_queue_order(sandbox: FlomSandbox) -> None:
    holder = start_holder(sandbox, "-r", "foo", "-l", "PR")
    first = start_waiter(sandbox, "-r", "foo", "-l", "EX")
    assert wait_for(lambda: waiters_of(sandbox, "foo") == 1, timeout=30)
    second = start_waiter(sandbox, "-r", "foo", "-l", "PW")
    assert wait_for(lambda: waiters_of(sandbox, "foo") == 2, timeout=30)

    document = status(sandbox)
    assert document["pyflom_status"] == 1
    daemon = document["daemon"]
    assert isinstance(daemon, dict) and daemon["pid"] == sandbox.remember_daemon()
    foo = entries(document, "foo")
    assert foo["type"] == "simple"  # type: ignore[comparison-overlap]
    (held,) = foo["holders"]
    assert held["mode"] == "PR" and held["pid"] == holder.pid and held["peer"] == "localhost/"
    assert held["user"] == os.getuid() and held["element"] is None
    assert isinstance(held["generation"], int) and float(held["held_s"]) >= 0  # type: ignore[arg-type]
    assert [(w["position"], w["pid"], w["mode"]) for w in foo["waiters"]] == [
        (1, first.pid, "EX"),
        (2, second.pid, "PW"),
    ]

    table = sandbox.run("--status")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith(f"daemon pid {daemon['pid']}, unique id ")
    assert lines[1].split() == [
        "RESOURCE", "TYPE", "STATE", "POS", "PEER", "LOCK", "ELEMENT", "GENERATION", "FOR",
    ]  # fmt: skip
    rows = [line.split() for line in lines[2:]]
    assert [row[:4] for row in rows] == [
        ["foo", "simple", "holds", "localhost/"],
        ["foo", "simple", "waits", "1"],
        ["foo", "simple", "waits", "2"],
    ]
    assert f"pid {holder.pid}" in lines[2] and f"pid {second.pid}" in lines[4]

    # The first waiter leaves (killed): the second moves up.
    first.kill()
    first.wait(timeout=30)
    assert wait_for(lambda: waiters_of(sandbox, "foo") == 1, timeout=30)
    (left,) = entries(status(sandbox), "foo")["waiters"]
    assert (left["position"], left["pid"]) == (1, second.pid)
    release(holder)
    assert second.wait(timeout=60) == 0


def test_status_of_every_resource_type_and_the_incubator(sandbox: FlomSandbox) -> None:
    procs = [
        start_holder(sandbox, "-r", "num[5]", "-q", "3"),
        start_holder(sandbox, "-r", "_s_seq[1]"),
        start_holder(sandbox, "-r", "red.green"),
        start_holder(sandbox, "-r", "/top/mid", "-l", "CR"),
    ]
    start_waiter(sandbox, "-r", "/top/mid/leaf", "-l", "EX")
    incubated = start_waiter(sandbox, "-r", "later", "-e", "no")

    def settled() -> bool:
        doc = status(sandbox)
        return len(doc["incubator"]) == 1 and len(entries(doc, "/top/mid")["waiters"]) == 1  # type: ignore[arg-type]

    assert wait_for(settled, timeout=30)
    document = status(sandbox)
    (numeric,) = entries(document, "num[5]")["holders"]
    assert (numeric["quantity"], numeric["mode"]) == (3, None)
    (sequence,) = entries(document, "_s_seq[1]")["holders"]
    assert sequence["element"] == "1"
    (member,) = entries(document, "red.green")["holders"]
    assert member["element"] in ("red", "green")
    top = entries(document, "/top/mid")  # a hierarchical resource: its creator's name
    assert top["type"] == "hierarchical"  # type: ignore[comparison-overlap]
    assert [(h["name"], h["mode"]) for h in top["holders"]] == [("/top/mid", "CR")]
    assert [(w["name"], w["mode"]) for w in top["waiters"]] == [("/top/mid/leaf", "EX")]
    (incubating,) = document["incubator"]  # type: ignore[misc]
    assert incubating["name"] == "later" and incubating["pid"] == incubated.pid
    assert "incubates" in sandbox.run("--status").stdout

    # -r narrows the answer to the resource that name locks.
    only = status(sandbox, "-r", "/top/other")
    assert [r["name"] for r in only["resources"]] == ["/top/mid"]  # type: ignore[attr-defined]
    assert only["incubator"] == []
    assert status(sandbox, "-r", "later")["incubator"] != []
    assert status(sandbox, "-r", "absent")["resources"] == []
    for proc in procs:
        release(proc)


def test_status_of_an_idle_daemon_and_of_no_daemon(sandbox: FlomSandbox) -> None:
    absent = sandbox.run("--status")
    assert absent.returncode == 99 and absent.stdout == ""
    assert "no daemon answers" in absent.stderr and "nothing is locked" in absent.stderr
    assert sandbox.remember_daemon() is None  # a status query never starts a daemon
    assert sandbox.run("-d", "-1", "--", "true").returncode == 0
    table = sandbox.run("--status")
    assert table.returncode == 0
    assert table.stdout.endswith("nothing is held, waited for or incubated\n")
    bad = sandbox.run("--status=xml")
    assert bad.returncode == 99 and "--status=json" in bad.stderr


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_status_over_tcp_names_the_peer_by_address(sandbox: FlomSandbox) -> None:
    where = ["-a", "127.0.0.1", "-p", str(free_tcp_port())]
    command = ["sh", "-c", "echo held; read _"]
    holder = subprocess.Popen(
        sandbox.args("-d", "-1", *where, "-r", "net", "--", *command, socket_name=False),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=sandbox.env,
    )
    sandbox.started.append(holder)
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    settings = Settings(unicast_address="127.0.0.1", unicast_port=int(where[3]))
    document = query_status(settings)
    (held,) = entries(document, "net")["holders"]
    assert re.fullmatch(r"127\.0\.0\.1/\d+", str(held["peer"])) and held["pid"] is None
    release(holder)
    assert sandbox.run(*where, "-X", socket_name=False).returncode == 0


def tls(node: NodeFiles, ca: CaFiles) -> list[str]:
    return tls_options(node, ca, check=True)


def test_status_over_tls_at_level_3(sandbox: FlomSandbox, certs: Standard) -> None:
    trace = sandbox.path("daemon.trc")
    daemon_side = tls(certs.peer1, certs.ca1)
    holder = start_holder(sandbox, "-t", str(trace), *daemon_side, "-r", "secret")
    result = sandbox.run("--status=json", *tls(certs.peer2, certs.ca1))
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["daemon"]["tls"] is True
    (held,) = entries(document, "secret")["holders"]
    assert held["certificate_cn"] == peer_id()
    # Without TLS files: refused, named.
    plain = sandbox.run("--status")
    assert plain.returncode == 99 and "TLS" in plain.stderr
    # A certificate whose CN is not the unique id: refused with the reason code.
    wrong = sandbox.run("--status", *tls(certs.peer3, certs.ca1))
    assert wrong.returncode == 99 and wrong.stdout == ""
    assert "refused the status query" in wrong.stderr
    assert "FLM013E" in trace.read_text()
    release(holder)


def test_a_status_query_on_a_locking_connection_is_a_protocol_error(
    sandbox: FlomSandbox,
) -> None:
    assert sandbox.run("-d", "-1", "--", "true").returncode == 0
    handle = pyflom.Handle("mine", socket_name=sandbox.socket, keep_connection=True)
    handle.lock()
    channel = handle.connection
    assert channel is not None
    channel.send(codec.StatusRequest("", None))
    with pytest.raises(pyflom.FlomError):
        channel.receive()  # the daemon closed the connection, releasing the lock
    handle.abandon()
    # The daemon goes on serving others.
    assert sandbox.run("-r", "mine", "-o", "5000", "--", "true").returncode == 0


def test_verbose_says_what_a_waiting_request_waits_for(sandbox: FlomSandbox) -> None:
    holder = start_holder(sandbox, "-r", "busy", "-l", "PW")
    waiter = start_waiter(sandbox, "-V", "-r", "busy", "-l", "EX")
    assert waiter.stdout is not None
    line = ""
    while not line.startswith("waiting for"):
        line = waiter.stdout.readline()
        assert line, "the waiter said nothing about its wait"
    assert line.startswith(f"waiting for 'busy': held by localhost/ pid {holder.pid} (PW, for ")
    assert line.rstrip().endswith("position 1 of 1 in the queue")
    release(holder)
    assert waiter.wait(timeout=60) == 0
    incubated = sandbox.run("-V", "-r", "nothing", "-e", "no", "-o", "300", "--", "true")
    assert "waiting for resource 'nothing' to be created by another requester" in (incubated.stdout)
    # Without -V nothing is said.
    holder = start_holder(sandbox, "-r", "busy")
    quiet = start_waiter(sandbox, "-r", "busy")
    assert wait_for(lambda: waiters_of(sandbox, "busy") == 1, timeout=30)
    release(holder)
    out, _ = quiet.communicate(timeout=60)
    assert out == ""


# -- per-lock log lines -------------------------------------------------------------------


def test_the_log_has_one_line_per_lock_event(sandbox: FlomSandbox) -> None:
    trace = sandbox.path("daemon.trc")
    holder = start_holder(sandbox, "-t", str(trace), "-r", "res", "-l", "PR")
    busy = sandbox.run("-r", "res", "-o", "0", "--", "true")
    assert busy.returncode == 98
    waiter = start_waiter(sandbox, "-r", "res", "-l", "EX")
    assert wait_for(lambda: waiters_of(sandbox, "res") == 1, timeout=30)
    leaver = start_waiter(sandbox, "-r", "res", "-l", "EX")
    assert wait_for(lambda: waiters_of(sandbox, "res") == 2, timeout=30)
    leaver.kill()
    leaver.wait(timeout=30)
    release(holder)
    assert waiter.wait(timeout=60) == 0
    assert sandbox.run("-r", "n[1]", "-q", "2", "--", "true").returncode == 99

    def lines(ident: str) -> list[str]:
        return [line for line in trace.read_text().splitlines() if ident in line]

    assert wait_for(lambda: len(lines("FLM051I")) == 2, timeout=30)
    (granted_pr, granted_ex) = lines("FLM050I")
    assert "granted 'res' (PR) to connection" in granted_pr
    assert f"(localhost/ pid {holder.pid}), generation " in granted_pr
    assert f"pid {waiter.pid}), generation" in granted_ex
    refusals = lines("FLM052I")
    assert "refused 'res' (EX)" in refusals[0] and "(reason code 4)" in refusals[0]
    assert "refused 'n[1]' (EX x2)" in refusals[1] and "(reason code 6)" in refusals[1]
    assert [f"pid {waiter.pid}" in line for line in lines("FLM054I")] == [True, False]
    (lost,) = lines("FLM053I")
    assert f"pid {leaver.pid}) went away while waiting for 'res': left the queue" in lost
    assert f"pid {holder.pid}) released 'res'" in lines("FLM051I")[0]
    order = [line.split()[3] for line in trace.read_text().splitlines() if " FLM05" in line]
    assert order == [
        "FLM050I", "FLM052I", "FLM054I", "FLM054I", "FLM053I", "FLM051I", "FLM050I",
        "FLM051I", "FLM052I",
    ]  # fmt: skip


def test_log_level_notice_leaves_lock_events_out(sandbox: FlomSandbox) -> None:
    trace = sandbox.path("daemon.trc")
    env = {**sandbox.env, "PYFLOM_LOG_LEVEL": "notice"}
    argv = sandbox.args("-d", "300", "-t", str(trace), "--", "true")
    assert subprocess.run(argv, env=env, timeout=60).returncode == 0
    assert wait_for(lambda: "FLM004N" in trace.read_text(), timeout=30)
    text = trace.read_text()
    assert "FLM003N" in text and "FLM05" not in text
    env["PYFLOM_LOG_LEVEL"] = "chatty"
    refused = subprocess.run(argv, env=env, timeout=60, capture_output=True, text=True)
    assert refused.returncode == 99
    assert "log level 'chatty' ($PYFLOM_LOG_LEVEL) is not one of err, warning" in refused.stderr


def foreground_daemon(box: FlomSandbox, *args: str) -> subprocess.Popen[bytes]:
    if os.path.exists("/dev/log"):
        pytest.skip("this machine has a syslog socket: the daemon logs there, not to stderr")
    argv = [sys.executable, "-m", "pyflom.daemon", "--socket-name", box.socket, *args]
    proc = subprocess.Popen(argv, env=box.env, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    assert wait_for(lambda: box.remember_daemon() is not None, timeout=30)
    return proc


def test_a_foreground_daemon_without_syslog_logs_to_stderr(sandbox: FlomSandbox) -> None:
    proc = foreground_daemon(sandbox, "--lifespan", "3000")
    assert sandbox.run("-r", "shown", "--", "true").returncode == 0
    _, err = proc.communicate(timeout=60)
    text = err.decode()
    assert f"flom[{proc.pid}] notice: FLM003N ready to serve requests" in text
    assert re.search(rf"flom\[{proc.pid}\] info: FLM050I granted 'shown' \(EX\)", text), text
    assert f"flom[{proc.pid}] notice: FLM004N idle" in text


def test_a_stderr_nobody_reads_never_blocks_the_daemon(sandbox: FlomSandbox) -> None:
    """3000 lock events make some 300 KB of log, far more than a pipe holds (64 KiB):
    the daemon keeps serving while nobody reads its stderr."""
    proc = foreground_daemon(sandbox, "--lifespan", "-1")
    handle = pyflom.Handle("spam", socket_name=sandbox.socket, keep_connection=True, timeout=30)
    for _ in range(1500):
        handle.lock()
        handle.unlock()
    handle.close()
    assert sandbox.run("-r", "after", "-o", "10000", "--", "true").returncode == 0
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert b"log line(s) dropped" in err or err.count(b"FLM050I") == 1501


def test_format_table_of_a_hand_made_document() -> None:
    document: dict[str, object] = {
        "pyflom_status": 1,
        "daemon": {
            "pid": 7,
            "peer_id": "",
            "started": 0.0,
            "now": 4000.0,
            "connections": 2,
            "lifespan_ms": 5000,
            "tls": True,
        },
        "resources": [
            {
                "id": 3,
                "name": "r",
                "type": "simple",
                "holders": [
                    {
                        "peer": "10.0.0.1/5",
                        "pid": None,
                        "certificate_cn": "node-a",
                        "mode": "EX",
                        "quantity": None,
                        "element": None,
                        "generation": 42,
                        "held_s": 75.0,
                        "name": "r",
                    }
                ],
                "waiters": [],
            }
        ],
        "incubator": [],
    }
    text = format_table(document)
    assert text.splitlines()[0] == (
        "daemon pid 7, unique id -, up 1h06m, 2 connection(s), 1 resource(s), TLS"
    )
    assert text.splitlines()[2].split() == [
        "r", "simple", "holds", "10.0.0.1/5", "cn", "node-a", "EX", "-", "42", "1m15s",
    ]  # fmt: skip


def test_the_status_module_stays_off_the_command_path() -> None:
    code = "import sys, pyflom.cli; print('pyflom.status' in sys.modules, 'json' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
