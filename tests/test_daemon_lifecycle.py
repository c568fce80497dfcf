"""The daemon's life: started on demand, exactly once under races, lifespan, shutdown,
locks released when a holder dies, socket file removed on every exit."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

from conftest import FlomSandbox, daemon_pid, process_alive, wait_for


def daemons_for(socket_path: str) -> list[int]:
    """PIDs of pyflom daemons serving ``socket_path`` (read from /proc, nothing killed)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        alive = process_alive(int(entry.name))
        if b"pyflom.daemon" in argv and socket_path.encode() in argv and alive:
            pids.append(int(entry.name))
    return pids


def test_first_client_starts_a_daemon(sandbox: FlomSandbox) -> None:
    assert not os.path.exists(sandbox.socket)
    result = sandbox.run("--", "sh", "-c", "echo hello")
    assert result.returncode == 0
    assert result.stdout == "hello\n"
    assert daemon_pid(sandbox.socket) is not None


def test_lifespan_zero_never_starts_a_daemon(sandbox: FlomSandbox) -> None:
    result = sandbox.run("-d", "0", "--", "true")
    assert result.returncode == 99
    assert result.stderr.startswith(
        "flom_client_connect: ret_cod=-105 (ERROR: 'connect' function returned an error "
        "condition)\n"
    )
    assert not os.path.exists(sandbox.socket)


def test_command_output_capture_does_not_wait_for_the_daemon(sandbox: FlomSandbox) -> None:
    # The daemon must not inherit the command's stdout: $(flom -- echo) would hang.
    start = time.monotonic()
    result = sandbox.run("-d", "-1", "--", "echo", "x", timeout=10)
    assert result.stdout == "x\n"
    assert time.monotonic() - start < 8


def test_concurrent_first_clients_end_with_one_daemon(sandbox: FlomSandbox) -> None:
    procs = [sandbox.start("-d", "3000", "--", "true") for _ in range(16)]
    assert [p.wait(timeout=60) for p in procs] == [0] * 16
    # A daemon that lost the race reports it and exits; give its interpreter time to end.
    assert wait_for(lambda: len(daemons_for(sandbox.socket)) == 1, timeout=15)
    time.sleep(0.5)
    assert len(daemons_for(sandbox.socket)) == 1


def test_idle_daemon_exits_after_its_lifespan_and_removes_its_socket(
    sandbox: FlomSandbox,
) -> None:
    assert sandbox.run("-d", "1000", "--", "true").returncode == 0
    pid = sandbox.remember_daemon()
    assert pid is not None
    # Resource kept ~2 s after last use, then 1 s of daemon lifespan: gone well within 10 s.
    assert wait_for(lambda: not process_alive(pid), timeout=10)
    assert not os.path.exists(sandbox.socket)
    assert os.path.exists(sandbox.socket + ".lock")  # never removed, as FLoM


def test_daemon_with_negative_lifespan_stays(sandbox: FlomSandbox) -> None:
    assert sandbox.run("-d", "-1", "--", "true").returncode == 0
    pid = sandbox.remember_daemon()
    assert pid is not None
    time.sleep(3.5)
    assert process_alive(pid)


def test_quiesce_shutdown_waits_for_the_holder(sandbox: FlomSandbox) -> None:
    assert sandbox.run("-d", "-1", "--", "true").returncode == 0
    pid = sandbox.remember_daemon()
    assert pid is not None
    gate = sandbox.path("gate")
    holder = sandbox.start("--", "sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.01; done")
    assert wait_for(lambda: sandbox.run("-o", "0", "--", "true").returncode == 98)
    result = sandbox.run("-x")
    assert result.returncode == 0
    assert result.stdout == "Starting FLoM daemon quiesce shutdown...\n"
    time.sleep(0.5)
    assert process_alive(pid)  # still serving its holder
    gate.touch()
    assert holder.wait(timeout=10) == 0
    assert wait_for(lambda: not process_alive(pid), timeout=10)
    assert not os.path.exists(sandbox.socket)


def test_immediate_shutdown_drops_everyone(sandbox: FlomSandbox) -> None:
    gate = sandbox.path("gate")
    holder = sandbox.start(
        "-d", "-1", "--", "sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.01; done"
    )
    assert wait_for(lambda: sandbox.run("-o", "0", "--", "true").returncode == 98)
    waiter = sandbox.start("--", "true")
    pid = sandbox.remember_daemon()
    assert pid is not None
    time.sleep(0.5)
    result = sandbox.run("-X")
    assert result.returncode == 0
    assert result.stdout == "Starting FLoM daemon immediate shutdown...\n"
    assert wait_for(lambda: not process_alive(pid), timeout=10)
    assert not os.path.exists(sandbox.socket)  # cleaned up, unlike FLoM (quirk Q13)
    assert waiter.wait(timeout=10) == 99  # lost its daemon while waiting
    # The holder's command is terminated: it lost its lock (FLoM lets it run on).
    assert holder.wait(timeout=20) == 99
    assert "lost the lock" in holder.communicate()[1]


def test_shutdown_without_daemon_fails(sandbox: FlomSandbox) -> None:
    for option in ("-x", "-X"):
        result = sandbox.run(option)
        assert result.returncode == 99
        assert not os.path.exists(sandbox.socket)


def test_killed_holder_releases_its_lock_when_its_command_ends(sandbox: FlomSandbox) -> None:
    gate = sandbox.path("gate")
    holder = sandbox.start("--", "sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.01; done")
    assert wait_for(lambda: sandbox.run("-o", "0", "--", "true").returncode == 98)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    try:
        # The orphaned command inherited the lock's connection: still locked.
        assert sandbox.run("-o", "0", "--", "true").returncode == 98
    finally:
        gate.touch()  # the command ends, and its lock with it
    assert sandbox.run("-o", "20000", "--", "true").returncode == 0


def test_killed_waiter_is_dropped_from_the_queue(sandbox: FlomSandbox) -> None:
    gate = sandbox.path("gate")
    holder = sandbox.start("--", "sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.01; done")
    assert wait_for(lambda: sandbox.run("-o", "0", "--", "true").returncode == 98)
    marker = sandbox.path("ran")
    waiter = sandbox.start("--", "touch", str(marker))
    time.sleep(0.5)
    waiter.send_signal(signal.SIGKILL)
    waiter.wait(timeout=10)
    gate.touch()
    assert holder.wait(timeout=10) == 0
    assert sandbox.run("-o", "0", "--", "true").returncode == 0
    assert not marker.exists()


def test_stale_socket_file_is_replaced(sandbox: FlomSandbox) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(sandbox.socket)  # a socket file nobody listens on
    stale.close()
    assert sandbox.run("--", "true").returncode == 0
    assert daemon_pid(sandbox.socket) is not None


def test_sigterm_to_daemon_removes_socket(sandbox: FlomSandbox) -> None:
    assert sandbox.run("-d", "-1", "--", "true").returncode == 0
    pid = sandbox.remember_daemon()
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    assert wait_for(lambda: not process_alive(pid), timeout=10)
    assert not os.path.exists(sandbox.socket)
