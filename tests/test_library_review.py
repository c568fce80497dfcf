"""Found trying the library as a demanding user would (issue 17 review): each test
fails without its fix.  Real daemons, real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import threading
from typing import Any

import pytest

import pyflom
import pyflom.aio
from conftest import WIDE, FlomSandbox, busy, daemon_pid, wait_for
from pyflom.settings import Settings


def in_child(work: object) -> int:
    """Run ``work()`` in a forked child; its exit status (0: no exception)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 0
        try:
            work()  # type: ignore[operator]
        except pyflom.InvalidSequence:
            status = 3
        except BaseException:
            status = 1
        os._exit(status)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_a_forked_child_leaving_the_with_block_does_not_release_the_parents_lock(
    daemon: FlomSandbox,
) -> None:
    lk = pyflom.lock("Forked", socket_name=daemon.socket)
    with lk as handle:
        # The child leaves the block too (it forked inside it): it does not hold the
        # lock (its parent does), so it may not release it, and says so.
        assert in_child(lambda: lk.__exit__(None, None, None)) == 3
        assert busy(daemon, "Forked")
        assert handle.held
        # Nor does a handle's unlock() or close() in a child.
        assert in_child(handle.unlock) == 3
        assert in_child(handle.close) == 0
        assert busy(daemon, "Forked")
        assert handle.held
    assert not busy(daemon, "Forked")


@pytest.mark.parametrize("name", [123, b"printer", None.__class__])
def test_a_resource_name_that_is_not_a_str_is_a_type_error(name: object) -> None:
    with pytest.raises(TypeError, match="a resource name must be a str"):
        pyflom.lock(name)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="a resource name must be a str"):
        pyflom.Handle(name)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["printer", "/orders/1", "red.green"])
def test_a_quantity_for_a_resource_without_units_is_refused(name: str) -> None:
    # Before: silently ignored, as the mode of a set resource was (issue 17 item 1).
    kind = "set" if "." in name else None
    with pytest.raises(ValueError, match=r"quantity=2 .*semaphore"):
        pyflom.lock(name, quantity=2, kind=kind)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"quantity=2 .*semaphore"):
        pyflom.Handle(name, quantity=2, kind=kind)  # type: ignore[arg-type]
    pyflom.lock(name, quantity=1, kind=kind)  # type: ignore[arg-type]
    pyflom.semaphore("pool", 3, quantity=2)


def test_a_waiting_request_whose_daemon_dies_says_so_and_what_to_do(
    daemon: FlomSandbox,
) -> None:
    pid = daemon_pid(daemon.socket)
    assert pid is not None
    errors: list[BaseException] = []
    holder = pyflom.Handle("Waited", socket_name=daemon.socket, start_daemon=False)
    holder.lock()
    waiting = threading.Event()

    def waiter() -> None:
        handle = pyflom.Handle("Waited", socket_name=daemon.socket, start_daemon=False)
        handle.on_wait = lambda channel, answer: waiting.set()
        try:
            handle.lock()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=waiter)
    thread.start()
    try:
        assert waiting.wait(WIDE)
        os.kill(pid, signal.SIGKILL)
        thread.join(WIDE)
        assert not thread.is_alive()
    finally:
        holder.abandon()
    (error,) = errors
    assert isinstance(error, pyflom.ProtocolError)
    # Before: "the daemon closed the connection" (what was it doing? what now?).
    assert "while 'Waited' waited" in str(error)
    assert "nothing is held; lock again" in str(error)


def test_an_asyncio_request_whose_daemon_dies_says_so_too(daemon: FlomSandbox) -> None:
    pid = daemon_pid(daemon.socket)
    assert pid is not None

    async def main() -> BaseException:
        holder = pyflom.aio.Handle("Waited", socket_name=daemon.socket, start_daemon=False)
        await holder.lock()
        waiter = pyflom.aio.Handle("Waited", socket_name=daemon.socket, start_daemon=False)
        task = asyncio.create_task(waiter.lock())
        assert await asyncio.to_thread(wait_for, lambda: waits(daemon, "Waited"), WIDE)
        os.kill(pid, signal.SIGKILL)
        try:
            await asyncio.wait_for(task, WIDE)
        except BaseException as exc:
            return exc
        finally:
            holder.abandon()
        raise AssertionError("granted")

    error = asyncio.run(main())
    assert isinstance(error, pyflom.ProtocolError)
    assert "while 'Waited' waited" in str(error)


def waits(box: FlomSandbox, name: str) -> bool:
    """Is a request waiting for ``name`` (the daemon's status)?"""
    from pyflom.status import query_status

    document = query_status(Settings(socket_name=box.socket), name)
    return any(resource["waiters"] for resource in document["resources"])


