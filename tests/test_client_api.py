"""The Python library: pyflom.Handle and pyflom.lock against a real daemon."""

from __future__ import annotations

import threading
import time

import pytest

import pyflom
from conftest import FlomSandbox
from pyflom.lockmodes import LockMode


@pytest.fixture
def daemon(sandbox: FlomSandbox) -> FlomSandbox:
    assert sandbox.run("-d", "-1", "--", "true").returncode == 0
    sandbox.remember_daemon()
    return sandbox


def test_handle_defaults_match_libflom(sandbox: FlomSandbox) -> None:
    handle = pyflom.Handle()
    assert handle.resource_name == "_RESOURCE"
    assert handle.lock_mode is LockMode.EX
    assert handle.resource_timeout == -1
    assert handle.resource_quantity == 1
    assert handle.resource_create is True
    assert handle.resource_idle_lifespan == 0
    assert handle.daemon_lifespan == 0
    assert handle.socket_name is not None and handle.socket_name.startswith("/tmp/flom-")
    assert handle.state is pyflom.HandleState.INIT
    assert handle.locked_element is None


def test_lock_unlock_states(daemon: FlomSandbox) -> None:
    handle = pyflom.Handle("Res1", socket_name=daemon.socket)
    assert handle.lock() is None
    assert handle.state is pyflom.HandleState.LOCKED
    assert daemon.run("-r", "Res1", "-o", "0", "--", "true").returncode == 98
    handle.unlock()
    assert handle.state is pyflom.HandleState.DISCONNECTED
    assert daemon.run("-r", "Res1", "-o", "0", "--", "true").returncode == 0
    handle.lock()  # a handle can lock again
    handle.close()
    assert handle.state is pyflom.HandleState.CLEANED
    with pytest.raises(pyflom.InvalidSequence):
        handle.lock()


def test_unlock_without_lock_is_an_invalid_sequence(daemon: FlomSandbox) -> None:
    with pytest.raises(pyflom.InvalidSequence):
        pyflom.Handle(socket_name=daemon.socket).unlock()


def test_properties_are_immutable_while_locked(daemon: FlomSandbox) -> None:
    handle = pyflom.Handle("Res2", socket_name=daemon.socket)
    handle.lock()
    with pytest.raises(pyflom.FlomError) as info:
        handle.resource_name = "Other"
    assert info.value.rc == 11  # API_IMMUTABLE_HANDLE
    handle.unlock()
    handle.resource_name = "Other"
    assert handle.resource_name == "Other"


def test_invalid_resource_name_is_refused_not_ignored() -> None:
    handle = pyflom.Handle()
    with pytest.raises(pyflom.InvalidResourceName):
        handle.resource_name = "1abc"  # libflom silently keeps the old name (Q12)
    assert handle.resource_name == "_RESOURCE"


def test_context_manager_and_exceptions(daemon: FlomSandbox) -> None:
    with pyflom.lock("Ctx", "PR", socket_name=daemon.socket) as handle:
        assert handle.lock_mode is LockMode.PR
        with (
            pytest.raises(pyflom.LockBusy),
            pyflom.lock("Ctx", "EX", timeout=0, socket_name=daemon.socket),
        ):
            pass
        start = time.monotonic()
        with (
            pytest.raises(pyflom.LockTimeout),
            pyflom.lock("Ctx", "EX", timeout=0.5, socket_name=daemon.socket),
        ):
            pass
        assert time.monotonic() - start >= 0.5
        with pyflom.lock("Ctx", "CR", timeout=0, socket_name=daemon.socket):
            pass  # compatible
    with pyflom.lock("Ctx", "EX", timeout=0, socket_name=daemon.socket):
        pass


def test_exception_in_block_still_unlocks(daemon: FlomSandbox) -> None:
    with pytest.raises(RuntimeError), pyflom.lock("Boom", socket_name=daemon.socket):
        raise RuntimeError("boom")
    with pyflom.lock("Boom", timeout=0, socket_name=daemon.socket):
        pass


def test_no_daemon_and_no_autostart(sandbox: FlomSandbox) -> None:
    with pytest.raises(pyflom.ConnectionFailed):
        pyflom.Handle(socket_name=sandbox.socket).lock()


def test_handle_may_start_a_daemon_when_asked(sandbox: FlomSandbox) -> None:
    with pyflom.lock("Auto", socket_name=sandbox.socket, daemon_lifespan=1000):
        assert sandbox.remember_daemon() is not None


def test_kept_connection_many_pairs(daemon: FlomSandbox) -> None:
    handle = pyflom.Handle("Kept", socket_name=daemon.socket, keep_connection=True)
    for _ in range(200):
        handle.lock()
        handle.unlock()
    assert handle.state is pyflom.HandleState.CONNECTED
    handle.lock()
    assert daemon.run("-r", "Kept", "-o", "0", "--", "true").returncode == 98
    handle.close()
    assert daemon.run("-r", "Kept", "-o", "0", "--", "true").returncode == 0


def test_threads_with_own_handles_exclude_each_other(daemon: FlomSandbox) -> None:
    inside = 0
    worst = 0
    guard = threading.Lock()

    def worker() -> None:
        nonlocal inside, worst
        for _ in range(20):
            with pyflom.lock("Threads", socket_name=daemon.socket):
                with guard:
                    inside += 1
                    worst = max(worst, inside)
                time.sleep(0.001)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert worst == 1
