"""Failure semantics of pyflom gateways on etcd (issue 18, item 3), with real processes.

Every "host" is a gateway daemon on a UNIX socket of its own, started on demand by a
``flom`` command with ``--backend=etcd://...``; all of a test's gateways share one lock
space (a key prefix of the test's own) on a real 3-member etcd cluster.  Each locked
command writes ``TAG.enter``/``TAG.exit`` timestamps and its ``FLOM_LOCK_GENERATION``
to files: safety is measured from them (an incompatible holder enters only after the
previous one exited), as is every figure reported in docs/ha.md's failure table.

Short settings keep the file fast: lock-loss grace 1 s and lease TTL 6 s, the least the
rule allows (TTL >= grace + 5 s); a gateway then drops its holders 3 s after its last
confirmed lease renewal.  ``pytest -s -p no:xdist tests/test_etcd_gateway.py`` prints
the figures (``[measured]`` lines).
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conftest import FLOM, FlomSandbox, daemon_pid, process_alive, wait_for

pytest.importorskip("etcd3aio")

TTL = 6  # s: the least lease TTL allowed with GRACE_MS
GRACE_MS = 1000
RENEW_S = 1.0  # a gateway renews its lease every second (etcd/backend.py)
DROP_AFTER = TTL - GRACE_MS / 1000 - 2  # s after the last confirmed renewal


def command(tag: str, hold: bool = True, linger: float = 0) -> str:
    """A locked command: stamps TAG.enter, TAG.gen, then (``hold``) runs until TAG.go
    (or all.go, at the end of the test) exists; stamps TAG.exit when it ends, normally
    or by SIGTERM: then it cleans up for ``linger`` seconds, stamping TAG.exit every
    0.1 s (the last stamp is the last moment it ran, even if SIGKILL cut it short),
    and exits 3."""
    wait = f"while [ ! -e {tag}.go ] && [ ! -e all.go ]; do sleep 0.05; done; " if hold else ""
    stamp = f"date +%s.%N > {tag}.exit"
    steps = round(linger * 10)
    cleanup = f"i=0; while [ $i -lt {steps} ]; do {stamp}; sleep 0.1; i=$((i+1)); done; "
    return (
        f"date +%s.%N > {tag}.enter; echo $FLOM_LOCK_GENERATION > {tag}.gen; "
        f"trap '{cleanup}{stamp}; exit 3' TERM; {wait}{stamp}"
    )


@dataclass
class LockSpace:
    """The test's gateways: one etcd cluster, one key prefix, the short settings."""

    box: FlomSandbox
    endpoints: list[str]
    prefix: str
    ttl: int = TTL
    hosts: list[Host] = field(default_factory=list)  # their gateways end with the test

    @property
    def url(self) -> str:
        return "etcd://" + ",".join(self.endpoints)

    def host(self, name: str, endpoints: list[str] | None = None, ttl: int | None = None) -> Host:
        host = Host(self, name, endpoints, ttl or self.ttl)
        self.hosts.append(host)
        return host

    def stamp(self, name: str, timeout: float = 30) -> float:
        path = self.box.path(name)
        assert wait_for(lambda: path.exists() and path.read_text().strip(), timeout), name
        return float(path.read_text())

    def generation(self, tag: str) -> int:
        return int(self.stamp(f"{tag}.gen"))

    def go(self, tag: str) -> None:
        self.box.path(f"{tag}.go").touch()


