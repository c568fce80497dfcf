"""Helpers shared by the benchmarks: a private daemon, its PID and memory."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyflom

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
