"""A real etcd cluster on 127.0.0.1 for the etcd backend's tests.

``etcd_cluster`` (one test) and ``etcd_shared`` (one per xdist worker and module; never
kill, stop or restart its members, use a key prefix of your own) start three etcd members
with free ports, a unique ``--initial-cluster-token`` and their data under the test's
temporary directory, and wait until every member answers a quorum read (``/health``).
Every member is ended by PID at teardown: SIGTERM, then SIGKILL after a short wait
(members that lost quorum may ignore SIGTERM for seconds).

The etcd binary is ``$PYFLOM_ETCD_BIN``, else ``etcd`` on PATH, else the project-local
``.cache/etcd/usr/bin/etcd`` that ``make etcd`` unpacks from Debian's etcd-server package.
Without one the tests skip, unless ``PYFLOM_REQUIRE_ETCD=1`` (CI): then they fail.

Only the standard library is used here (HTTP to the client port), so the fixture works
whether or not the ``etcd`` extra (etcd3aio) is installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOCAL_ETCD = PROJECT_ROOT / ".cache" / "etcd" / "usr" / "bin" / "etcd"
INSTALL_HINT = (
    "run `make etcd` (unpacks Debian's etcd-server into .cache/etcd without starting a "
    "service), or install etcd 3.4+ on PATH, or set PYFLOM_ETCD_BIN=/path/to/etcd"
)
HOST = "127.0.0.1"
# Fast failover for tests: a leader is re-elected about one election timeout after it dies.
HEARTBEAT_MS = 50
ELECTION_MS = 500


def find_etcd() -> str | None:
    """Path of the etcd server binary, or None."""
    explicit = os.environ.get("PYFLOM_ETCD_BIN")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    on_path = shutil.which("etcd")
    if on_path:
        return on_path
    return str(LOCAL_ETCD) if os.access(LOCAL_ETCD, os.X_OK) else None


def require_etcd() -> str:
    """The etcd binary; skip the test without one (fail if PYFLOM_REQUIRE_ETCD=1)."""
    binary = find_etcd()
    if binary is not None:
        return binary
    where = os.environ.get("PYFLOM_ETCD_BIN")
    reason = (
        f"PYFLOM_ETCD_BIN={where} is not an executable file"
        if where
        else "no etcd server binary found"
    )
    if os.environ.get("PYFLOM_REQUIRE_ETCD") == "1":
        pytest.fail(f"PYFLOM_REQUIRE_ETCD=1 but {reason}: {INSTALL_HINT}")
    pytest.skip(f"{reason}: {INSTALL_HINT}")


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 right now."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def process_state(pid: int) -> str | None:
    """The kernel's one-letter state of ``pid`` (None if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


@dataclass
class EtcdMember:
    """One etcd server process of a cluster."""

    index: int
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    stopped: bool = False  # SIGSTOPped by the test
    member_id: str | None = None  # etcd's member ID (decimal string), learnt from Status

    @property
    def pid(self) -> int | None:
        """PID of the running process (None after kill())."""
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    @property
    def endpoint(self) -> str:
        return f"{HOST}:{self.client_port}"

    @property
    def client_url(self) -> str:
        return f"http://{HOST}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{HOST}:{self.peer_port}"

    @property
    def running(self) -> bool:
        """Started, not dead, not SIGSTOPped."""
        return self.pid is not None and not self.stopped

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


class EtcdClusterError(RuntimeError):
    """The test cluster could not be started or did not become healthy."""


