"""The Python library: pyflom.Handle and pyflom.lock against a real daemon."""

from __future__ import annotations

import threading
import time
import warnings

import pytest

import pyflom
from conftest import FlomSandbox, process_alive, wait_for
from pyflom.lockmodes import LockMode


def test_handle_defaults_match_libflom(sandbox: FlomSandbox) -> None:
    handle = pyflom.Handle()
    assert handle.resource_name == "_RESOURCE"
    assert handle.lock_mode is LockMode.EX
    assert handle.resource_timeout == -1
    assert handle.resource_quantity == 1
    assert handle.resource_create is True
    assert handle.resource_idle_lifespan == 0
    assert handle.daemon_lifespan == 5000  # a daemon is started on demand, as by flom
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
        outcome: list[BaseException] = []

        def waits_in_another_thread() -> None:  # this thread would wait on itself
            start = time.monotonic()
            try:
                with pyflom.lock("Ctx", "EX", timeout=0.5, socket_name=daemon.socket):
                    pass
            except pyflom.LockTimeout as exc:
                assert time.monotonic() - start >= 0.5
                outcome.append(exc)

        other = threading.Thread(target=waits_in_another_thread)
        other.start()
        other.join()
        assert len(outcome) == 1
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
        pyflom.Handle(socket_name=sandbox.socket, start_daemon=False).lock()
    assert sandbox.remember_daemon() is None


def test_handle_may_start_a_daemon_when_asked(sandbox: FlomSandbox) -> None:
    with pyflom.lock("Auto", socket_name=sandbox.socket, daemon_lifespan=1):
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


# -- issue 11: one timeout unit, a daemon on demand, threads ------------------------------


def test_durations_are_seconds(sandbox: FlomSandbox) -> None:
    import datetime

    assert pyflom.Handle(timeout=5).resource_timeout == 5000
    assert pyflom.Handle(timeout=0.25).resource_timeout == 250
    assert pyflom.Handle(timeout=0.0001).resource_timeout == 1  # never rounded to "no wait"
    assert pyflom.Handle(timeout=0).resource_timeout == 0
    assert pyflom.Handle(timeout=None).resource_timeout == -1
    assert pyflom.Handle(timeout=datetime.timedelta(minutes=2)).resource_timeout == 120000
    assert pyflom.Handle(idle_lifespan=1.5).resource_idle_lifespan == 1500
    assert pyflom.Handle(daemon_lifespan=2).daemon_lifespan == 2000
    assert pyflom.Handle(daemon_lifespan=float("inf")).daemon_lifespan == -1
    assert pyflom.Handle(start_daemon=False).daemon_lifespan == 0
    for bad in (-1, -0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite number of seconds"):
            pyflom.Handle(timeout=bad)
    with pytest.raises(TypeError, match="number of seconds or a timedelta"):
        pyflom.Handle(timeout="5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="start_daemon=False"):
        pyflom.Handle(daemon_lifespan=0)


def test_a_duration_that_looks_like_milliseconds_warns(daemon: FlomSandbox) -> None:
    from pyflom.durations import DurationWarning

    with pytest.warns(DurationWarning, match=r"timeout=2000 is in seconds \(33 minutes\)"):
        context = pyflom.lock("Free", timeout=2000, socket_name=daemon.socket)
    with context:  # honoured as given: a free resource is granted at once
        pass
    with pytest.warns(DurationWarning, match="write idle_lifespan=60"):
        pyflom.Handle(idle_lifespan=60000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pyflom.Handle(timeout=999)
        pyflom.Handle(timeout=1000.5)


def test_lock_timeout_reads_as_a_timeout(daemon: FlomSandbox) -> None:
    failures: list[pyflom.LockTimeout] = []

    def waits() -> None:  # in another thread: this one would wait on itself
        begin = time.monotonic()
        with (
            pytest.raises(pyflom.LockTimeout) as timeout,
            pyflom.lock("Slow", timeout=0.3, socket_name=daemon.socket),
        ):
            pass
        assert time.monotonic() - begin >= 0.3
        failures.append(timeout.value)

    with pyflom.lock("Slow", socket_name=daemon.socket):
        other = threading.Thread(target=waits)
        other.start()
        other.join()
    (failure,) = failures
    message = str(failure)
    assert message == "'Slow' was not granted within 0.3 s (timeout; someone else holds it)"
    assert "network" not in message
    assert failure.rc == pyflom.LockTimeout.rc  # FLoM's reason code is kept


def test_the_library_starts_a_daemon_on_demand(sandbox: FlomSandbox) -> None:
    with pyflom.lock("Fresh", socket_name=sandbox.socket):
        pid = sandbox.remember_daemon()
        assert pid is not None
    assert wait_for(lambda: not process_alive(pid), timeout=30)  # default lifespan: 5 s


def test_a_handle_refuses_a_second_thread_while_a_call_runs(daemon: FlomSandbox) -> None:
    holder = pyflom.Handle("Shared", socket_name=daemon.socket)
    holder.lock()
    shared = pyflom.Handle("Shared", socket_name=daemon.socket, timeout=60)
    outcome: list[object] = []
    waiter = threading.Thread(target=lambda: outcome.append(shared.lock()))
    waiter.start()
    assert wait_for(lambda: daemon.run("--status=json").stdout.count('"position"') == 1, timeout=30)
    for call in (shared.lock, shared.unlock, shared.close):
        with pytest.raises(pyflom.InvalidSequence, match="another thread is inside"):
            call()
    with pytest.raises(pyflom.InvalidSequence, match="another thread is inside"):
        shared.resource_name = "Other"
    holder.unlock()
    waiter.join(timeout=60)
    assert outcome == [None] and shared.state is pyflom.HandleState.LOCKED
    # One call at a time from any thread is fine: unlock where it was not locked.
    shared.unlock()
    shared.close()
    holder.close()


def test_threads_with_a_handle_each_never_overlap(daemon: FlomSandbox) -> None:
    inside = 0
    most = 0
    guard = threading.Lock()

    def work() -> None:
        nonlocal inside, most
        handle = pyflom.Handle("Mutex", socket_name=daemon.socket, keep_connection=True)
        for _ in range(30):
            handle.lock()
            with guard:
                inside += 1
                most = max(most, inside)
            time.sleep(0.001)
            with guard:
                inside -= 1
            handle.unlock()
        handle.close()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert most == 1
