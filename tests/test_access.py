"""Access rules (issue 16, item 7): who may lock which resources, read the status and
stop the daemon, by uid/gid (UNIX socket), certificate CN (TLS) or IP network (TCP).

The matcher and the parser are pure (src/pyflom/daemon/access.py) and tested as such;
the rest runs real daemons and real clients, over UNIX with a second real user, TCP and
TLS with two certificates of one CA.
"""

from __future__ import annotations

import copy
import json
import os
import posixpath
import random
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import FLOM, FlomSandbox, process_alive, wait_for
from pki import Pki, pki_fixture, tls_options  # noqa: F401
from pyflom import rc
from pyflom.daemon.access import (
    LOCK,
    RIGHTS,
    STATUS,
    STOP,
    AccessRulesError,
    Peer,
    allowed,
    matches,
    parse_rules,
)
from pyflom.daemon.log import REPEAT_BURST
from pyflom.names import ResourceType, resource_type
from vhosts import VirtualHost, VirtualNetwork, vnet_fixture  # noqa: F401

OTHER_UID = 54321  # no passwd entry needed
OTHER_GID = 54321
NOT_ALLOWED = f"ret_cod={rc.NOT_ALLOWED}"


# -- the matcher and the parser (pure) ------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("*", "anything", True),
        ("*", "/a/b", True),
        ("db", "db", True),
        ("db", "dbx", False),
        ("db", "d", False),
        ("db*", "db", True),
        ("db*", "dbx", True),
        ("db*", "db.red.green", True),
        ("db*", "xdb", False),
        ("/a*", "/ab", True),  # a string prefix: documented
        ("/a/", "/a/b", True),
        ("/a/", "/a/b/c", True),
        ("/a/", "/a", False),  # strictly below
        ("/a/", "/ab", False),  # a path prefix, not a string prefix
        ("/a/", "/ab/c", False),
        ("/a/", "/a/./b", False),
        ("/a/", "/a/../b", False),
        ("/a/", "/a/b/..", False),
        ("/a/", "/a//b", False),
        ("/a/b/", "/a/b/c", True),
        ("/a/b/", "/a/bc", False),
        ("/a/b", "/a/b", True),
        ("/a/b", "/a/b/c", False),
    ],
)
def test_resource_patterns(pattern: str, name: str, expected: bool) -> None:
    assert matches(pattern, name) is expected


_LEVELS = st.sampled_from(["a", "b", "ab", ".", "..", "", "a.b", "x"])
_NAMES = st.lists(_LEVELS, min_size=1, max_size=5).map(lambda levels: "/" + "/".join(levels))
_PREFIXES = st.lists(st.sampled_from(["a", "b", "ab", "x"]), min_size=1, max_size=3)


@given(_PREFIXES, _NAMES)
def test_a_path_prefix_is_never_escaped(prefix_levels: list[str], name: str) -> None:
    """A '/p/' rule covers exactly the names strictly below /p: whatever the name's
    levels ('.', '..', empty ones), what it matches resolves below /p, and every valid
    hierarchical name below /p is matched."""
    pattern = "/" + "/".join(prefix_levels) + "/"
    levels = name.split("/")[1:]
    below = levels[: len(prefix_levels)] == prefix_levels and len(levels) > len(prefix_levels)
    if matches(pattern, name):
        assert below
        assert posixpath.normpath(name).startswith(pattern)
        assert resource_type(name) == ResourceType.HIERARCHICAL
    elif resource_type(name) is not None:
        assert not below


_PEERS = st.builds(
    Peer,
    uid=st.sampled_from([None, 0, 1001]),
    gid=st.sampled_from([None, 0, 100]),
    groups=st.sampled_from([frozenset(), frozenset({100}), frozenset({5, 7})]),
    cn=st.sampled_from([None, "alice", "bob"]),
    address=st.sampled_from([None, "127.0.0.1", "10.1.2.3", "::1"]).map(
        lambda a: None if a is None else __import__("ipaddress").ip_address(a)
    ),
)
_WHO = st.sampled_from(
    ["*", "uid:0", "uid:1001", "gid:100", "cn:alice", "cn:bob", "net:127.0.0.0/8",
     "net:10.0.0.0/8", "net:::1/128"]
)  # fmt: skip
_RULE = st.tuples(
    _WHO,
    st.sets(st.sampled_from(RIGHTS), min_size=1),
    st.lists(st.sampled_from(["*", "db", "db*", "/a/", "/a/b"]), min_size=1, max_size=2),
).map(lambda r: f"{r[0]} {','.join(sorted(r[1]))} {' '.join(r[2]) if LOCK in r[1] else ''}")
_RESOURCES = st.sampled_from(["db", "dbx", "x", "/a", "/a/b", "/a/b/c", "/ab"])