class EtcdCluster:
    """A ``size``-member etcd cluster on 127.0.0.1 with its data under ``root``.

    ``endpoints`` are ``'127.0.0.1:PORT'`` client addresses, in member order; the methods
    take a member's index in that order.
    """

    def __init__(self, binary: str, root: Path, size: int = 3) -> None:
        self.binary = binary
        self.root = root
        self.size = size
        self.token = f"pyflom-test-{uuid.uuid4().hex[:12]}"
        self.members: list[EtcdMember] = []
        self.startup_seconds: float | None = None

    # -- life cycle ------------------------------------------------------------------------

    def start(self, timeout: float = 30.0, attempts: int = 3) -> None:
        """Start every member and wait until the cluster is healthy.

        A port taken by someone else between choosing and binding (other xdist workers
        choose at the same time) makes a member exit: then all start again on new ports.
        """
        began = time.monotonic()
        for attempt in range(attempts):
            self._lay_out(attempt)
            for member in self.members:
                self._spawn(member, initial=True)
            try:
                self.wait_healthy(timeout)
            except EtcdClusterError:
                taken = any("address already in use" in m.log_tail(50) for m in self.members)
                self.close()
                if taken and attempt + 1 < attempts:
                    continue
                raise
            self.startup_seconds = time.monotonic() - began
            return

    def _lay_out(self, attempt: int) -> None:
        ports = free_ports(2 * self.size)
        base = self.root / f"etcd-{attempt}" if attempt else self.root
        self.members = []
        for i in range(self.size):
            name = f"m{i}"
            data_dir = base / name
            data_dir.mkdir(parents=True, exist_ok=True)
            self.members.append(
                EtcdMember(
                    index=i,
                    name=name,
                    client_port=ports[2 * i],
                    peer_port=ports[2 * i + 1],
                    data_dir=data_dir / "data",
                    log_path=data_dir / "etcd.log",
                )
            )

    def _spawn(self, member: EtcdMember, *, initial: bool) -> None:
        cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        args = [
            self.binary,
            "--name", member.name,
            "--data-dir", str(member.data_dir),
            "--listen-client-urls", member.client_url,
            "--advertise-client-urls", member.client_url,
            "--listen-peer-urls", member.peer_url,
            "--initial-advertise-peer-urls", member.peer_url,
            "--initial-cluster", cluster,
            "--initial-cluster-token", self.token,
            "--initial-cluster-state", "new" if initial else "existing",
            "--heartbeat-interval", str(HEARTBEAT_MS),
            "--election-timeout", str(ELECTION_MS),
            "--logger", "zap",
            "--log-outputs", "stderr",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        with open(member.log_path, "ab") as log:
            member.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # a ^C to pytest does not reach it half-way
            )
        member.stopped = False

    def close(self) -> None:
        """End every member by PID: SIGTERM, then SIGKILL after a short wait."""
        live = [m for m in self.members if m.proc is not None and m.proc.poll() is None]
        for m in live:
            assert m.proc is not None
            with contextlib.suppress(ProcessLookupError):
                m.proc.send_signal(signal.SIGCONT)
                m.proc.terminate()
        deadline = time.monotonic() + 2.0
        for m in live:
            assert m.proc is not None
            try:
                m.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:  # lost quorum: may ignore SIGTERM
                m.proc.kill()
                m.proc.wait(timeout=10)

    # -- faults ----------------------------------------------------------------------------

    def kill(self, i: int) -> None:
        """SIGKILL member ``i`` and reap it."""
        m = self.members[i]
        assert m.proc is not None and m.proc.poll() is None, f"member {i} is not running"
        m.proc.kill()
        m.proc.wait(timeout=10)
        m.stopped = False

    def stop(self, i: int) -> None:
        """SIGSTOP member ``i`` (it keeps its sockets but answers nothing)."""
        m = self.members[i]
        assert m.proc is not None and m.proc.poll() is None, f"member {i} is not running"
        m.proc.send_signal(signal.SIGSTOP)
        m.stopped = True
        deadline = time.monotonic() + 5
        while process_state(m.proc.pid) != "T" and time.monotonic() < deadline:
            time.sleep(0.005)

    def cont(self, i: int) -> None:
        """SIGCONT member ``i`` after stop()."""
        m = self.members[i]
        assert m.proc is not None and m.proc.poll() is None, f"member {i} is not running"
        m.proc.send_signal(signal.SIGCONT)
        m.stopped = False

    def restart(self, i: int) -> None:
        """Start member ``i`` again (killed first if it runs): same name, same data dir,
        so it rejoins the cluster. Does not wait: call wait_healthy()."""
        m = self.members[i]
        if m.proc is not None and m.proc.poll() is None:
            self.kill(i)
        self._spawn(m, initial=False)

    # -- questions -------------------------------------------------------------------------

    def _http(self, i: int, path: str, body: bytes | None, timeout: float) -> Any:
        m = self.members[i]
        req = urllib.request.Request(
            m.client_url + path, data=body, method="POST" if body else "GET"
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())

    def healthy(self, i: int, timeout: float = 1.0) -> bool:
        """True if member ``i`` answers /health positively (a quorum read inside etcd)."""
        if not self.members[i].running:
            return False
        try:
            answer = self._http(i, "/health", None, timeout)
        except (OSError, ValueError):  # refused, timed out, 503 (HTTPError), bad JSON
            return False
        return bool(answer.get("health") == "true")

    def status(self, i: int, timeout: float = 1.0) -> dict[str, Any]:
        """Member ``i``'s maintenance Status (the gRPC gateway's JSON: 64-bit numbers are
        strings). Remembers the member's ID."""
        answer: dict[str, Any] = self._http(i, "/v3/maintenance/status", b"{}", timeout)
        self.members[i].member_id = answer["header"]["member_id"]
        return answer

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Wait until every running member (not killed, not stopped) is healthy."""
        deadline = time.monotonic() + timeout
        while True:
            pending = [m for m in self.members if m.running and not self.healthy(m.index)]
            dead = [m for m in self.members if m.proc is not None and m.proc.poll() is not None]
            if not pending:
                return
            if time.monotonic() > deadline or any(
                "address already in use" in m.log_tail(50) for m in dead
            ):
                details = "\n".join(
                    f"--- member {m.index} ({m.endpoint}, exit {m.proc and m.proc.poll()}):\n"
                    f"{m.log_tail()}"
                    for m in pending + dead
                )
                raise EtcdClusterError(f"etcd cluster not healthy within {timeout} s:\n{details}")
            time.sleep(0.05)

    def leader(self, timeout: float = 10.0) -> int:
        """Index of the current leader, as the running members report it."""
        deadline = time.monotonic() + timeout
        while True:
            reported: list[str] = []
            for m in self.members:
                if not m.running:
                    continue
                try:
                    answer = self.status(m.index)
                except (OSError, ValueError, KeyError):
                    continue
                reported.append(str(answer.get("leader", "0")))
            ids = {m.member_id: m.index for m in self.members if m.member_id}
            for leader_id in reported:
                index = ids.get(leader_id)
                if index is not None and self.members[index].running:
                    return index
            if time.monotonic() > deadline:
                raise EtcdClusterError(f"no leader reported within {timeout} s ({reported})")
            time.sleep(0.05)

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]


def start_cluster(root: Path, size: int = 3) -> EtcdCluster:
    """A started, healthy cluster (skips or fails the test without an etcd binary)."""
    cluster = EtcdCluster(require_etcd(), root, size)
    cluster.start()
    return cluster


@pytest.fixture
def etcd_cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    """A 3-member cluster of this test's own: kill, stop and restart members freely."""
    cluster = start_cluster(tmp_path / "etcd")
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def etcd_shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """A 3-member cluster shared by a module's tests (on one xdist worker): never fault
    its members, and keep each test's keys under a prefix of its own."""
    cluster = start_cluster(tmp_path_factory.mktemp("etcd-shared"))
    try:
        yield cluster
    finally:
        cluster.close()
