"""Helpers shared by the benchmarks: a private daemon, its PID and memory, raw-protocol
clients (a request's bytes, a connection, the rc of an answer), a probe process that
times lock/unlock pairs on its own resource, and where FLoM C is installed."""

from __future__ import annotations

import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import pyflom

# Shared with the tests, one home: tests/raw_client.py (raw protocol), tests/flomc.py
# (where FLoM C is installed).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from flomc import flom_c_env, flom_c_prefix
from raw_client import lock_request, read_answer, unlock_request

__all__ = ["flom_c_env", "flom_c_prefix", "lock_request", "read_answer", "unlock_request"]

FLOM = str(Path(sys.executable).with_name("flom"))


def daemon_pid(path: str) -> int | None:
    """PID of the daemon on ``path``, from SO_PEERCRED."""
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.connect(path)
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        return int(struct.unpack("3i", creds)[0])
    except OSError:
        return None
    finally:
        sock.close()


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@contextmanager
def private_daemon(*extra: str) -> Iterator[str]:
    """Start a daemon that lives until the block ends; yield its socket path."""
    root = tempfile.mkdtemp(prefix="pyflom-bench-", dir="/tmp")
    path = os.path.join(root, "sock")
    env = dict(os.environ, HOME=root)
    subprocess.run([FLOM, "-s", path, "-d", "-1", *extra, "--", "true"], check=True, env=env)
    pid = daemon_pid(path)
    assert pid is not None, "daemon did not start"
    try:
        yield path
    finally:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and os.path.exists(path):
            time.sleep(0.01)
        for name in os.listdir(root):
            os.unlink(os.path.join(root, name))
        os.rmdir(root)


def pairs_per_second(handle: pyflom.Handle, seconds: float, batch: int = 100) -> float:
    """Lock/unlock pairs per second through ``handle`` for about ``seconds``; closes it."""
    count = 0
    start = time.perf_counter()
    while (now := time.perf_counter()) < start + seconds:
        for _ in range(batch):
            handle.lock()
            handle.unlock()
        count += batch
    handle.close()
    return count / (now - start)


def rerun_line(script: str, *args: str) -> str:
    """The command that reproduces a benchmark's figures."""
    return "rerun: .venv/bin/python bench/" + " ".join((script, *args))


def raise_fd_limit() -> None:
    """Raise this process's soft limit on open files to the hard limit (one fd a client)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def connect(path: str) -> socket.socket:
    """A blocking connection to the daemon's UNIX socket ``path``."""
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(path)
    return sock


def read_rc(sock: socket.socket) -> int:
    """The rc of the next lock answer on ``sock``: 0 granted, 1 enqueued, 4 busy..."""
    return read_answer(sock).rc


def ask(path: str, request: bytes) -> tuple[socket.socket, int]:
    """Connect, send ``request``, return the connection and the rc of the first answer."""
    sock = connect(path)
    sock.sendall(request)
    return sock, read_rc(sock)


def hold_and_queue(
    path: str, holder: str, waiters: Iterable[str]
) -> tuple[socket.socket, list[socket.socket]]:
    """One connection granted ``holder`` (EX), then one connection a name of
    ``waiters`` queued behind it (EX, waiting; every one enqueued when this returns)."""
    holder_sock, rc = ask(path, lock_request(holder))
    assert rc == 0, rc
    socks = []
    for name in waiters:  # all sent before any answer is read: the daemon works meanwhile
        sock = connect(path)
        sock.sendall(lock_request(name))
        socks.append(sock)
    for sock in socks:
        rc = read_rc(sock)
        assert rc == 1, rc  # enqueued
    return holder_sock, socks


_PROBE = r"""
import select, sys, time
import pyflom
handle = pyflom.Handle(sys.argv[2], socket_name=sys.argv[1], keep_connection=True)
handle.lock(); handle.unlock()
print("ready", flush=True)
pairs = []
while not select.select([sys.stdin], [], [], 0)[0]:
    start = time.monotonic()
    handle.lock()
    granted = time.monotonic()
    handle.unlock()
    pairs.append((start, granted, time.monotonic()))
windows = [tuple(map(float, line.split())) for line in sys.stdin.read().split("\n") if line]
for t0, t1 in windows:
    inside = [p for p in pairs if p[2] >= t0 and p[0] <= t1]
    pair = max((end - start for start, _, end in inside), default=float("nan"))
    grant = max((granted - start for start, granted, _ in inside), default=float("nan"))
    print(f"{pair:.6f} {grant:.6f} {len(inside)}")
"""


class ProbeWindow(NamedTuple):
    """What the probe saw in one window of time: its slowest lock/unlock pair, its
    slowest grant (request sent to grant received) and how many pairs it did."""

    worst_pair: float
    worst_grant: float
    pairs: int


class Probe:
    """A process doing lock/unlock pairs on ``name`` over a kept connection, back to
    back, until :meth:`finish`; it then reports on windows of ``time.monotonic()``."""

    def __init__(self, path: str, name: str = "Probe") -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", _PROBE, path, name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        assert self._process.stdout.readline().strip() == "ready"

    def finish(self, *windows: tuple[float, float]) -> list[ProbeWindow]:
        """Stop the probe; what it saw in each ``(start, end)`` window."""
        text = "".join(f"{start} {end}\n" for start, end in windows)
        out, _ = self._process.communicate(text, timeout=60)
        return [
            ProbeWindow(float(pair), float(grant), int(count))
            for pair, grant, count in (line.split() for line in out.splitlines())
        ]