@given(st.lists(_RULE, min_size=1, max_size=6), _PEERS, st.sampled_from(RIGHTS), _RESOURCES)
def test_rules_only_grant_and_their_order_does_not_matter(
    lines: list[str], peer: Peer, right: str, resource: str
) -> None:
    rules = parse_rules("\n".join(lines), "rules")
    verdict = allowed(rules, peer, right, resource)
    # The union of the rules, each on its own: a rule can only add rights.
    assert verdict == any(allowed([rule], peer, right, resource) for rule in rules)
    shuffled = list(rules)
    random.Random(len(lines)).shuffle(shuffled)
    assert allowed(shuffled, peer, right, resource) == verdict


def test_who_matches_what() -> None:
    import ipaddress

    rules = parse_rules(
        """
        # comments and blank lines are ignored
        uid:1001          lock        db /jobs/   # a comment after a rule
        gid:100           status
        cn:"deploy bot"   lock,stop   *
        net:10.0.0.0/8    lock        web*
        *                 lock        public
        """,
        "rules",
    )
    unix = Peer(uid=1001, gid=1001, groups=frozenset({100}))
    assert allowed(rules, unix, LOCK, "db") and allowed(rules, unix, LOCK, "/jobs/x")
    assert allowed(rules, unix, STATUS) and not allowed(rules, unix, STOP)
    assert not allowed(rules, unix, LOCK, "web1") and allowed(rules, unix, LOCK, "public")
    bot = Peer(cn="deploy bot", address=ipaddress.ip_address("192.168.1.1"))
    assert allowed(rules, bot, LOCK, "anything") and allowed(rules, bot, STOP)
    assert not allowed(rules, bot, STATUS)
    tcp = Peer(address=ipaddress.ip_address("10.2.3.4"))
    assert allowed(rules, tcp, LOCK, "web1") and not allowed(rules, tcp, LOCK, "db")
    v6 = Peer(address=ipaddress.ip_address("::ffff:10.2.3.4"))  # never normalised here
    assert not allowed(rules, v6, LOCK, "web1")
    nobody = Peer()
    assert allowed(rules, nobody, LOCK, "public") and not allowed(rules, nobody, LOCK, "db")


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("uid:0", "no rights"),
        ("uid:0 lock", "'lock' needs the resources"),
        ("uid:0 status db", "without the 'lock' right"),
        ("uid:0 lock,delete *", "unknown right 'delete'"),
        ("uid:0 lock, *", "unknown right ''"),
        ("user:0 lock *", "is not a peer"),
        ("uid: lock *", "is not a peer"),
        ("uid:no-such-user-here lock *", "no user named 'no-such-user-here'"),
        ("gid:no-such-group-here status", "no group named"),
        ("net:10.0.0.1/8 lock *", "has host bits set"),
        ("net:nowhere lock *", "does not appear to be an IPv4 or IPv6"),
        ("uid:0 lock d*b", "'*' may only end a pattern"),
        ("uid:0 lock db-x", "is not a resource name"),
        ("uid:0 lock jobs/", "a path prefix is a hierarchical name"),
        ("uid:0 lock /a/../b/", "a path prefix is a hierarchical name"),
        ('cn:"unclosed lock *', "No closing quotation"),
    ],
)
def test_a_bad_line_is_named_with_its_problem(line: str, problem: str) -> None:
    with pytest.raises(AccessRulesError) as caught:
        parse_rules(f"# rules\nuid:0 stop\n{line}\n", "/etc/flom.rules")
    assert str(caught.value).startswith("/etc/flom.rules:3: ")
    assert problem in str(caught.value)


def test_a_file_without_rules_is_refused() -> None:
    with pytest.raises(AccessRulesError, match="no rule: the daemon would refuse everything"):
        parse_rules("# nothing\n\n", "rules")


# -- real daemons ---------------------------------------------------------------------------


