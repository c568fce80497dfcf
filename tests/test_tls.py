"""Security levels 2 (TLS, same CA) and 3 (peer id = certificate CN), with real
certificates made by the test (tests/pki.py) and real daemons.

FLoM's tls.at.in and the TLS part of debug-features.at, in our words: same CA,
different CA, wrong key, wrong CA on either side, wrong id with and without checks,
shutdown over TLS; plus plain/TLS mismatches, which must fail fast.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from conftest import FLOM, FlomSandbox, daemon_pid, process_alive, wait_for
from pki import Standard, certs_fixture, pki_fixture, tls_options  # noqa: F401
from pyflom.uniqueid import peer_id
from vhosts import VirtualNetwork, vnet_fixture  # noqa: F401

FAST_S = 8.0  # a mismatch must fail well before the 10 s handshake timeout


tls = tls_options


def start_daemon(box: FlomSandbox, *args: str) -> int:
    """Start a TLS daemon that lives until the test ends; return its PID."""
    result = box.run("-d", "-1", *args, "--", "true")
    assert result.returncode == 0, result.stderr
    pid = box.remember_daemon()
    assert pid is not None
    return pid


def timed(box: FlomSandbox, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    begin = time.monotonic()
    result = box.run(*args)
    return result, time.monotonic() - begin


# -- level 2: channel encryption ------------------------------------------------------------


def test_local_socket_tls(sandbox: FlomSandbox, certs: Standard) -> None:
    args = tls(certs.peer1, certs.ca1)
    result = sandbox.run("-d", "3000", *args, "--", "echo", "encrypted")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "encrypted\n"
    # A plain client cannot use the TLS daemon, and says so quickly.
    plain, seconds = timed(sandbox, "-d", "0", "--", "true")
    assert plain.returncode == 99
    assert seconds < FAST_S


def test_local_socket_check_peer_id(sandbox: FlomSandbox, certs: Standard) -> None:
    args = tls(certs.peer1, certs.ca1, check=True)
    assert sandbox.run("-d", "3000", *args, "--", "true").returncode == 0
    result = sandbox.run(*args, "--", "echo", "checked")
    assert result.returncode == 0 and result.stdout == "checked\n", result.stderr


def test_client_and_daemon_with_their_own_certificates(
    sandbox: FlomSandbox, certs: Standard
) -> None:
    start_daemon(sandbox, *tls(certs.peer1, certs.ca1, check=True))
    result = sandbox.run(*tls(certs.peer2, certs.ca1, check=True), "--", "true")
    assert result.returncode == 0, result.stderr


def test_different_ca_is_refused(sandbox: FlomSandbox, certs: Standard) -> None:
    start_daemon(sandbox, *tls(certs.peer1, certs.ca1, check=True))
    result, seconds = timed(sandbox, *tls(certs.other, certs.ca2, check=True), "--", "true")
    assert result.returncode == 99
    assert seconds < FAST_S
    assert "refused the daemon's certificate" in result.stderr
    assert "TLS-UNTRUSTED-PEER" in result.stderr


def test_wrong_daemon_key_is_named_before_anything_starts(
    sandbox: FlomSandbox, certs: Standard
) -> None:
    # The starter's key does not belong to its certificate: nothing is started.
    args = [
        f"--tls-certificate={certs.peer1.cert}",
        f"--tls-private-key={certs.peer2.key}",
        f"--tls-ca-certificate={certs.ca1.cert}",
    ]
    result = sandbox.run("-d", "3000", *args, "--", "true")
    assert result.returncode == 99
    assert "ret_cod=-404" in result.stderr
    assert "does not belong to certificate" in result.stderr
    assert daemon_pid(sandbox.socket) is None


def test_wrong_client_key(sandbox: FlomSandbox, certs: Standard) -> None:
    start_daemon(sandbox, *tls(certs.peer1, certs.ca1))
    args = [
        f"--tls-certificate={certs.peer2.cert}",
        f"--tls-private-key={certs.peer1.key}",
        f"--tls-ca-certificate={certs.ca1.cert}",
    ]
    result = sandbox.run(*args, "--", "true")
    assert result.returncode == 99
    assert "does not belong to certificate" in result.stderr


def test_wrong_ca_on_the_daemon_side(sandbox: FlomSandbox, certs: Standard) -> None:
    # The daemon trusts ca2 only: it refuses a ca1 client (TLS 1.3: after the handshake).
    start_daemon(sandbox, *tls(certs.other, certs.ca2))
    result, seconds = timed(sandbox, *tls(certs.peer2, certs.ca2), "--", "true")
    assert result.returncode == 99
    assert seconds < FAST_S
    assert "TLS-PEER-DISTRUSTS-US" in result.stderr
    assert "the daemon refused this client's certificate" in result.stderr


def test_wrong_ca_on_the_client_side(sandbox: FlomSandbox, certs: Standard) -> None:
    start_daemon(sandbox, *tls(certs.peer1, certs.ca1))
    result = sandbox.run(*tls(certs.peer2, certs.ca2), "--", "true")
    assert result.returncode == 99
    assert "this client refused the daemon's certificate" in result.stderr


def test_tls_client_against_a_plain_daemon_fails_fast(
    sandbox: FlomSandbox, certs: Standard
) -> None:
    start_daemon(sandbox)
    result, seconds = timed(sandbox, *tls(certs.peer1, certs.ca1), "--", "true")
    assert result.returncode == 99
    assert seconds < FAST_S
    assert "TLS-CLOSED-IN-HANDSHAKE" in result.stderr


def test_plain_client_against_a_tls_daemon_fails_fast(
    sandbox: FlomSandbox, certs: Standard
) -> None:
    trace = sandbox.path("daemon.trc")
    start_daemon(sandbox, "-t", str(trace), *tls(certs.peer1, certs.ca1))
    result, seconds = timed(sandbox, "--", "true")
    assert result.returncode == 99
    assert seconds < FAST_S
    assert wait_for(lambda: "TLS-PEER-NOT-TLS" in trace.read_text())


# -- level 3: peer id = certificate CN ------------------------------------------------------


def test_wrong_client_id_without_daemon_check(sandbox: FlomSandbox, certs: Standard) -> None:
    start_daemon(sandbox, *tls(certs.peer1, certs.ca1))
    assert sandbox.run(*tls(certs.peer3, certs.ca1), "--", "true").returncode == 0


def test_wrong_client_id_with_daemon_check(sandbox: FlomSandbox, certs: Standard) -> None:
    trace = sandbox.path("daemon.trc")
    start_daemon(sandbox, "-t", str(trace), *tls(certs.peer1, certs.ca1, check=True))
    result = sandbox.run(*tls(certs.peer3, certs.ca1), "--", "true")
    assert result.returncode == 99
    log = trace.read_text()
    assert "FLM013E" in log
    assert f"its certificate CN is '{certs.peer3.cn}'" in log
    assert f"announced unique id '{peer_id()}'" in log


def test_wrong_daemon_id_without_client_check(sandbox: FlomSandbox, certs: Standard) -> None:
    start_daemon(sandbox, *tls(certs.peer3, certs.ca1))
    assert sandbox.run(*tls(certs.peer2, certs.ca1), "--", "true").returncode == 0


def test_wrong_daemon_id_with_client_check(sandbox: FlomSandbox, certs: Standard) -> None:
    start_daemon(sandbox, *tls(certs.peer3, certs.ca1))
    result = sandbox.run(*tls(certs.peer2, certs.ca1, check=True), "--", "echo", "ran")
    assert result.returncode == 99
    assert result.stdout == ""  # the command never ran
    assert "ret_cod=-23" in result.stderr
    assert f"certificate CN is '{certs.peer3.cn}'" in result.stderr


# -- shutdown over TLS --------------------------------------------------------------------


def test_shutdown_over_tls(sandbox: FlomSandbox, certs: Standard) -> None:
    pid = start_daemon(sandbox, *tls(certs.peer1, certs.ca1))
    result = sandbox.run(*tls(certs.peer2, certs.ca1), "-X")
    assert result.returncode == 0, result.stderr
    assert wait_for(lambda: not process_alive(pid))


def test_quiesce_over_tls(sandbox: FlomSandbox, certs: Standard) -> None:
    pid = start_daemon(sandbox, *tls(certs.peer1, certs.ca1))
    assert sandbox.run(*tls(certs.peer2, certs.ca1), "-x").returncode == 0
    assert wait_for(lambda: not process_alive(pid))


@pytest.mark.parametrize("wrong", ["different CA", "wrong key"])
def test_shutdown_with_bad_credentials_is_refused(
    sandbox: FlomSandbox, certs: Standard, wrong: str
) -> None:
    pid = start_daemon(sandbox, *tls(certs.peer1, certs.ca1))
    if wrong == "different CA":
        bad = tls(certs.other, certs.ca2)
    else:
        bad = [
            f"--tls-certificate={certs.peer2.cert}",
            f"--tls-private-key={certs.peer1.key}",
            f"--tls-ca-certificate={certs.ca1.cert}",
        ]
    assert sandbox.run(*bad, "-X").returncode == 99
    time.sleep(0.5)
    assert process_alive(pid)
    assert sandbox.run(*tls(certs.peer2, certs.ca1), "-X").returncode == 0
    assert wait_for(lambda: not process_alive(pid))


def test_shutdown_refused_by_the_peer_id_check_says_so(
    sandbox: FlomSandbox, certs: Standard
) -> None:
    # FLoM's client exits 0 here although nothing happened (Q14); pyflom says "refused".
    pid = start_daemon(sandbox, *tls(certs.peer1, certs.ca1, check=True))
    result = sandbox.run(*tls(certs.peer3, certs.ca1), "-X")
    assert result.returncode == 99
    assert "refused the shutdown" in result.stderr
    time.sleep(0.5)
    assert process_alive(pid)
    assert sandbox.run(*tls(certs.peer2, certs.ca1), "-X").returncode == 0
    assert wait_for(lambda: not process_alive(pid))


# -- the daemon's TLS files ---------------------------------------------------------------


def test_daemon_picks_up_new_files(sandbox: FlomSandbox, certs: Standard) -> None:
    # The daemon's CA file is replaced by ca2: ca1 clients are refused from then on.
    ca_file = sandbox.path("ca.crt")
    shutil.copy(certs.ca1.cert, ca_file)
    daemon_args = [
        f"--tls-certificate={certs.peer1.cert}",
        f"--tls-private-key={certs.peer1.key}",
        f"--tls-ca-certificate={ca_file}",
    ]
    start_daemon(sandbox, *daemon_args)
    client = tls(certs.peer2, certs.ca1)
    assert sandbox.run(*client, "--", "true").returncode == 0
    replacement = sandbox.path("ca.new")
    shutil.copy(certs.ca2.cert, replacement)
    os.replace(replacement, ca_file)
    assert wait_for(lambda: sandbox.run(*client, "--", "true").returncode == 99, timeout=15)


def test_library_resumes_tls_sessions(sandbox: FlomSandbox, certs: Standard) -> None:
    import pyflom

    start_daemon(sandbox, *tls(certs.peer1, certs.ca1))
    settings = pyflom.Settings(
        socket_name=sandbox.socket,
        tls_certificate=str(certs.peer2.cert),
        tls_private_key=str(certs.peer2.key),
        tls_ca_certificate=str(certs.ca1.cert),
        tls_check_peer_id=True,
    )
    reused = []
    for _ in range(3):
        handle = pyflom.Handle("R", settings=settings)
        handle.lock()
        reused.append(handle._channel.sock.session_reused)  # type: ignore[union-attr]
        handle.close()
    assert reused[1:] == [True, True]


# -- debug features -----------------------------------------------------------------------


def tls_pair(
    net_host: object, server_args: list[str], client_args: list[str]
) -> tuple[int, int, str]:
    """Run tls.server and tls.client against each other; (server ES, client ES, client
    stderr)."""
    host = net_host
    port = "28400"
    server = host.start(  # type: ignore[attr-defined]
        [FLOM, "--debug-feature=tls.server", "-a", "127.0.0.1", "-p", port, *server_args]
    )

    def client_done() -> subprocess.CompletedProcess[str] | None:
        result = host.run(  # type: ignore[attr-defined]
            [FLOM, "--debug-feature=TLS.Client", "-a", "127.0.0.1", "-p", port, *client_args]
        )
        refused = "Connection refused" in result.stderr
        return None if refused else result

    result = None
    deadline = time.monotonic() + 30
    while result is None and time.monotonic() < deadline:
        result = client_done()
    assert result is not None, "the tls.server never listened"
    server.wait(timeout=30)
    return server.returncode, result.returncode, result.stderr


@pytest.mark.parametrize(
    ("case", "server_ok", "client_ok"),
    [
        ("basic handshake", True, True),
        ("mutual authentication", True, True),
        ("different certification authorities", None, False),
        ("wrong private key", None, False),
        ("wrong certification authority", None, False),
        ("wrong unique id", True, False),
    ],
)
def test_tls_debug_features(
    vnet: VirtualNetwork, certs: Standard, case: str, server_ok: bool | None, client_ok: bool
) -> None:
    server = tls(certs.peer1, certs.ca1)
    client = tls(certs.peer2, certs.ca1)
    if case == "mutual authentication":
        server, client = (
            tls(certs.peer1, certs.ca1, check=True),
            tls(certs.peer2, certs.ca1, check=True),
        )
    elif case == "different certification authorities":
        client = tls(certs.other, certs.ca2)
    elif case == "wrong private key":
        client = [client[0], f"--tls-private-key={certs.peer1.key}", client[2]]
    elif case == "wrong certification authority":
        client = tls(certs.peer2, certs.ca2)
    elif case == "wrong unique id":
        server, client = tls(certs.peer3, certs.ca1), tls(certs.peer2, certs.ca1, check=True)
    host = vnet["a"]
    if case == "wrong private key":
        # The client cannot even load its files: it says so without connecting.
        result = host.run([FLOM, "--debug-feature=tls.client", "-a", "127.0.0.1", *client])
        assert result.returncode == 1
        assert "does not belong to certificate" in result.stderr
        return
    server_es, client_es, client_err = tls_pair(host, server, client)
    assert (client_es == 0) is client_ok, client_err
    if server_ok is not None:
        assert (server_es == 0) is server_ok
    if case == "wrong unique id":
        assert "FLM013E" in client_err and certs.peer3.cn in client_err


def test_level_3_across_hosts(vnet: VirtualNetwork, sandbox: FlomSandbox, certs: Standard) -> None:
    a, b, c = vnet["a"], vnet["b"], vnet["c"]

    def flom(host: object, *args: str) -> subprocess.CompletedProcess[str]:
        return host.run([FLOM, *args], env=sandbox.env)  # type: ignore[attr-defined,no-any-return]

    reach = ["-a", a.ipv4]
    started = flom(a, *reach, "-d", "-1", *tls(certs.peer1, certs.ca1, check=True), "--", "true")
    assert started.returncode == 0, started.stderr
    good = flom(b, *reach, "-d", "0", *tls(certs.peer2, certs.ca1, check=True), "--", "echo", "in")
    assert good.returncode == 0 and good.stdout == "in\n", good.stderr
    wrong_id = flom(c, *reach, "-d", "0", *tls(certs.peer3, certs.ca1), "--", "echo", "in")
    assert wrong_id.returncode == 99 and wrong_id.stdout == ""
    plain = flom(c, *reach, "-d", "0", "--", "echo", "in")
    assert plain.returncode == 99 and plain.stdout == ""


def test_tls_after_multicast_discovery(
    vnet: VirtualNetwork, sandbox: FlomSandbox, certs: Standard
) -> None:
    # Discovery is plain UDP (as FLoM); the TCP connection it leads to is TLS.
    a, b = vnet["a"], vnet["b"]
    group = ["-A", "239.77.0.9"]
    daemon_side = tls(certs.peer1, certs.ca1, check=True)
    started = a.run([FLOM, *group, "-d", "-1", *daemon_side, "--", "true"], env=sandbox.env)
    assert started.returncode == 0, started.stderr
    found = b.run(
        [FLOM, *group, "-d", "0", *tls(certs.peer2, certs.ca1, check=True), "--", "echo", "ok"],
        env=sandbox.env,
    )
    assert found.returncode == 0 and found.stdout == "ok\n", found.stderr
    plain = b.run([FLOM, *group, "-d", "0", "--", "echo", "ok"], env=sandbox.env)
    assert plain.returncode == 99 and plain.stdout == ""


# -- the lock's connection over TLS (issue 9) ------------------------------------------------


def test_tls_lost_lock_terminates_the_command(sandbox: FlomSandbox, certs: Standard) -> None:
    args = tls(certs.peer1, certs.ca1)
    pid = start_daemon(sandbox, *args)
    script = 'echo $$ > cmd.pid; trap "touch got-term; exit 3" TERM; while :; do sleep 0.05; done'
    holder = sandbox.start(*args, "-r", "R", "--", "sh", "-c", script)
    assert wait_for(lambda: sandbox.path("cmd.pid").exists(), timeout=20)
    # TLS records after the grant (session tickets) are no loss: the lock is still held.
    assert sandbox.run(*args, "-r", "R", "-o", "0", "--", "true").returncode == 98
    assert holder.poll() is None
    os.kill(pid, 9)
    assert holder.wait(timeout=30) == 99
    assert sandbox.path("got-term").exists()
    assert "lost the lock on 'R'" in holder.communicate()[1]


def test_tls_killed_flom_keeps_the_lock_while_the_command_runs(
    sandbox: FlomSandbox, certs: Standard
) -> None:
    args = tls(certs.peer1, certs.ca1)
    start_daemon(sandbox, *args)
    holder = sandbox.start(*args, "-r", "R", "--", "sh", "-c", "echo $$ > cmd.pid; exec sleep 120")
    pid_file = sandbox.path("cmd.pid")
    assert wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), timeout=20)
    command = int(pid_file.read_text())
    holder.kill()
    holder.wait(timeout=10)
    assert sandbox.run(*args, "-r", "R", "-o", "0", "--", "true").returncode == 98
    os.kill(command, 9)
    assert sandbox.run(*args, "-r", "R", "-o", "20000", "--", "true").returncode == 0


def test_the_commands_key_log_and_trace_are_complete_when_it_exits(
    sandbox: FlomSandbox, certs: Standard
) -> None:
    # flom leaves without the interpreter's teardown (pyflom.__main__): whatever it wrote
    # to its TLS key log and record trace must be in the files by then.
    start_daemon(sandbox, *tls_options(certs.peer1, certs.ca1))
    keys, trace = sandbox.path("keys.log"), sandbox.path("tls.trace")
    result = sandbox.run(
        *tls_options(certs.peer2, certs.ca1),
        f"--tls-keylog={keys}",
        f"--tls-trace={trace}",
        "--",
        "true",
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in keys.read_text().splitlines() if not line.startswith("#")]
    assert any(line.startswith("CLIENT_TRAFFIC_SECRET_0 ") for line in lines), lines
    assert all(line.count(" ") == 2 for line in lines), lines  # whole lines only
    assert "established TLSv1.3" in trace.read_text()
