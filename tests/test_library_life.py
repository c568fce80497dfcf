"""The life of a lock in the library (issue 17, items 5, 6, 7 and 9): lock objects and
handles as context managers, a lock that would wait on its own thread, a lock lost with
its daemon, and the library's log.  Real daemons, real sockets."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import pyflom
import pyflom.aio
from conftest import FLOM, WIDE, FlomSandbox, busy, process_alive, wait_for
from pki import Standard, certs_fixture, pki_fixture  # noqa: F401
from pyflom.settings import Settings
from test_aio import tls_daemon
from test_status import free_tcp_port

HERE = Path(__file__).name


# -- 5. lock objects and handles as context managers ------------------------------------
def test_a_lock_object_serves_one_with_after_the_other(daemon: FlomSandbox) -> None:
    lk = pyflom.lock("Again", socket_name=daemon.socket)
    for _ in range(3):
        with lk as handle:
            assert handle.state is pyflom.HandleState.LOCKED
            assert busy(daemon, "Again")
        assert not busy(daemon, "Again")


def test_a_nested_with_on_the_same_lock_object_raises_at_once(daemon: FlomSandbox) -> None:
    lk = pyflom.lock("Nested", socket_name=daemon.socket, timeout=WIDE)
    with lk:
        begin = time.monotonic()
        with pytest.raises(pyflom.InvalidSequence, match="holds already") as info, lk:
            pass
        assert time.monotonic() - begin < WIDE / 4
        assert HERE in str(info.value)  # where the outer with took it
        assert busy(daemon, "Nested")  # the outer lock is untouched
    assert not busy(daemon, "Nested")


def test_threads_sharing_a_lock_object_take_turns(daemon: FlomSandbox) -> None:
    lk = pyflom.lock("Shared", socket_name=daemon.socket)
    first_in, first_may_leave = threading.Event(), threading.Event()
    order: list[str] = []
    errors: list[BaseException] = []

    def first() -> None:
        with lk:
            order.append("first in")
            first_in.set()
            first_may_leave.wait(WIDE)
            order.append("first out")

    def second() -> None:
        try:
            with lk:
                order.append("second in")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert first_in.wait(WIDE)
    threads[1].start()
    time.sleep(0.3)  # the second thread waits at the daemon, it does not fail
    assert order == ["first in"] and not errors
    first_may_leave.set()
    for thread in threads:
        thread.join(WIDE)
    assert order == ["first in", "first out", "second in"] and not errors


def test_with_a_handle_locks_and_unlocks_and_keeps_it_usable(daemon: FlomSandbox) -> None:
    handle = pyflom.Handle("WithHandle", socket_name=daemon.socket)
    with handle as same:
        assert same is handle and handle.state is pyflom.HandleState.LOCKED
        assert busy(daemon, "WithHandle")
        with pytest.raises(pyflom.InvalidSequence, match="with statement holds the lock"):
            handle.lock()
    assert handle.state is pyflom.HandleState.DISCONNECTED
    assert not busy(daemon, "WithHandle")
    with handle:  # again
        assert busy(daemon, "WithHandle")
    handle.lock()  # and by hand
    handle.unlock()
    handle.close()
    assert handle.state is pyflom.HandleState.CLEANED


def test_with_a_handle_rolls_back_on_an_exception(daemon: FlomSandbox) -> None:
    handle = pyflom.Handle("_S_tx[1]", kind="sequence", socket_name=daemon.socket)
    with pytest.raises(RuntimeError), handle:
        taken = handle.locked_element
        assert taken == "1"
        raise RuntimeError("boom")
    with handle:
        assert handle.locked_element == taken  # given back, handed out again


def test_async_lock_objects_and_handles(daemon: FlomSandbox) -> None:
    async def main() -> None:
        lk = pyflom.aio.lock("AsyncAgain", socket_name=daemon.socket, timeout=WIDE)
        for _ in range(2):
            async with lk as handle:
                assert handle.state is pyflom.HandleState.LOCKED
                with pytest.raises(pyflom.InvalidSequence, match="holds already"):
                    async with lk:
                        pass
        entered = asyncio.Event()
        release = asyncio.Event()
        order: list[str] = []

        async def holder() -> None:
            async with lk:
                order.append("holder in")
                entered.set()
                await release.wait()
                order.append("holder out")

        async def waiter() -> None:
            async with lk:
                order.append("waiter in")

        tasks = [asyncio.create_task(holder())]
        await asyncio.wait_for(entered.wait(), WIDE)
        tasks.append(asyncio.create_task(waiter()))
        await asyncio.sleep(0.3)
        release.set()
        await asyncio.wait_for(asyncio.gather(*tasks), WIDE)
        assert order == ["holder in", "holder out", "waiter in"]

        h = pyflom.aio.Handle("AsyncWith", socket_name=daemon.socket)
        async with h:
            assert h.state is pyflom.HandleState.LOCKED
            with pytest.raises(pyflom.InvalidSequence, match="with statement holds the lock"):
                await h.lock()
        assert h.state is pyflom.HandleState.DISCONNECTED
        async with h:
            pass
        await h.close()

    asyncio.run(main())


# -- 6. a lock that would wait on its own thread ----------------------------------------
def test_a_lock_waiting_on_its_own_thread_raises_at_once(daemon: FlomSandbox) -> None:
    with pyflom.lock("Self", "PR", socket_name=daemon.socket):
        with pyflom.lock("Self", "CR", timeout=WIDE, socket_name=daemon.socket):
            pass  # compatible: fine
        begin = time.monotonic()
        with (
            pytest.raises(pyflom.SelfDeadlock) as info,
            pyflom.lock("Self", "EX", timeout=WIDE, socket_name=daemon.socket),
        ):
            pass
        assert time.monotonic() - begin < WIDE / 4
    message = str(info.value)
    assert "'Self' (EX)" in message and "'Self' (PR)" in message and HERE in message
    assert isinstance(info.value, pyflom.InvalidSequence)
    assert info.value.rc == -44


def test_other_threads_still_wait_for_a_lock(daemon: FlomSandbox) -> None:
    got: list[float] = []
    with pyflom.lock("Turns", socket_name=daemon.socket):
        other = threading.Thread(
            target=lambda: got.append(
                pyflom.Handle("Turns", socket_name=daemon.socket, timeout=WIDE).lock() or 1.0
            )
        )
        other.start()
        time.sleep(0.3)
        assert not got  # waiting, not refused
    other.join(WIDE)
    assert got == [1.0]


def test_self_deadlock_by_resource_kind(daemon: FlomSandbox) -> None:
    s = daemon.socket
    with pyflom.lock("/tree", "EX", socket_name=s), pytest.raises(pyflom.SelfDeadlock):
        pyflom.Handle("/tree/leaf", lock_mode="CR", timeout=WIDE, socket_name=s).lock()
    with (
        pyflom.semaphore("units", 3, quantity=2, socket_name=s),
        pyflom.semaphore("units", 3, timeout=WIDE, socket_name=s),  # 2 + 1 <= 3
        pytest.raises(pyflom.SelfDeadlock),
    ):
        pyflom.Handle("units[3]", kind="numeric", timeout=WIDE, socket_name=s).lock()  # 4 > 3
    with (
        pyflom.one_of("red", "green", socket_name=s) as one,
        pyflom.one_of("red", "green", timeout=WIDE, socket_name=s) as two,
    ):
        assert {one.locked_element, two.locked_element} == {"red", "green"}
        with pytest.raises(pyflom.SelfDeadlock):
            pyflom.Handle("red.green", kind="set", timeout=WIDE, socket_name=s).lock()


def test_an_asyncio_task_waiting_on_itself_raises_at_once(daemon: FlomSandbox) -> None:
    async def main() -> None:
        async with pyflom.aio.lock("SelfTask", socket_name=daemon.socket):
            other = asyncio.create_task(
                pyflom.aio.Handle("SelfTask", socket_name=daemon.socket, timeout=0.3).lock()
            )
            with pytest.raises(pyflom.LockTimeout):  # another task: it waits
                await other
            with pytest.raises(pyflom.SelfDeadlock, match="its own task"):
                await pyflom.aio.Handle("SelfTask", socket_name=daemon.socket).lock()

    asyncio.run(main())


# -- 7. a lock lost with its daemon -----------------------------------------------------
def _kill_daemon(box: FlomSandbox) -> None:
    pid = box.remember_daemon()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not process_alive(pid), timeout=WIDE)


def test_a_lost_lock_raises_lock_lost_at_the_end_of_the_block(daemon: FlomSandbox) -> None:
    called = threading.Event()
    reported: list[pyflom.LockLost] = []

    def on_lost(error: pyflom.LockLost) -> None:
        reported.append(error)
        called.set()

    lk = pyflom.lock("Lost", socket_name=daemon.socket, on_lost=on_lost)
    with pytest.raises(pyflom.LockLost) as info, lk as handle:
        assert handle.held
        _kill_daemon(daemon)
        assert called.wait(WIDE)  # the callback fires by itself
        assert not handle.held
        assert not busy(daemon, "Lost")  # a new daemon: someone else gets it
        daemon.remember_daemon()
    error = info.value
    assert error.resource == "Lost" and error.lost_at is not None
    assert "lost" in str(error) and "Broken pipe" not in str(error)
    assert reported[0].resource == "Lost"
    with pyflom.lock("Lost", socket_name=daemon.socket, timeout=WIDE):  # works again
        daemon.remember_daemon()


def test_a_lost_lock_raises_on_the_next_call(daemon: FlomSandbox) -> None:
    handle = pyflom.Handle("LostCall", socket_name=daemon.socket)
    handle.lock()
    _kill_daemon(daemon)
    with pytest.raises(pyflom.LockLost, match="'LostCall'"):
        handle.unlock()
    handle.lock()  # the handle is usable again (a new daemon)
    daemon.remember_daemon()
    _kill_daemon(daemon)
    with pytest.raises(pyflom.LockLost):
        handle.lock()
    handle.lock()
    daemon.remember_daemon()
    handle.close()


def test_a_lock_lost_over_tcp_is_seen_before_the_unlock_is_sent(sandbox: FlomSandbox) -> None:
    """Over TCP a send to a daemon that has gone may succeed: the unlock looks first."""
    from pyflom.transport import connection_ended

    port = str(free_tcp_port())
    where = ["-a", "127.0.0.1", "-p", port]
    assert sandbox.run("-d", "-1", *where, "--", "true", socket_name=False).returncode == 0
    [pid] = [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and _argv_has(entry, f"--unicast-port {port} ")
    ]
    sandbox.daemon_pids.add(pid)
    settings = Settings(unicast_address="127.0.0.1", unicast_port=int(port))
    handle = pyflom.Handle("LostTcp", settings=settings, start_daemon=False)
    handle.lock()
    assert handle.held and handle.connection is not None
    fd = handle.connection.fileno()
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: connection_ended(fd), timeout=WIDE)  # (the handle is not told)
    with pytest.raises(pyflom.LockLost, match="'LostTcp'"):
        handle.unlock()


def _argv_has(proc: Path, text: str) -> bool:
    try:
        return text.replace(" ", "\0").encode() in (proc / "cmdline").read_bytes()
    except OSError:
        return False


def test_a_lock_lost_over_tls_is_seen_on_the_socket(sandbox: FlomSandbox, certs: Standard) -> None:
    settings = tls_daemon(sandbox, certs, certs.peer1, check=False)
    lost = threading.Event()
    with (
        pytest.raises(pyflom.LockLost),
        pyflom.lock("LostTls", settings=settings, on_lost=lambda _: lost.set()) as handle,
    ):
        assert handle.connection is not None and handle.connection.tls and handle.held
        _kill_daemon(sandbox)
        assert lost.wait(WIDE)
        assert not handle.held


def test_a_watched_handle_dropped_while_locked_releases_its_lock(daemon: FlomSandbox) -> None:
    handle = pyflom.Handle("Dropped", socket_name=daemon.socket)
    handle.on_lost = lambda _: None  # a watching thread polls the lock's socket
    handle.lock()
    assert busy(daemon, "Dropped")
    del handle  # no unlock: the connection closes, as without a watch
    assert wait_for(lambda: not busy(daemon, "Dropped"), timeout=WIDE)


def test_a_lost_outer_lock_is_no_self_deadlock(daemon: FlomSandbox) -> None:
    outer = pyflom.Handle("LostOuter", socket_name=daemon.socket)
    outer.lock()
    _kill_daemon(daemon)
    with pyflom.lock("LostOuter", socket_name=daemon.socket, timeout=WIDE):
        daemon.remember_daemon()  # granted by a new daemon, not refused
    with pytest.raises(pyflom.LockLost):
        outer.unlock()


def test_an_asyncio_holder_is_cancelled_when_its_lock_is_lost(daemon: FlomSandbox) -> None:
    async def main() -> None:
        locked = asyncio.Event()
        reported: list[pyflom.LockLost] = []

        async def holder() -> None:
            async with pyflom.aio.lock(
                "AsyncLost",
                socket_name=daemon.socket,
                cancel_on_loss=True,
                on_lost=reported.append,
            ) as handle:
                assert handle.held
                locked.set()
                await asyncio.sleep(10 * WIDE)  # cancelled when the lock is lost

        task = asyncio.create_task(holder())
        await asyncio.wait_for(locked.wait(), WIDE)
        await asyncio.to_thread(_kill_daemon, daemon)
        done, _ = await asyncio.wait([task], timeout=WIDE)
        assert done, "the holder was not cancelled"
        with pytest.raises(pyflom.LockLost, match="'AsyncLost'"):
            task.result()
        assert not task.cancelled() and task.cancelling() == 0
        assert reported and reported[0].resource == "AsyncLost"

    asyncio.run(main())


# -- 9. the library's log ---------------------------------------------------------------
def test_the_library_logs_to_the_pyflom_logger(
    sandbox: FlomSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="pyflom")
    handle = pyflom.Handle("Logged", socket_name=sandbox.socket, timeout=WIDE)
    handle.lock()
    pid = sandbox.remember_daemon()

    def waits() -> None:
        with pyflom.lock("Logged", socket_name=sandbox.socket, timeout=WIDE):
            pass

    waiter = threading.Thread(target=waits)
    waiter.start()
    assert wait_for(
        lambda: any(
            r.levelname == "INFO" and r.getMessage().startswith("waiting for 'Logged': held by")
            for r in caplog.records
        ),
        WIDE,
    )
    handle.unlock()
    waiter.join(WIDE)
    messages = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert any(
        level == "INFO" and f"started a daemon (pid {pid}) on {sandbox.socket}" in text
        for _, level, text in messages
    ), messages
    assert any(level == "DEBUG" and "connected to the daemon on" in t for _, level, t in messages)
    assert any(
        level == "DEBUG" and "granted 'Logged' (EX), generation " in t for _, level, t in messages
    )
    assert all(name.startswith("pyflom") for name, _, _ in messages)
    _kill_daemon(sandbox)
    caplog.clear()
    lost = pyflom.Handle("Logged", socket_name=sandbox.socket)
    lost.lock()
    sandbox.remember_daemon()
    _kill_daemon(sandbox)
    assert not lost.held
    assert [r.levelname for r in caplog.records if "was lost" in r.getMessage()] == ["WARNING"]


def test_the_command_does_not_import_logging(daemon: FlomSandbox) -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", FLOM, "-s", daemon.socket, "-r", "x", "--", "true"],
        capture_output=True,
        text=True,
        env=daemon.env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()]
    assert "pyflom.client" in imported
    assert not {"logging", "threading", "asyncio"} & set(imported)


def test_at_info_the_log_says_which_daemon_started(
    sandbox: FlomSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pyflom")
    with pyflom.lock("Info", socket_name=sandbox.socket):
        pid = sandbox.remember_daemon()
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO] == [
        f"started a daemon (pid {pid}) on {sandbox.socket} (it lives 5 s without clients)"
    ]
    assert not [r for r in caplog.records if r.levelno < logging.INFO]