def as_user(uid: int, gid: int, *groups: int) -> list[str]:
    """The command prefix that runs a program as ``uid``/``gid`` with the supplementary
    ``groups`` only.

    It keeps one capability, CAP_DAC_READ_SEARCH (read and search any directory): the
    test's interpreter may live where only root can reach (/root).  It gives no right to
    write or connect to a socket it could not otherwise: the daemon sees ``uid``."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv (util-linux) to run a client as another user")
    return [
        setpriv,
        f"--reuid={uid}",
        f"--regid={gid}",
        f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups",
        "--inh-caps=+dac_read_search",
        "--ambient-caps=+dac_read_search",
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Daemon:
    """A daemon started (by root, umask 000: other users may connect) with access rules,
    and helpers to run clients against it."""

    def __init__(
        self, box: FlomSandbox, where: list[str], rules: str | None, lock: str = "db"
    ) -> None:
        self.box = box
        self.where = where
        self.trace = box.path("daemon.trace")
        os.chmod(box.root, 0o755)  # other users reach the socket through it
        args = ["-d", "-1", "-t", str(self.trace)]
        if rules is not None:
            self.rules = box.path("rules")
            self.rules.write_text(rules)
            args += ["--access-rules", str(self.rules)]
        result = self.run(*args, "-r", lock, "--", "true", umask=0)
        assert result.returncode == 0, result.stderr
        self.pid = box.remember_daemon() if "-s" in where else self._pid_from_trace()
        assert self.pid is not None
        box.daemon_pids.add(self.pid)

    def _pid_from_trace(self) -> int:
        status = json.loads(self.run("--status=json").stdout)
        return int(status["daemon"]["pid"])

    def run(
        self, *args: str, user: tuple[int, ...] | None = None, umask: int | None = None
    ) -> subprocess.CompletedProcess[str]:
        prefix = [] if user is None else as_user(*user)
        return subprocess.run(
            [*prefix, *self.box.args(*self.where, *args, socket_name=False)],
            capture_output=True,
            text=True,
            timeout=60,
            env=self.box.env,
            cwd=self.box.root,
            preexec_fn=None if umask is None else (lambda: os.umask(umask)),
        )

    def client(self, where: list[str]) -> Daemon:
        """The same daemon, reached with other client options (another certificate)."""
        other = copy.copy(self)
        other.where = where
        return other

    def status(self, user: tuple[int, ...] | None = None) -> dict[str, object]:
        result = self.run("--status=json", user=user)
        assert result.returncode == 0, result.stderr
        document: dict[str, object] = json.loads(result.stdout)
        return document

    def log(self) -> str:
        return self.trace.read_text() if self.trace.exists() else ""


def held_names(document: dict[str, object]) -> set[str]:
    resources = document["resources"]
    assert isinstance(resources, list)
    return {h["name"] for r in resources for h in r["holders"]}


@pytest.fixture
def holders() -> Iterator[list[subprocess.Popen[str]]]:
    """Root's holding ``flom -- cat`` processes: ended at teardown (see :func:`release`)."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    release(procs)


def hold(daemon: Daemon, name: str, procs: list[subprocess.Popen[str]]) -> None:
    """Root holds ``name`` (a ``flom -- cat`` process) until :func:`release`."""
    proc = subprocess.Popen(
        daemon.box.args(*daemon.where, "-r", name, "--", "cat", socket_name=False),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=daemon.box.env,
        cwd=daemon.box.root,
        text=True,
    )
    procs.append(proc)
    assert wait_for(lambda: name in held_names(daemon.status()), timeout=20)


def release(procs: list[subprocess.Popen[str]]) -> None:
    """End the holders: ``cat`` ends with its input, then ``flom`` unlocks and exits."""
    for proc in procs:
        if proc.stdin is not None and not proc.stdin.closed:
            proc.stdin.close()
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


UNIX_RULES = """\
# root may do everything; the other user may lock db and what is below /jobs
uid:0           lock,status,stop   *
uid:54321       lock               db /jobs/
"""