@dataclass
class Host:
    """One host: its gateway's socket and log, and the flom commands run there."""

    space: LockSpace
    name: str
    endpoints: list[str] | None = None  # the members this host reaches (default: all)
    ttl: int = TTL  # its gateway's lease TTL

    @property
    def socket(self) -> str:
        return str(self.space.box.root / f"gw-{self.name}")

    @property
    def log(self) -> Path:
        return self.space.box.root / f"gw-{self.name}.log"

    @property
    def members(self) -> list[str]:
        return self.endpoints or self.space.endpoints

    def args(self, *more: str) -> list[str]:
        return [
            "-s", self.socket, "--backend=etcd://" + ",".join(self.members),
            f"--etcd-key-prefix={self.space.prefix}", f"--etcd-lease-ttl={self.ttl}",
            f"--lock-loss-grace={GRACE_MS}", "-d", "-1", "-t", str(self.log), *more,
        ]  # fmt: skip

    def start(
        self, tag: str, resource: str = "R", hold: bool = True, linger: float = 0, *more: str
    ) -> subprocess.Popen[str]:
        """``flom ... MORE -r RESOURCE -- sh -c command(tag)`` in the background."""
        return self.space.box.start(
            *self.args(*more, "-r", resource, "--", "sh", "-c", command(tag, hold, linger)),
            socket_name=False,
        )

    def pid(self) -> int:
        """The gateway's pid (it must be running)."""
        assert wait_for(lambda: daemon_pid(self.socket) is not None, timeout=30), self.name
        pid = daemon_pid(self.socket)
        assert pid is not None
        self.space.box.daemon_pids.add(pid)
        return pid

    def status(self, must: bool = True) -> dict[str, Any]:
        """The cluster's status through this host's gateway (``must``: it runs; else
        an empty dict when it does not answer, e.g. while it starts)."""
        done = self.space.box.run("-s", self.socket, "--status=json", socket_name=False)
        if done.returncode != 0 and not must:
            return {}
        assert done.returncode == 0, done.stderr
        status: dict[str, Any] = json.loads(done.stdout)
        return status

    def gateway(self) -> str:
        return str(self.status()["daemon"]["gateway"])

    def wait_waiters(self, count: int = 1) -> dict[str, Any]:
        """The cluster's status once ``count`` requests wait (seen through this host)."""
        seen: dict[str, Any] = {}

        def waiting() -> bool:
            nonlocal seen
            seen = self.status(must=False)
            return sum(len(r["waiters"]) for r in seen.get("resources", ())) >= count

        assert wait_for(waiting, timeout=30, every=0.1), seen
        return seen


@pytest.fixture
def lock_space(sandbox: FlomSandbox) -> Iterator[Callable[..., LockSpace]]:
    """Makes the test's lock space on a cluster; at the end, every held command ends
    (all.go) before the sandbox ends the flom processes and gateways."""

    def make(cluster: Any, ttl: int = TTL) -> LockSpace:
        return LockSpace(sandbox, list(cluster.endpoints), f"/gw-{uuid.uuid4().hex[:10]}/", ttl)

    spaces: list[LockSpace] = []

    def made(cluster: Any, ttl: int = TTL) -> LockSpace:
        spaces.append(make(cluster, ttl))
        return spaces[-1]

    try:
        yield made
    finally:
        sandbox.path("all.go").touch()
        # Gateways live forever (-d -1): the sandbox ends every one by its pid, not only
        # those a test asked for (they were left running, retrying a cluster long gone).
        for space in spaces:
            for host in space.hosts:
                pid = daemon_pid(host.socket)
                if pid is not None:
                    sandbox.daemon_pids.add(pid)


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    """Wait for a started command: (exit status, stderr)."""
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def report(what: str, seconds: float) -> None:
    """A measured figure (shown with ``pytest -s``; docs/ha.md's table quotes them)."""
    print(f"\n[measured] {what}: {seconds:.2f} s")


# -- 1. one lock space across gateways ------------------------------------------------------


def test_two_gateways_order_a_holder_and_a_waiter(
    etcd_shared: Any, sandbox: FlomSandbox, lock_space: Any
) -> None:
    """Holder on A, waiter on B: granted after, with a larger generation; ``--status``
    through B shows both with their gateways; ``r[2]`` admits two holders across
    gateways and no third."""
    space = lock_space(etcd_shared)
    a, b = space.host("A"), space.host("B")
    first = a.start("a")
    space.stamp("a.enter")
    second = b.start("b")
    status = b.wait_waiters()
    (resource,) = status["resources"]
    gateways = {"A": a.gateway(), "B": status["daemon"]["gateway"]}
    assert gateways["A"] != gateways["B"]
    assert [h["gateway"] for h in resource["holders"]] == [gateways["A"]]
    assert [w["gateway"] for w in resource["waiters"]] == [gateways["B"]]
    space.go("a")
    space.go("b")
    assert finish(first)[0] == 0
    code, err = finish(second)
    assert code == 0, err
    assert space.stamp("b.enter") >= space.stamp("a.exit")
    assert space.generation("b") > space.generation("a")

    # numeric r[2]: n1 (A) and n2 (B) hold together, n3 (B) waits for one of them
    n1, n2 = a.start("n1", "N[2]"), b.start("n2", "N[2]")
    space.stamp("n1.enter")
    space.stamp("n2.enter")
    n3 = b.start("n3", "N[2]")
    b.wait_waiters()
    space.go("n1")
    assert space.stamp("n3.enter") >= space.stamp("n1.exit")
    assert not sandbox.path("n2.exit").exists()  # n2 and n3 hold together: capacity 2
    assert space.generation("n3") > space.generation("n1")
    for tag in ("n2", "n3"):
        space.go(tag)
    assert [finish(p)[0] for p in (n1, n2, n3)] == [0, 0, 0]


