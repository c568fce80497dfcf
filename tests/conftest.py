"""Shared fixtures: every test gets its own directory, socket path and daemons.

Daemons are found by PID through SO_PEERCRED on their own socket and stopped by PID at
the end of the test: nothing else on the machine is ever touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from etcd_cluster import etcd_cluster, etcd_shared  # noqa: F401  (fixtures for every module)

FLOM = str(Path(sys.executable).with_name("flom"))
WIDE = 20.0  # seconds: a bound for what takes milliseconds (2 noisy cores)


def daemon_pid(socket_path: str) -> int | None:
    """PID of the daemon listening on ``socket_path`` (None if nobody listens)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(socket_path)
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return int(struct.unpack("3i", creds)[0])
    except OSError:
        return None
    finally:
        sock.close()


def process_alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, every: float = 0.01) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return bool(predicate())


@dataclass
class FlomSandbox:
    """A private directory and socket for one test, with helpers to run ``flom``."""

    root: Path
    socket: str
    started: list[subprocess.Popen[str]] = field(default_factory=list)
    daemon_pids: set[int] = field(default_factory=set)
    backend: str = "memory"  # or "etcd": every command's daemon is a gateway on etcd
    backend_args: list[str] = field(default_factory=list)  # put before every command's args

    def use_etcd(self, endpoints: list[str]) -> None:
        """Make every command of this sandbox use (and start) an etcd gateway on
        ``endpoints``, with a key prefix of the sandbox's own."""
        self.backend = "etcd"
        self.backend_args = [
            "--backend",
            "etcd://" + ",".join(endpoints),
            "--etcd-key-prefix",
            f"/t-{self.root.name}/",
        ]

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["HOME"] = str(self.root)  # no ~/.flom from the machine
        env.pop("FLOM_TRACE_MASK", None)
        # Daemons run on plain asyncio, as with a bare `pip install pyflom`;
        # test_uvloop.py covers the optional uvloop loop.
        env.setdefault("PYFLOM_NO_UVLOOP", "1")
        return env

    def args(self, *args: str, socket_name: bool = True) -> list[str]:
        extra = ["-s", self.socket] if socket_name else []
        return [FLOM, *extra, *self.backend_args, *args]

    def run(
        self, *args: str, timeout: float = 60, socket_name: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``flom -s SOCKET ARGS`` to completion."""
        proc = subprocess.run(
            self.args(*args, socket_name=socket_name),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            cwd=self.root,
            input=input,
        )
        self.remember_daemon()
        return proc

    def start(
        self, *args: str, socket_name: bool = True, stdin: bool = False
    ) -> subprocess.Popen[str]:
        """Start ``flom -s SOCKET ARGS`` in the background (``stdin``: with a pipe to
        write to its standard input)."""
        proc = subprocess.Popen(
            self.args(*args, socket_name=socket_name),
            stdin=subprocess.PIPE if stdin else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            cwd=self.root,
        )
        self.started.append(proc)
        return proc

    def start_logged(
        self, *args: str, stderr_file: str, socket_name: bool = True
    ) -> subprocess.Popen[str]:
        """Start ``flom -s SOCKET ARGS`` in the background, its standard error written to
        the sandbox file ``stderr_file`` (read it while the process runs), stdout dropped."""
        with self.path(stderr_file).open("w") as err:
            proc = subprocess.Popen(
                self.args(*args, socket_name=socket_name),
                stdout=subprocess.DEVNULL,
                stderr=err,
                text=True,
                env=self.env,
                cwd=self.root,
            )
        self.started.append(proc)
        return proc

    def remember_daemon(self) -> int | None:
        pid = daemon_pid(self.socket)
        if pid is not None:
            self.daemon_pids.add(pid)
        return pid

    def path(self, name: str) -> Path:
        return self.root / name

    def cleanup(self) -> None:
        self.remember_daemon()
        try:
            for proc in self.started:
                if proc.poll() is None:
                    proc.kill()
                proc.communicate(timeout=10)
        finally:  # the daemons end even when a started command's teardown failed
            for pid in self.daemon_pids:
                if process_alive(pid):
                    os.kill(pid, signal.SIGTERM)
                    if not wait_for(lambda pid=pid: not process_alive(pid), timeout=5):
                        os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def new_sandbox() -> Iterator[FlomSandbox]:
    """A :class:`FlomSandbox` in a directory of its own, cleaned up at the end."""
    # A short path: UNIX socket names must stay under 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="pyflom-", dir="/tmp"))
    box = FlomSandbox(root=root, socket=str(root / "sock"))
    try:
        yield box
    finally:
        box.cleanup()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def sandbox() -> Iterator[FlomSandbox]:
    with new_sandbox() as box:
        yield box


@pytest.fixture
def daemon(sandbox: FlomSandbox) -> FlomSandbox:
    """``sandbox`` with its daemon running until the test ends it."""
    assert sandbox.run("-d", "-1", "--", "true").returncode == 0
    sandbox.remember_daemon()
    return sandbox


def busy(box: FlomSandbox, name: str) -> bool:
    """Does another process find ``name`` locked (``flom -o 0``: 98 when busy)?"""
    status = box.run("-r", name, "-o", "0", "--", "true").returncode
    assert status in (0, 98)
    return status == 98