def test_unix_two_users(sandbox: FlomSandbox, holders: list[subprocess.Popen[str]]) -> None:
    daemon = Daemon(sandbox, ["-s", sandbox.socket], UNIX_RULES)
    other = (OTHER_UID, OTHER_GID)
    # Allowed: the command runs.
    for name in ("db", "/jobs/nightly/1"):
        result = daemon.run("-r", name, "--", "echo", "ran", user=other)
        assert (result.returncode, result.stdout) == (0, "ran\n"), result.stderr
    # Refused: the command never runs; the reason code and the plain message.
    for name in ("payroll", "/jobs", "/jobsx/1"):
        result = daemon.run("-r", name, "--", "echo", "ran", user=other)
        assert result.returncode == 99 and result.stdout == ""
        assert NOT_ALLOWED in result.stderr
        assert f"not allowed to lock '{name}' as uid {OTHER_UID}, gid {OTHER_GID}" in result.stderr
        assert "--access-rules" in result.stderr  # what to do
    assert wait_for(lambda: "FLM080W refused to lock 'payroll'" in daemon.log())
    assert f"as uid {OTHER_UID} (gid {OTHER_GID})" in daemon.log()
    # The status: everything for root, only what it may lock for the other user.
    hold(daemon, "db", holders)
    hold(daemon, "payroll", holders)
    hold(daemon, "/jobs/x", holders)  # a node below /jobs (the resource is named /jobs)
    hold(daemon, "/web/y", holders)
    assert held_names(daemon.status()) == {"db", "payroll", "/jobs/x", "/web/y"}
    seen = daemon.status(user=other)
    assert held_names(seen) == {"db", "/jobs/x"}
    assert seen["daemon"]["view"] == "lockable"  # type: ignore[index]
    assert "view" not in daemon.status()["daemon"]  # type: ignore[operator]
    table = daemon.run("--status", user=other)
    assert "only the resources this client may lock are shown" in table.stdout
    assert "payroll" not in table.stdout
    # -x/-X: refused and said so; the daemon stays.
    for flag in ("-x", "-X"):
        result = daemon.run(flag, user=other)
        assert result.returncode == 99
        assert NOT_ALLOWED in result.stderr
        assert "not allowed to stop the daemon (-x/-X) as uid 54321" in result.stderr
    assert wait_for(lambda: "FLM080W refused to stop the daemon" in daemon.log())
    assert process_alive(daemon.pid)
    assert daemon.run("-r", "db", "-o", "0", "--", "true", user=other).returncode == 98  # busy
    release(holders)
    assert daemon.run("-X").returncode == 0  # root has the right
    assert wait_for(lambda: not process_alive(daemon.pid))


def test_group_rule_and_no_rights_at_all(sandbox: FlomSandbox) -> None:
    rules = "uid:0 lock,status,stop *\ngid:54322 status\ngid:54323 lock R\n"
    daemon = Daemon(sandbox, ["-s", sandbox.socket], rules)
    staff = (OTHER_UID + 2, 54322)  # by its primary group
    assert "view" not in daemon.status(user=staff)["daemon"]  # type: ignore[operator]
    assert daemon.run("-r", "R", "--", "true", user=staff).returncode == 99
    member = (OTHER_UID + 3, OTHER_GID + 3, 54323)  # by a supplementary group
    assert daemon.run("-r", "R", "--", "true", user=member).returncode == 0
    # A peer with no right at all reads no status either.
    result = daemon.run("--status", user=(OTHER_UID, OTHER_GID))
    assert result.returncode == 99 and result.stdout == ""
    assert "not allowed to read the status as uid 54321" in result.stderr


def test_without_rules_everyone_may_do_everything(sandbox: FlomSandbox) -> None:
    daemon = Daemon(sandbox, ["-s", sandbox.socket], None)
    other = (OTHER_UID, OTHER_GID)
    assert daemon.run("-r", "payroll", "--", "true", user=other).returncode == 0
    assert "view" not in daemon.status(user=other)["daemon"]  # type: ignore[operator]
    assert daemon.run("-X", user=other).returncode == 0
    assert wait_for(lambda: not process_alive(daemon.pid))


