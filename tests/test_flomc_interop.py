"""pyflom and FLoM C 1.7.2 side by side, with real processes: either daemon serves either
command, and one lock is one holder whichever implementation asks for it.

Needs FLoM C (``make flomc``, see tests/flomc.py): skipped without it, failed under
``PYFLOM_REQUIRE_FLOMC=1``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import FlomSandbox, process_alive, wait_for
from flomc import flom_c_env, require_flom_c

IMPLEMENTATIONS = ["pyflom", "flomc"]


class Peers:
    """``flom`` command lines of both implementations on one sandbox's socket."""

    def __init__(self, sandbox: FlomSandbox, prefix: Path) -> None:
        self.sandbox = sandbox
        self.flom_c = str(prefix / "bin" / "flom")
        self.env = flom_c_env(prefix, sandbox.env)

    def argv(self, implementation: str, *args: str) -> list[str]:
        if implementation == "pyflom":
            return self.sandbox.args(*args)
        return [self.flom_c, "-s", self.sandbox.socket, *args]

    def run(self, implementation: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(implementation, *args),
            capture_output=True,
            text=True,
            timeout=60,
            env=self.env,
            cwd=self.sandbox.root,
        )

    def start(self, implementation: str, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            self.argv(implementation, *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            cwd=self.sandbox.root,
        )
        self.sandbox.started.append(proc)
        return proc

    def start_daemon(self, implementation: str) -> int:
        """A daemon of ``implementation`` that lives until the test ends; its PID."""
        result = self.run(implementation, "-d", "-1", "--", "true")
        assert result.returncode == 0, result.stderr
        pid = self.sandbox.remember_daemon()
        assert pid is not None
        return pid


@pytest.fixture
def peers(sandbox: FlomSandbox) -> Peers:
    return Peers(sandbox, require_flom_c())


def connections(pid: int) -> int:
    """How many sockets process ``pid`` has open (its listener included)."""
    fds = Path(f"/proc/{pid}/fd")
    count = 0
    for fd in os.listdir(fds):
        try:
            count += os.readlink(fds / fd).startswith("socket:")
        except FileNotFoundError:  # closed meanwhile
            pass
    return count


@pytest.mark.parametrize("holder", IMPLEMENTATIONS)
@pytest.mark.parametrize("daemon", IMPLEMENTATIONS)
def test_one_holder_whichever_implementation_asks(
    peers: Peers, sandbox: FlomSandbox, daemon: str, holder: str
) -> None:
    other = "flomc" if holder == "pyflom" else "pyflom"
    daemon_pid = peers.start_daemon(daemon)
    order = sandbox.path("order")
    first = peers.start(
        holder, "-r", "Shared", "--", "sh", "-c",
        "echo A >> order; touch held; while [ ! -e release ]; do sleep 0.02; done; "
        "echo A-end >> order",
    )  # fmt: skip
    assert wait_for(lambda: sandbox.path("held").exists(), timeout=30), first.communicate()
    # The other implementation is told the resource is busy (ES 98) when it won't wait...
    busy = peers.run(other, "-r", "Shared", "-o", "0", "--", "touch", "ran")
    assert busy.returncode == 98, (busy.returncode, busy.stderr)
    assert not sandbox.path("ran").exists()
    # ...and waits behind the holder when it does.
    before = connections(daemon_pid)
    second = peers.start(other, "-r", "Shared", "--", "sh", "-c", "echo B >> order")
    assert wait_for(lambda: connections(daemon_pid) > before, timeout=30)
    assert second.poll() is None
    assert order.read_text() == "A\n"
    sandbox.path("release").touch()
    assert first.wait(timeout=30) == 0, first.communicate()
    assert second.wait(timeout=30) == 0, second.communicate()
    assert order.read_text() == "A\nA-end\nB\n"
    # Free again for either implementation.
    for implementation in IMPLEMENTATIONS:
        free = peers.run(implementation, "-r", "Shared", "-o", "0", "--", "true")
        assert free.returncode == 0, (implementation, free.stderr)


@pytest.mark.parametrize("flag", ["-x", "-X"])
@pytest.mark.parametrize("daemon", IMPLEMENTATIONS)
def test_the_other_implementation_shuts_the_daemon_down(
    peers: Peers, daemon: str, flag: str
) -> None:
    client = "flomc" if daemon == "pyflom" else "pyflom"
    pid = peers.start_daemon(daemon)
    result = peers.run(client, flag)
    assert result.returncode == 0, (result.returncode, result.stderr)
    assert wait_for(lambda: not process_alive(pid), timeout=30)
