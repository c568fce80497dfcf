"""Running the command: exit statuses, unexecutable commands, signals (monitor.at)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from conftest import FlomSandbox, wait_for


@pytest.mark.parametrize("status", [0, 1, 7, 255])
def test_exit_status_is_the_commands(sandbox: FlomSandbox, status: int) -> None:
    assert sandbox.run("--", "sh", "-c", f"exit {status}").returncode == status


def test_no_command(sandbox: FlomSandbox) -> None:
    result = sandbox.run()
    assert result.returncode == 97
    assert result.stderr == "No command to execute!\n"


def test_command_that_cannot_be_executed(sandbox: FlomSandbox) -> None:
    result = sandbox.run("-V", "--", "abcdefghijklmnop")
    assert result.returncode == 97
    assert "Unable to execute command 'abcdefghijklmnop'" in result.stderr
    # The lock was released (with rollback): the resource is free.
    assert sandbox.run("-o", "0", "--", "true").returncode == 0


def test_arguments_and_stdin_reach_the_command(sandbox: FlomSandbox) -> None:
    result = sandbox.run("--", "sh", "-c", 'read x; echo "$0 $1 $x"', "a b", "c", input="in\n")
    assert result.stdout == "a b c in\n"


def test_child_killed_by_signal_exits_128_plus_n(sandbox: FlomSandbox) -> None:
    # FLoM returns 0 here (quirk Q4); pyflom follows the shell convention.
    assert sandbox.run("--", "sh", "-c", "kill -TERM $$").returncode == 143
    assert sandbox.run("--", "sh", "-c", "kill -KILL $$").returncode == 137


def _wait_for_pid_file(path: os.PathLike[str]) -> int:
    pidfile = Path(path)
    assert wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
    return int(pidfile.read_text())


def test_sigterm_to_monitor_is_forwarded_and_lock_released(sandbox: FlomSandbox) -> None:
    pidfile = sandbox.path("child.pid")
    flom = sandbox.start("--", "sh", "-c", f"echo $$ > {pidfile}; exec sleep 60")
    child = _wait_for_pid_file(pidfile)
    flom.send_signal(signal.SIGTERM)
    assert flom.wait(timeout=10) == 143  # the child died of the forwarded SIGTERM
    assert wait_for(lambda: not os.path.exists(f"/proc/{child}"))
    assert sandbox.run("-o", "0", "--", "true").returncode == 0


def test_ignored_sigterm_keeps_the_monitor(sandbox: FlomSandbox) -> None:
    # monitor.at "Ignore SIGTERM": SIGTERM to both; the monitor survives, the child dies.
    pidfile = sandbox.path("child.pid")
    flom = sandbox.start(
        "--ignore-signal=SIGTERM", "--", "sh", "-c", f"echo $$ > {pidfile}; exec sleep 60"
    )
    child = _wait_for_pid_file(pidfile)
    flom.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert flom.poll() is None  # ignored: nothing forwarded, still waiting
    os.kill(child, signal.SIGTERM)
    assert flom.wait(timeout=10) == 143


def test_unknown_ignored_signal_name_is_dropped(sandbox: FlomSandbox) -> None:
    # monitor.at "Do not ignore SIGTERM": an invalid name is silently dropped.
    pidfile = sandbox.path("child.pid")
    flom = sandbox.start(
        "--ignore-signal=SIGXXXX", "--", "sh", "-c", f"echo $$ > {pidfile}; exec sleep 60"
    )
    _wait_for_pid_file(pidfile)
    flom.send_signal(signal.SIGTERM)
    assert flom.wait(timeout=10) == 143


def test_ignored_signal_is_default_again_in_the_child(sandbox: FlomSandbox) -> None:
    result = sandbox.run("--ignore-signal=SIGTERM", "--", "sh", "-c", "kill -TERM $$; exit 3")
    assert result.returncode == 143


def test_command_trace_file_records_the_exchange(sandbox: FlomSandbox) -> None:
    trace_file = sandbox.path("cmd.trc")
    assert sandbox.run("-T", str(trace_file), "--", "true").returncode == 0
    text = trace_file.read_text()
    assert 'sending message b\'<?xml version="1.0"' in text
    assert 'verb="1" step="16"' in text  # the answer
    assert 'verb="2" step="8"' in text  # the unlock


def test_no_trace_by_default(sandbox: FlomSandbox) -> None:
    result = sandbox.run("--", "true")
    assert result.stderr == ""