# -- 2. the host's configuration names the backend -----------------------------------------


def flom_at_home(box: FlomSandbox, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``flom ARGS`` with HOME=``home`` (whose ~/.flom, if any, is the host's settings)."""
    env = {**box.env, "HOME": str(home)}
    return subprocess.run(
        [FLOM, *args], capture_output=True, text=True, timeout=60, env=env, cwd=box.root
    )


def test_configured_backend_starts_a_gateway_and_mismatches_are_refused(
    etcd_shared: Any, sandbox: FlomSandbox, lock_space: Any
) -> None:
    """A client whose ~/.flom names the etcd backend and finds no daemon starts a gateway
    with that backend (never a memory daemon); a client refuses a daemon that keeps its
    locks elsewhere than its own configuration says, both ways, a gateway on another key
    prefix, and a gateway timed for a shorter lock-loss grace (exit 99, command not run)."""
    space = lock_space(etcd_shared)
    sandbox.path(".flom").write_text(
        f"[Daemon]\nBackend={space.url}\n[Etcd]\nKeyPrefix={space.prefix}\nLeaseTTL={TTL}\n"
        f"[Monitor]\nLockLossGrace={GRACE_MS}\n"
    )
    bare = sandbox.path("bare-home")  # a host without the setting
    bare.mkdir()
    here = sandbox.socket
    script = command("c")
    holder = sandbox.start("-d", "-1", "-r", "R", "--", "sh", "-c", script)  # HOME: .flom
    space.stamp("c.enter")
    pid = sandbox.remember_daemon()
    assert pid is not None
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert f"--backend={space.url}".encode() in cmdline or (
        b"--backend" in cmdline and space.url.encode() in cmdline
    ), cmdline
    # the lock is in etcd: another host's gateway sees it, held through this one
    other = space.host("other")
    seen = other.start("o", hold=False)
    status = other.wait_waiters()
    (resource,) = status["resources"]
    here_gateway = json.loads(sandbox.run("--status=json").stdout)["daemon"]["gateway"]
    assert [h["gateway"] for h in resource["holders"]] == [here_gateway]
    space.go("c")
    assert finish(holder)[0] == 0
    assert finish(seen)[0] == 0
    assert space.stamp("o.enter") >= space.stamp("c.exit")

    # a memory daemon runs, the host's configuration says etcd: refused
    memory = str(sandbox.root / "mem")
    started = flom_at_home(sandbox, bare, "-s", memory, "-d", "-1", "-r", "X", "--", "true")
    assert started.returncode == 0, started.stderr
    mem_pid = daemon_pid(memory)
    assert mem_pid is not None
    sandbox.daemon_pids.add(mem_pid)
    refused = flom_at_home(sandbox, sandbox.root, "-s", memory, "-r", "X", "--", "touch", "ran1")
    assert refused.returncode == 99, refused.stderr
    assert not sandbox.path("ran1").exists()
    assert f"daemon (pid {mem_pid}) keeps its locks in its memory" in refused.stderr
    assert space.url in refused.stderr and "flom -X" in refused.stderr

    # a gateway runs, a client of a host without the setting: refused too
    refused = flom_at_home(sandbox, bare, "-s", here, "-r", "X", "--", "touch", "ran2")
    assert refused.returncode == 99, refused.stderr
    assert not sandbox.path("ran2").exists()
    assert f"keeps its locks in etcd ({space.url})" in refused.stderr
    assert "the daemon's memory" in refused.stderr

    # the gateway's own settings, but another key prefix (another lock space: the same
    # lock could be granted in both), or a lock-loss grace longer than the one its lease
    # was timed for (cut off from etcd, the gateway drops the lock too late for such a
    # command: measured before this refusal, two holders for 1.9 s)
    for extra, why in (
        ("--etcd-key-prefix=/elsewhere/", f"under etcd key prefix '{space.prefix}'"),
        ("--lock-loss-grace=5000", "for a lock-loss grace of 1000 ms, but this command's is"),
    ):
        refused = flom_at_home(sandbox, sandbox.root, "-s", here, extra, "--", "touch", "ran3")
        assert refused.returncode == 99, refused.stderr
        assert why in refused.stderr, refused.stderr
        assert not sandbox.path("ran3").exists()
    assert "--lock-loss-grace=1000 or less" in refused.stderr
    shorter = flom_at_home(sandbox, sandbox.root, "-s", here, "--lock-loss-grace=500", "--", "true")
    assert shorter.returncode == 0, shorter.stderr


# -- 3. one etcd member of three lost -------------------------------------------------------


@pytest.mark.parametrize("fault", ["kill", "stop"])
def test_etcd_leader_lost_while_a_command_holds(
    etcd_cluster: Any, sandbox: FlomSandbox, lock_space: Any, fault: str
) -> None:
    """The etcd leader is SIGKILLed (or SIGSTOPped) while a command holds a lock through
    gateway A and another waits through gateway B: the holder's command completes
    normally (its lock was never lost), the waiter is granted after it, no overlap."""
    space = lock_space(etcd_cluster, ttl=10)  # no lease expires here
    a, b = space.host("A"), space.host("B")
    first = a.start("a")
    space.stamp("a.enter")
    second = b.start("b", hold=False)
    b.wait_waiters()
    leader = etcd_cluster.leader()
    stopped = []
    try:
        if fault == "kill":
            etcd_cluster.kill(leader)
        else:
            etcd_cluster.stop(leader)
            stopped.append(leader)
        faulted = time.time()
        time.sleep(1.5)  # a new leader is elected meanwhile (election timeout 0.5 s)
        space.go("a")
        code, err = finish(first)
        assert code == 0, err
        assert "lost the lock" not in err
        code, err = finish(second)
        assert code == 0, err
    finally:
        for i in stopped:
            etcd_cluster.cont(i)
    released, granted = space.stamp("a.exit"), space.stamp("b.enter")
    assert granted >= released, f"two holders for {released - granted:.3f} s"
    assert space.generation("b") > space.generation("a")
    report(f"leader {fault}: waiter granted after the holder's exit", granted - released)
    # a stopped member is found dead by gRPC keepalive within 6 s (5 s ping, 1 s to
    # answer); till then it takes its share of requests, each lost for 2 s
    assert granted - faulted < 10, granted - faulted
    report(f"leader {fault}: holder's exit after the fault (1.5 s hold)", released - faulted)
    assert "FLM070E" not in a.log.read_text()


# -- 4. a gateway SIGKILLed ----------------------------------------------------------------


def test_gateway_killed_its_command_stopped_waiter_granted_after_ttl(
    etcd_shared: Any, sandbox: FlomSandbox, lock_space: Any
) -> None:
    """Gateway A is SIGKILLed while its client's command holds: the client's lock-loss
    monitor ends the command (message, SIGTERM, exit 99) at once; the waiter on gateway
    B is granted when A's lease expires (TTL after A's last renewal), never before."""
    space = lock_space(etcd_shared)
    a, b = space.host("A"), space.host("B")
    first = a.start("a")
    space.stamp("a.enter")
    second = b.start("b", hold=False)
    b.wait_waiters()
    gateway = a.pid()
    os.kill(gateway, signal.SIGKILL)
    killed = time.time()
    code, err = finish(first)
    assert code == 99, err
    assert "lost the lock on 'R'" in err and "SIGTERM" in err
    code, err = finish(second)
    assert code == 0, err
    stopped, granted = space.stamp("a.exit"), space.stamp("b.enter")
    assert granted >= stopped, f"two holders for {stopped - granted:.3f} s"
    # released by the lease's expiry, not at the kill: the last renewal was confirmed
    # at most DROP_AFTER before it (a gateway that misses renewals longer drops its
    # holders itself), normally at most RENEW_S
    assert granted - killed > TTL - DROP_AFTER - 0.5
    assert space.generation("b") > space.generation("a")
    report("gateway SIGKILL: holder's command ended after the kill", stopped - killed)
    report(f"gateway SIGKILL: waiter granted after the kill (TTL {TTL} s)", granted - killed)


def test_gateway_stopped_ends_its_command_then_releases_at_once(
    etcd_shared: Any, sandbox: FlomSandbox, lock_space: Any
) -> None:
    """Gateway A gets SIGTERM while its client's command holds: the command is ended
    (exit 99), A keeps its lease until the command's connection closed, then revokes
    it: the waiter on B is granted after the command's end, without waiting for the TTL."""
    space = lock_space(etcd_shared)
    a, b = space.host("A"), space.host("B")
    first = a.start("a", "R", True, 0.5)  # cleans up for 0.5 s after SIGTERM
    space.stamp("a.enter")
    second = b.start("b", hold=False)
    b.wait_waiters()
    gateway = a.pid()
    os.kill(gateway, signal.SIGTERM)
    stopped = time.time()
    code, err = finish(first)
    assert code == 99, err
    assert "lost the lock on 'R'" in err
    code, err = finish(second)
    assert code == 0, err
    ended, granted = space.stamp("a.exit"), space.stamp("b.enter")
    assert granted >= ended, f"two holders for {ended - granted:.3f} s"
    assert granted - stopped < TTL - RENEW_S  # released, not expired
    assert wait_for(lambda: not process_alive(gateway), timeout=10)
    report("gateway SIGTERM: holder's command ended after it", ended - stopped)
    report("gateway SIGTERM: waiter granted after the command's end", granted - ended)


# -- 5. a gateway cut off from etcd --------------------------------------------------------


def test_gateway_cut_off_from_etcd_drops_its_holders_in_time(
    etcd_cluster: Any, sandbox: FlomSandbox, lock_space: Any
) -> None:
    """All three etcd members SIGSTOPped while a command holds through gateway A and
    another waits through B: A drops its holder (FLM070E) before its lease could expire,
    and the command is stopped (exit 99); once etcd runs again nothing is granted twice."""
    space = lock_space(etcd_cluster)
    a, b = space.host("A"), space.host("B")
    first = a.start("a")
    space.stamp("a.enter")
    second = b.start("b", hold=False)
    b.wait_waiters()
    try:
        for i in range(3):
            etcd_cluster.stop(i)
        cut = time.time()
        code, err = finish(first)
        dropped = space.stamp("a.exit")
    finally:
        for i in range(3):
            etcd_cluster.cont(i)
    assert code == 99, err
    assert "lost the lock on 'R'" in err
    assert "FLM070E" in a.log.read_text()
    # the lease's last renewal was sent at most RENEW_S before the cut: it cannot expire
    # before cut - RENEW_S + TTL
    assert dropped - cut < TTL - RENEW_S, dropped - cut
    report("etcd cut off: holder's command ended after the cut", dropped - cut)
    code, err = finish(second)
    if sandbox.path("b.enter").exists():  # still queued after the cut: granted after
        assert code == 0, err
        assert space.stamp("b.enter") >= dropped
        report(
            "etcd cut off: waiter granted after the holder ended", space.stamp("b.enter") - dropped
        )
    else:  # its gateway dropped it too (its place in the queue was on the lost lease)
        assert code != 0, err
    # the cluster serves again: a new command through A is granted
    again = a.start("c", hold=False)
    assert finish(again)[0] == 0
    assert space.generation("c") > space.generation("a")


def test_gateway_partitioned_from_etcd(
    etcd_cluster: Any, sandbox: FlomSandbox, lock_space: Any
) -> None:
    """Gateway A reaches only etcd member 0, gateway B the two others; member 0 is
    SIGSTOPped (A is cut off while B's side keeps a quorum, so B can grant).  A drops
    its holder before its lease can expire; the command's SIGTERM handler would clean
    up for 4 s, the monitor SIGKILLs it after the 1 s grace; B's waiter is granted when
    A's lease expired, after the command's last moment."""
    space = lock_space(etcd_cluster)
    a = space.host("A", etcd_cluster.endpoints[:1])
    # B's side keeps a quorum but must elect a new leader when member 0 led: a longer
    # TTL lets B ride that out on a busy machine (with 6 s, B may drop its waiter: no
    # renewal confirmed for 3 s; that costs the waiter its place, never safety)
    b = space.host("B", etcd_cluster.endpoints[1:], ttl=15)
    first = a.start("a", "R", True, 4)
    space.stamp("a.enter")
    second = b.start("b", hold=False)
    b.wait_waiters()
    etcd_cluster.stop(0)
    cut = time.time()
    try:
        code, err = finish(first)
        code2, err2 = finish(second)
    finally:
        etcd_cluster.cont(0)
    assert code == 99, err
    assert code2 == 0, err2
    dropped, granted = space.stamp("a.exit"), space.stamp("b.enter")
    report("partition: holder's command ended (SIGKILL) after the cut", dropped - cut)
    report("partition: waiter granted after the cut", granted - cut)
    assert granted >= dropped, f"two holders for {dropped - granted:.3f} s"
    assert "FLM070E" in a.log.read_text()


def test_gateway_paused_past_its_ttl_fencing_token_orders_holders(
    etcd_shared: Any, sandbox: FlomSandbox, lock_space: Any
) -> None:
    """Gateway A is SIGSTOPped (a VM freeze) longer than its lease TTL while its client's
    command holds.  A paused gateway cannot drop anyone, and its client still sees an
    open connection, so when the lease expires the waiter on B is granted while the
    first command still runs: two holders.  No lock service can prevent that alone; this
    is the case the fencing token is for.  The later grant's generation is larger than
    the paused holder's, so a storage system that remembers the largest generation it
    has seen and refuses smaller ones refuses the stale holder's writes.  Once A runs
    again it finds its lease gone and drops its holder (exit 99)."""
    space = lock_space(etcd_shared)
    a, b = space.host("A"), space.host("B")
    first = a.start("a")
    space.stamp("a.enter")
    second = b.start("b")
    b.wait_waiters()
    gateway = a.pid()
    os.kill(gateway, signal.SIGSTOP)
    paused = time.time()
    try:
        granted = space.stamp("b.enter", timeout=TTL + 20)
    finally:
        os.kill(gateway, signal.SIGCONT)
    resumed = time.time()
    assert not sandbox.path("a.exit").exists()  # the stale holder still runs
    assert space.generation("b") > space.generation("a")  # ... with the smaller token
    report(f"gateway SIGSTOP: waiter granted after the pause (TTL {TTL} s)", granted - paused)
    code, err = finish(first)
    assert code == 99, err
    assert "lost the lock on 'R'" in err
    report(
        "gateway SIGCONT: stale holder's command ended after it", space.stamp("a.exit") - resumed
    )
    assert "FLM070E" in a.log.read_text()
    space.go("b")
    assert finish(second)[0] == 0


# -- 6. bad input --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def refused_quickly(box: FlomSandbox, url: str, *extra: str) -> str:
    """``flom --backend=URL -- touch ran`` exits 99 within 30 s without running the
    command; its stderr."""
    began = time.monotonic()
    done = box.run(f"--backend={url}", *extra, "-r", "R", "--", "touch", "ran", timeout=60)
    took = time.monotonic() - began
    assert done.returncode == 99, done.stderr
    assert took < 30, took
    assert not box.path("ran").exists()
    assert daemon_pid(box.socket) is None  # no daemon was left behind to grant anything
    report(f"refused {url}", took)
    return done.stderr


def test_unreachable_endpoint_is_refused_naming_it(sandbox: FlomSandbox) -> None:
    port = free_port()
    err = refused_quickly(sandbox, f"etcd://127.0.0.1:{port}")
    assert f"127.0.0.1:{port}: connection refused" in err
    assert "is etcd running" in err and "client port" in err


def test_a_port_that_is_not_etcd_is_refused_naming_it(sandbox: FlomSandbox) -> None:
    """A port where an HTTP/1 server listens (a web server, a metrics port): not etcd's
    gRPC.  (etcd's own peer port would not do: etcd 3.4 serves gRPC there too.)"""

    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_PRI(self) -> None:  # the HTTP/2 preface, as an HTTP/1 server reads it
            self.send_error(400)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        where = f"127.0.0.1:{server.server_address[1]}"
        err = refused_quickly(sandbox, f"etcd://{where}")
    finally:
        server.shutdown()
        server.server_close()
    assert f"{where}: it does not speak gRPC: not an etcd client port" in err, err


def test_etcd_without_quorum_at_start_is_refused(etcd_cluster: Any, sandbox: FlomSandbox) -> None:
    etcd_cluster.kill(1)
    etcd_cluster.kill(2)
    err = refused_quickly(sandbox, "etcd://" + ",".join(etcd_cluster.endpoints))
    assert "no quorum" in err and "Start the stopped members" in err
    assert etcd_cluster.endpoints[0] in err


def test_lease_ttl_too_short_for_the_grace_is_refused(
    etcd_shared: Any, sandbox: FlomSandbox
) -> None:
    url = "etcd://" + ",".join(etcd_shared.endpoints)
    err = refused_quickly(sandbox, url, "--etcd-lease-ttl=5", f"--lock-loss-grace={GRACE_MS}")
    assert "lease TTL of 5 s is too short for a lock-loss grace of 1000 ms" in err
    assert "at least 6 s" in err