def test_tcp_by_network(sandbox: FlomSandbox, holders: list[subprocess.Popen[str]]) -> None:
    where = ["-a", "127.0.0.1", "-p", str(free_port())]
    daemon = Daemon(sandbox, where, "net:127.0.0.0/8 lock db\nnet:10.0.0.0/8 lock,status,stop *\n")
    assert daemon.run("-r", "db", "--", "true").returncode == 0
    result = daemon.run("-r", "payroll", "--", "true")
    assert result.returncode == 99 and NOT_ALLOWED in result.stderr
    assert "not allowed to lock 'payroll' as address 127.0.0.1" in result.stderr
    assert wait_for(lambda: "FLM080W refused to lock 'payroll'" in daemon.log())
    assert "as 127.0.0.1: no rule of" in daemon.log()
    hold(daemon, "db", holders)
    assert daemon.status()["daemon"]["view"] == "lockable"  # type: ignore[index]
    result = daemon.run("-X")
    assert result.returncode == 99 and "not allowed to stop the daemon" in result.stderr
    assert process_alive(daemon.pid)
    # The other network's rights are not ours; a rules file that gives ours the right:
    daemon.rules.write_text("net:127.0.0.0/8 lock,status,stop *\n")
    os.kill(daemon.pid, signal.SIGHUP)  # read again: new requests follow the new rules
    assert wait_for(lambda: "FLM081N access rules reloaded" in daemon.log())
    assert "view" not in daemon.status()["daemon"]  # type: ignore[operator]
    assert daemon.run("-r", "payroll", "--", "true").returncode == 0
    release(holders)
    assert daemon.run("-X").returncode == 0
    assert wait_for(lambda: not process_alive(daemon.pid))


def test_tls_by_certificate_cn(
    sandbox: FlomSandbox, pki: Pki, holders: list[subprocess.Popen[str]]
) -> None:
    ca = pki.ca("ca1")
    alice = pki.node("access-alice", "alice", ca="ca1")
    bob = pki.node("access-bob", "bob", ca="ca1")
    rules = "cn:alice lock,status,stop *\ncn:bob lock db\n"
    where = ["-a", "127.0.0.1", "-p", str(free_port())]
    # The daemon gets the certificate of the client that starts it: alice's here.
    as_alice = Daemon(sandbox, [*where, *tls_options(alice, ca)], rules)
    as_bob = as_alice.client([*where, *tls_options(bob, ca)])
    daemon = as_alice
    assert as_bob.run("-r", "db", "--", "true").returncode == 0
    result = as_bob.run("-r", "payroll", "--", "true")
    assert result.returncode == 99 and NOT_ALLOWED in result.stderr
    assert "not allowed to lock 'payroll' as address 127.0.0.1 with certificate CN 'bob'" in (
        result.stderr
    )
    assert wait_for(lambda: "certificate CN 'bob': no rule of" in daemon.log())
    hold(as_alice, "payroll", holders)
    hold(as_alice, "db", holders)
    assert held_names(as_alice.status()) == {"db", "payroll"}
    assert held_names(as_bob.status()) == {"db"}
    result = as_bob.run("-X")
    assert result.returncode == 99 and "not allowed to stop the daemon" in result.stderr
    assert process_alive(daemon.pid)
    release(holders)
    assert as_alice.run("-X").returncode == 0
    assert wait_for(lambda: not process_alive(daemon.pid))


def test_a_bad_rules_file_stops_the_start(sandbox: FlomSandbox) -> None:
    rules = sandbox.path("rules")
    rules.write_text("# rules\nuid:0 lock,status,stop *\nuid:0 lock db-x\n")
    result = sandbox.run("--access-rules", str(rules), "--", "echo", "ran")
    assert result.returncode == 99 and result.stdout == ""
    assert f"the daemon did not start: {rules}:3: 'db-x' is not a resource name" in result.stderr
    assert not Path(sandbox.socket).exists()


def test_the_rules_hold_on_the_etcd_backend(
    sandbox: FlomSandbox, etcd_shared: Any, holders: list[subprocess.Popen[str]]
) -> None:
    pytest.importorskip("etcd3aio")
    backend = [
        "--backend",
        "etcd://" + ",".join(etcd_shared.endpoints),
        f"--etcd-key-prefix=/access-{uuid.uuid4().hex}/",
    ]
    daemon = Daemon(sandbox, ["-s", sandbox.socket, *backend], UNIX_RULES)
    other = (OTHER_UID, OTHER_GID)
    assert daemon.run("-r", "/jobs/a", "--", "true", user=other).returncode == 0
    result = daemon.run("-r", "payroll", "--", "echo", "ran", user=other)
    assert result.returncode == 99 and result.stdout == "" and NOT_ALLOWED in result.stderr
    hold(daemon, "db", holders)
    hold(daemon, "payroll", holders)
    seen = daemon.status(user=other)  # a gateway's status, read from etcd, filtered
    assert held_names(seen) == {"db"}
    assert seen["daemon"]["view"] == "lockable"  # type: ignore[index]
    assert daemon.run("-X", user=other).returncode == 99
    assert process_alive(daemon.pid)
    release(holders)
    assert daemon.run("-X").returncode == 0
    assert wait_for(lambda: not process_alive(daemon.pid))


