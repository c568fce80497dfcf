"""Never two holders across a daemon restart (issue 16 item 5).

A stopping daemon keeps its socket until its holders' commands have ended; a daemon
that died holding locks makes the next one grant nothing for a lock-delay.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import FlomSandbox, process_alive, wait_for
from pyflom.daemon.listeners import _host_lock_path, read_holders_mark

LOOP = "while :; do sleep 0.05; done"
# The first holder's command: notes when it starts, lingers ~2 s in its SIGTERM handler.
LINGERING = "date +%s.%N > a.enter; trap 'sleep 2; date +%s.%N > a.exit; exit 3' TERM; " + LOOP
SECOND = "date +%s.%N > b.enter"


def stamp(path: Path, timeout: float = 30) -> float:
    assert wait_for(lambda: path.exists() and path.read_text().strip(), timeout=timeout), path
    return float(path.read_text())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def first_holder(sandbox: FlomSandbox, where: list[str], *extra: str) -> subprocess.Popen[str]:
    proc = sandbox.start_logged(
        *where, "-d", "-1", *extra, "-r", "R", "--", "sh", "-c", LINGERING,
        stderr_file="a.err", socket_name=False,
    )  # fmt: skip
    stamp(sandbox.path("a.enter"))
    return proc


def second_client(sandbox: FlomSandbox, where: list[str], *extra: str) -> subprocess.Popen[str]:
    return sandbox.start(*where, *extra, "-r", "R", "--", "sh", "-c", SECOND, socket_name=False)


def daemon_pid_of(sandbox: FlomSandbox, where: list[str]) -> int:
    """The daemon's pid, read from its status."""
    status = sandbox.run(*where, "--status=json", socket_name=False)
    assert status.returncode == 0, status.stderr
    import json

    pid = int(json.loads(status.stdout)["daemon"]["pid"])
    sandbox.daemon_pids.add(pid)
    return pid


def where_of(sandbox: FlomSandbox, transport: str) -> list[str]:
    if transport == "unix":
        return ["-s", sandbox.socket]
    return ["-a", "127.0.0.1", "-p", str(free_port())]


@pytest.mark.parametrize("transport", ["unix", "tcp"])
@pytest.mark.parametrize("how", ["-X", "SIGTERM", "SIGINT"])
def test_no_second_holder_while_a_stopped_daemons_command_ends(
    sandbox: FlomSandbox, how: str, transport: str
) -> None:
    where = where_of(sandbox, transport)
    first = first_holder(sandbox, where)
    pid = daemon_pid_of(sandbox, where)
    if how == "-X":
        assert sandbox.run(*where, "-X", socket_name=False).returncode == 0
    else:
        os.kill(pid, getattr(signal, how))
    second = second_client(sandbox, where, "-V")
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert first.wait(timeout=30) == 99
    entered, left = stamp(sandbox.path("b.enter")), stamp(sandbox.path("a.exit"))
    assert entered >= left, f"two holders for {left - entered:.3f} s"
    assert "is stopping" in out, out
    assert wait_for(lambda: not process_alive(pid), timeout=10)


def kill_daemon_with_holder(sandbox: FlomSandbox, where: list[str]) -> int:
    first_holder(sandbox, where)
    pid = daemon_pid_of(sandbox, where)
    os.kill(pid, signal.SIGKILL)
    return pid


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_a_daemon_killed_with_holders_imposes_a_lock_delay(
    sandbox: FlomSandbox, transport: str
) -> None:
    where = where_of(sandbox, transport)
    trace = sandbox.path("daemon.log")
    kill_daemon_with_holder(sandbox, where)
    second = second_client(sandbox, where, "-V", "-t", str(trace))
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    entered, left = stamp(sandbox.path("b.enter")), stamp(sandbox.path("a.exit"))
    assert entered >= left, f"two holders for {left - entered:.3f} s"
    assert "lock-delay" in out, out
    assert "lock-delay" in trace.read_text()


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_a_daemon_killed_while_idle_imposes_no_delay(sandbox: FlomSandbox, transport: str) -> None:
    where = where_of(sandbox, transport)
    done = sandbox.run(*where, "-d", "-1", "-r", "R", "--", "true", socket_name=False)
    assert done.returncode == 0, done.stderr
    pid = daemon_pid_of(sandbox, where)
    # The mark goes a little after the last holder (MARK_CLEAR_DELAY_S): wait for that.
    lock_file = (
        sandbox.socket + ".lock"
        if transport == "unix"
        else _host_lock_path(f"tcp-{os.getuid()}", "127.0.0.1", int(where[-1]))
    )
    assert wait_for(lambda: not _marked(lock_file))
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not process_alive(pid), timeout=10)
    trace = sandbox.path("daemon.log")
    again = sandbox.run(*where, "-t", str(trace), "-r", "R", "--", "true", socket_name=False)
    assert again.returncode == 0, again.stderr
    assert "lock-delay" not in trace.read_text()


def _marked(path: str) -> bool:
    fd = os.open(path, os.O_RDONLY)
    try:
        return read_holders_mark(fd) is not None
    finally:
        os.close(fd)