def test_a_with_block_handed_over_to_another_thread_releases_the_lock(
    daemon: FlomSandbox,
) -> None:
    lk = pyflom.lock("Handed", socket_name=daemon.socket)
    stack = contextlib.ExitStack()
    stack.enter_context(lk)
    errors: list[BaseException] = []

    def close() -> None:
        try:
            stack.close()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=close)
    thread.start()
    thread.join(WIDE)
    # Before: KeyError (a thread id), and the lock stayed held for good.
    assert errors == []
    assert not busy(daemon, "Handed")
    with lk:  # the object serves again
        assert busy(daemon, "Handed")


def test_a_with_block_ending_in_a_thread_among_several_holders_is_refused(
    daemon: FlomSandbox,
) -> None:
    lk = pyflom.semaphore("Pool", 2, socket_name=daemon.socket)
    stacks = [contextlib.ExitStack(), contextlib.ExitStack()]
    entered = threading.Barrier(3)

    def enter(stack: contextlib.ExitStack[None]) -> None:
        stack.enter_context(lk)
        entered.wait(WIDE)

    threads = [threading.Thread(target=enter, args=(stack,)) for stack in stacks]
    for thread in threads:
        thread.start()
    entered.wait(WIDE)
    for thread in threads:
        thread.join(WIDE)
    with pytest.raises(pyflom.InvalidSequence, match="2 threads hold the lock"):
        lk.__exit__(None, None, None)
    assert busy(daemon, "Pool[2]")
    for handle in lk._taken.values():  # the threads that entered are gone
        handle.unlock()


def test_an_async_with_block_handed_over_to_another_task_releases_the_lock(
    daemon: FlomSandbox,
) -> None:
    lk = pyflom.aio.lock("Handed", socket_name=daemon.socket)

    async def main() -> None:
        stack = contextlib.AsyncExitStack()
        await stack.enter_async_context(lk)
        await asyncio.create_task(stack.aclose())

    asyncio.run(main())
    assert not busy(daemon, "Handed")


def test_a_mode_given_by_name_in_the_settings_is_a_mode(daemon: FlomSandbox) -> None:
    settings = Settings(lock_mode="PR", socket_name=daemon.socket)  # type: ignore[arg-type]
    readers = [pyflom.Handle("Read", settings=settings) for _ in range(2)]
    assert readers[0].lock_mode is pyflom.LockMode.PR
    for handle in readers:  # before: ValueError: invalid literal for int() ... 'PR'
        handle.lock()
    for handle in readers:
        handle.close()
    with pytest.raises(ValueError, match="is not a lock mode"):
        pyflom.Handle("Read", settings=Settings(lock_mode="write"))  # type: ignore[arg-type]


def test_a_name_too_long_for_the_daemon_is_refused_before_it_is_sent(
    daemon: FlomSandbox,
) -> None:
    with pytest.raises(pyflom.InvalidResourceName, match="too long") as info:
        pyflom.Handle("x" * 5000, socket_name=daemon.socket, start_daemon=False).lock()
    # Before: ProtocolError "the daemon closed the connection without answering: the
    # daemon probably uses TLS" (it closed it because the request was too long).
    room = int(str(info.value).split("at most ")[1].split()[0])
    with pyflom.lock("x" * room, socket_name=daemon.socket, start_daemon=False) as handle:
        assert handle.held
    with pytest.raises(pyflom.InvalidResourceName, match="too long"):
        pyflom.Handle("x" * (room + 1), socket_name=daemon.socket, start_daemon=False).lock()


def test_asyncio_logs_the_pid_of_the_daemon_it_starts(
    sandbox: FlomSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="pyflom")

    async def main() -> int | None:
        async with pyflom.aio.lock("Info", socket_name=sandbox.socket):
            return sandbox.remember_daemon()

    pid = asyncio.run(main())
    # The docs: "daemons it starts (INFO: pid, socket)"; before: no pid in asyncio.
    messages = [r.getMessage() for r in caplog.records]
    assert f"started a daemon (pid {pid}) on {sandbox.socket} (it lives 5 s without clients)" in (
        messages
    )
    assert f"connected to the daemon on {sandbox.socket} (pid {pid})" in messages


def test_a_self_deadlock_with_a_timeout_does_not_say_for_ever(daemon: FlomSandbox) -> None:
    with pyflom.lock("Self", socket_name=daemon.socket):
        with pytest.raises(pyflom.SelfDeadlock) as info:
            pyflom.Handle("Self", socket_name=daemon.socket, timeout=30).lock()
        # Before: "'Self' (EX) would wait for ever on its own thread" (with a timeout).
        assert "would wait until its timeout (30 s) expires on its own thread" in str(info.value)
        with pytest.raises(pyflom.SelfDeadlock, match="would wait for ever on its own thread"):
            pyflom.Handle("Self", socket_name=daemon.socket, timeout=None).lock()