def test_a_service_daemon_takes_a_relative_rules_file(sandbox: FlomSandbox) -> None:
    # `python -m pyflom.daemon` (a systemd unit, docs/service.md) runs in "/" once
    # started: a relative rules file is read from where it was started.
    sandbox.path("rules").write_text("uid:0 lock db\n")
    daemon = subprocess.Popen(
        [
            *(sys.executable, "-m", "pyflom.daemon", "--socket-name", sandbox.socket),
            *("--lifespan", "-1", "--access-rules", "rules"),
        ],
        cwd=sandbox.root,
        env=sandbox.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(lambda: Path(sandbox.socket).exists() or daemon.poll() is not None)
        assert daemon.poll() is None, daemon.communicate()[1]
        assert sandbox.run("-r", "db", "--", "true").returncode == 0
        assert NOT_ALLOWED in sandbox.run("-r", "other", "--", "true").stderr
    finally:
        daemon.terminate()
        daemon.communicate(timeout=20)


def test_tcp_networks_across_hosts(vnet: VirtualNetwork, sandbox: FlomSandbox) -> None:
    a, b, c = vnet["a"], vnet["b"], vnet["c"]
    rules = sandbox.path("rules")
    rules.write_text(f"net:{b.ipv4}/32 lock,status,stop *\nnet:10.77.0.0/24 lock db\n")

    def flom(host: VirtualHost, *args: str) -> subprocess.CompletedProcess[str]:
        return host.run([FLOM, "-a", a.ipv4, *args], env=sandbox.env)

    started = flom(a, "-d", "-1", "--access-rules", str(rules), "-r", "db", "--", "true")
    assert started.returncode == 0, started.stderr
    assert flom(c, "-r", "db", "--", "true").returncode == 0
    refused = flom(c, "-r", "payroll", "--", "echo", "ran")
    assert refused.returncode == 99 and refused.stdout == ""
    assert f"not allowed to lock 'payroll' as address {c.ipv4}" in refused.stderr
    assert "not allowed to stop" in flom(c, "-X").stderr
    assert flom(b, "-r", "payroll", "--", "true").returncode == 0
    assert "view" not in json.loads(flom(b, "--status=json").stdout)["daemon"]
    assert json.loads(flom(c, "--status=json").stdout)["daemon"]["view"] == "lockable"
    assert flom(b, "-X").returncode == 0
    assert wait_for(lambda: flom(b, "--status").returncode != 0)


def test_the_library_raises_not_allowed(sandbox: FlomSandbox) -> None:
    import asyncio

    import pyflom
    import pyflom.aio

    daemon = Daemon(sandbox, ["-s", sandbox.socket], "uid:0 lock db\n")
    handle = pyflom.Handle("payroll", socket_name=sandbox.socket)
    with pytest.raises(pyflom.NotAllowed) as caught:
        handle.lock()
    assert caught.value.rc == rc.NOT_ALLOWED
    assert str(caught.value).startswith("not allowed to lock 'payroll' as user 'root' (uid 0)")

    async def main() -> None:
        async with pyflom.aio.lock("payroll", socket_name=sandbox.socket):
            pass

    with pytest.raises(pyflom.NotAllowed, match="not allowed to lock 'payroll' as user 'root'"):
        asyncio.run(main())
    with pyflom.lock("db", socket_name=sandbox.socket):
        pass
    # The daemon's FLM080W lines are limited per peer like every warning (FLM060W then
    # sums up the rest once the window ends).
    for _ in range(REPEAT_BURST * 2):
        with pytest.raises(pyflom.NotAllowed):
            handle.lock()
    assert wait_for(lambda: daemon.log().count("FLM080W") == REPEAT_BURST)
    assert daemon.run("-r", "db", "--", "true").returncode == 0  # the log is in step
    assert daemon.log().count("FLM080W") == REPEAT_BURST