@pytest.mark.parametrize(
    "make",
    [
        lambda: pyflom.lock("Sent"),
        lambda: pyflom.Handle("Sent"),
        lambda: pyflom.aio.lock("Sent"),
        lambda: pyflom.aio.Handle("Sent"),
    ],
)
def test_pickling_a_lock_says_to_make_it_in_the_other_process(make: Any) -> None:
    # Before: "cannot pickle '_thread.lock' object" (ProcessPoolExecutor, spawn).
    with pytest.raises(TypeError, match=r"'Sent' cannot be pickled .* Make the lock in the other"):
        pickle.dumps(make())


def test_a_forked_child_may_use_the_lock_object_its_parent_holds(daemon: FlomSandbox) -> None:
    lk = pyflom.lock("Module", socket_name=daemon.socket, timeout=0)

    def child() -> None:
        try:
            with lk:
                os._exit(10)  # granted: two holders
        except pyflom.LockBusy:
            os._exit(20)  # the parent holds it: busy, as for any other process
        except pyflom.InvalidSequence:
            os._exit(30)  # before: "this thread holds already" (the parent's thread)

    with lk:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            child()
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 20
    # And once the parent released it, a child takes it.
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        child()
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 10


def test_a_daemon_that_cannot_start_is_a_connection_failure(sandbox: FlomSandbox) -> None:
    # The docs: ConnectionFailed "no daemon could be reached, and none could be started";
    # before: a plain FlomError.
    socket_name = str(sandbox.root / "missing" / "sock")
    with pytest.raises(pyflom.ConnectionFailed, match="the daemon did not start"):
        pyflom.Handle("Nowhere", socket_name=socket_name, timeout=WIDE).lock()

    async def main() -> None:
        await pyflom.aio.Handle("Nowhere", socket_name=socket_name, timeout=WIDE).lock()

    with pytest.raises(pyflom.ConnectionFailed, match="the daemon did not start"):
        asyncio.run(main())


@pytest.mark.parametrize("format", ["%Y [x]", "%Y-%m-%d", "%H/%M", "", "1%H"])
def test_a_timestamp_format_the_daemon_refuses_says_what_a_format_may_hold(format: str) -> None:
    # Before: "'_t_%Y-%m-%d[1]' is not a valid name for a resource: a resource name is
    # ASCII letters and digits ...; write 'tYmd1'" (a simple lock, not a timestamp).
    with pytest.raises(pyflom.InvalidResourceName, match="is not a timestamp format") as info:
        pyflom.timestamp(format)
    assert "write '" not in str(info.value)
    with pytest.raises(pyflom.InvalidResourceName, match="is not a timestamp format"):
        pyflom.aio.timestamp(format)
    pyflom.timestamp("%H:%M:%S#fff")


def test_a_semaphore_quantity_beyond_its_units_is_refused_when_made() -> None:
    impossible = r"'pool\[3\]' can never grant 4 units: it has 3 "
    with pytest.raises(pyflom.LockImpossible, match=impossible):
        pyflom.semaphore("pool", 3, quantity=4, start_daemon=False)
    pyflom.semaphore("pool", 3, quantity=3, start_daemon=False)  # all of them: fine


def test_one_of_the_same_element_twice_is_refused() -> None:
    with pytest.raises(ValueError, match=r"one_of\(\) got 'a' more than once"):
        pyflom.one_of("a", "b", "a", start_daemon=False)


def test_an_asyncio_request_under_a_blocking_lock_of_its_own_thread_is_a_self_deadlock(
    daemon: FlomSandbox,
) -> None:
    """The thread holding the blocking lock runs the event loop: it cannot release the
    lock while the task waits for it."""

    async def inner() -> None:
        async with pyflom.aio.lock("Mixed", timeout=WIDE, socket_name=daemon.socket):
            pass

    with pyflom.lock("Mixed", socket_name=daemon.socket):
        with pytest.raises(pyflom.SelfDeadlock, match="'Mixed'"):
            asyncio.run(inner())
        # Another thread's task is another holder: it waits (here, it times out).
        errors: list[BaseException] = []

        def elsewhere() -> None:
            async def brief() -> None:
                async with pyflom.aio.lock("Mixed", timeout=0.3, socket_name=daemon.socket):
                    pass

            try:
                asyncio.run(brief())
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join(WIDE)
        assert len(errors) == 1 and isinstance(errors[0], pyflom.LockTimeout), errors
