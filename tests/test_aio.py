"""pyflom.aio: the asyncio library against real daemons (``asyncio.run`` in plain tests)."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine
from typing import Any

import pytest

import pyflom
import pyflom.aio
from conftest import WIDE, FlomSandbox, process_alive, wait_for
from pki import NodeFiles, Standard, certs_fixture, pki_fixture, tls_options  # noqa: F401
from pyflom import rc
from pyflom.settings import Settings
from pyflom.uniqueid import peer_id
from test_status import free_tcp_port

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dev dependency
    uvloop = None

LOOPS = [
    "asyncio",
    pytest.param("uvloop", marks=pytest.mark.skipif(uvloop is None, reason="no uvloop")),
]


def run(main: Coroutine[Any, Any, Any], loop: str = "asyncio") -> Any:
    """Run ``main`` on a fresh event loop of the given kind."""
    factory = uvloop.new_event_loop if loop == "uvloop" else None
    with asyncio.Runner(loop_factory=factory) as runner:
        if loop == "uvloop":
            assert "uvloop" in type(runner.get_loop()).__module__
        return runner.run(main)


def handle(box: FlomSandbox, name: str, **kwargs: Any) -> pyflom.aio.Handle:
    return pyflom.aio.Handle(name, socket_name=box.socket, start_daemon=False, **kwargs)


async def queued(h: pyflom.aio.Handle) -> tuple[asyncio.Task[str | None], asyncio.Event]:
    """Start ``h.lock()`` in a task; return it and an event set once the request waits."""
    waits = asyncio.Event()
    h.on_wait = lambda _channel, _answer: waits.set()
    task = asyncio.create_task(h.lock())
    await asyncio.wait_for(waits.wait(), WIDE)
    return task, waits


@pytest.mark.parametrize("loop", LOOPS)
def test_lock_unlock_close(daemon: FlomSandbox, loop: str) -> None:
    async def main() -> None:
        h = handle(daemon, "Red")
        assert h.state is pyflom.HandleState.INIT
        assert await h.lock() is None
        assert h.state is pyflom.HandleState.LOCKED
        assert h.lock_generation is not None
        with pytest.raises(pyflom.InvalidSequence):
            await h.lock()
        with pytest.raises(pyflom.FlomError):
            h.resource_name = "Other"  # immutable while locked
        await h.unlock()
        assert h.state is pyflom.HandleState.DISCONNECTED and h.lock_generation is None
        with pytest.raises(pyflom.InvalidSequence):
            await h.unlock()
        async with h:  # locks, and unlocks at the end
            assert h.state is pyflom.HandleState.LOCKED
        assert h.state is pyflom.HandleState.DISCONNECTED
        await h.close()
        assert h.state is pyflom.HandleState.CLEANED
        with pytest.raises(pyflom.InvalidSequence):
            await h.lock()
        assert threading.active_count() == 1  # no threads

    run(main(), loop)


def test_same_arguments_as_the_blocking_handle() -> None:
    settings = Settings(socket_name="/nonexistent")
    for cls in (pyflom.Handle, pyflom.aio.Handle):
        h = cls("/seq/a", lock_mode="PR", timeout=1.5, idle_lifespan=2, settings=settings)
        assert (h.resource_timeout, h.resource_idle_lifespan, h.daemon_lifespan) == (
            1500,
            2000,
            5000,
        )
        assert h.lock_mode is pyflom.LockMode.PR
        assert cls("_s_seq[3]", kind="sequence", settings=settings).kind == "sequence"
        assert cls("R", timeout=None, settings=settings).resource_timeout == -1
        assert cls("R", start_daemon=False, settings=settings).daemon_lifespan == 0
        with pytest.raises(pyflom.InvalidResourceName):
            cls("1bad", settings=settings)
    with pytest.raises(TypeError, match="async with"), pyflom.aio.lock("R", settings=settings):
        pass


def test_lock_context_rolls_back_on_exception(daemon: FlomSandbox) -> None:
    async def main() -> None:
        where: dict[str, Any] = {"socket_name": daemon.socket, "idle_lifespan": 30}
        with pytest.raises(RuntimeError):
            async with pyflom.aio.sequence("x", transactional=True, **where) as h:
                first = h.locked_element
                raise RuntimeError("boom")
        async with pyflom.aio.lock("_S_x[1]", kind="sequence", **where) as h:
            assert h.locked_element == first  # given back
        async with pyflom.aio.sequence("x", transactional=True, **where) as h:
            assert h.locked_element != first  # consumed by the clean exit

    run(main())


def test_busy_and_timeout(daemon: FlomSandbox) -> None:
    async def main() -> None:
        async with pyflom.aio.lock("Slow", socket_name=daemon.socket):
            with pytest.raises(pyflom.LockBusy):
                await handle(daemon, "Slow", timeout=0).lock()
            begin = time.monotonic()
            h = handle(daemon, "Slow", timeout=0.3)
            with pytest.raises(pyflom.LockTimeout) as timeout:
                await asyncio.create_task(h.lock())  # this task would wait on itself
            assert time.monotonic() - begin >= 0.3
            assert str(timeout.value) == (
                "'Slow' was not granted within 0.3 s (timeout; someone else holds it)"
            )
            assert h.state is pyflom.HandleState.DISCONNECTED and h.connection is None
        assert await h.lock() is None  # the handle is still usable
        await h.close()

    run(main())


def test_one_call_at_a_time_per_handle(daemon: FlomSandbox) -> None:
    async def main() -> None:
        async with pyflom.aio.lock("Held", socket_name=daemon.socket):
            h = handle(daemon, "Held")
            task, _ = await queued(h)
            with pytest.raises(pyflom.InvalidSequence, match="another task"):
                await h.lock()
            with pytest.raises(pyflom.InvalidSequence, match="another task"):
                h.resource_timeout = 5
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    run(main())


async def _cancel(task: asyncio.Task[str | None], how: str) -> None:
    if how == "cancel":
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    else:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(task, 0.1)


@pytest.mark.parametrize(
    ("loop", "how"), [(loop, how) for loop in LOOPS for how in ("cancel", "wait_for")]
)
def test_cancelling_a_waiter_withdraws_its_request(
    daemon: FlomSandbox, loop: str, how: str
) -> None:
    """Holder, cancelled waiter, next waiter: the next one is granted on release."""

    async def main() -> None:
        holder = handle(daemon, "Queue")
        await holder.lock()
        cancelled = handle(daemon, "Queue")
        first, _ = await queued(cancelled)
        nxt = handle(daemon, "Queue")
        second, _ = await queued(nxt)
        await _cancel(first, how)
        assert cancelled.state is pyflom.HandleState.DISCONNECTED
        assert cancelled.connection is None
        await holder.unlock()
        await asyncio.wait_for(second, WIDE)  # not stuck behind the withdrawn request
        assert nxt.state is pyflom.HandleState.LOCKED
        again, _ = await queued(cancelled)  # the cancelled handle locks again
        await nxt.unlock()
        await asyncio.wait_for(again, WIDE)
        await cancelled.close()

    run(main(), loop)


def test_the_loop_runs_while_1000_tasks_wait(daemon: FlomSandbox) -> None:
    waiters = 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2 * waiters:  # a connection each (the daemon raises its own limit)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * waiters), hard))

    async def main() -> tuple[float, float]:
        holder = handle(daemon, "Crowd")
        await holder.lock()
        lateness: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            loop = asyncio.get_running_loop()
            while not stop.is_set():
                due = loop.time() + 0.01
                await asyncio.sleep(0.01)
                lateness.append(loop.time() - due)

        tick = asyncio.create_task(ticker())
        crowd = [handle(daemon, "Crowd") for _ in range(waiters)]
        tasks = [(await queued(h))[0] for h in crowd]  # each one queued before the next
        lateness.clear()  # from here on: everybody waits
        while len(lateness) < 30:
            await asyncio.sleep(0.01)
        waiting_lag = max(lateness)
        await holder.unlock()
        for h, task in zip(crowd, tasks, strict=True):  # granted in turn (FIFO)
            await asyncio.wait_for(task, WIDE)
            await h.unlock()
        stop.set()
        await tick
        return waiting_lag, max(lateness)

    waiting_lag, granting_lag = run(main())
    assert waiting_lag < 0.5, waiting_lag  # a blocking wait would freeze it for good
    assert granting_lag < 2.0, granting_lag


@pytest.mark.parametrize("loop", LOOPS)
def test_a_daemon_is_started_on_demand_without_threads(sandbox: FlomSandbox, loop: str) -> None:
    async def main() -> None:
        with pytest.raises(pyflom.ConnectionFailed):
            await pyflom.aio.Handle("R", socket_name=sandbox.socket, start_daemon=False).lock()
        assert sandbox.remember_daemon() is None
        async with pyflom.aio.lock("R", socket_name=sandbox.socket, daemon_lifespan=1) as h:
            assert h.state is pyflom.HandleState.LOCKED
            assert threading.active_count() == 1
        assert sandbox.remember_daemon() is not None

    run(main(), loop)
    (pid,) = sandbox.daemon_pids
    assert wait_for(lambda: not process_alive(pid), timeout=30)  # lifespan: 1 s


def test_a_daemon_that_cannot_start_says_why(sandbox: FlomSandbox) -> None:
    state = sandbox.path("state")
    state.write_text("not a state file")
    settings = Settings(socket_name=sandbox.socket, state_file=str(state))

    async def main() -> None:
        with pytest.raises(pyflom.FlomError) as blocked:
            await pyflom.aio.Handle("R", settings=settings).lock()
        with pytest.raises(pyflom.FlomError) as plain:
            pyflom.Handle("R", settings=settings).lock()
        assert str(blocked.value) == str(plain.value)
        assert str(blocked.value).startswith("the daemon did not start: ")

    run(main())


def test_kept_connection(daemon: FlomSandbox) -> None:
    async def main() -> None:
        h = handle(daemon, "Kept", keep_connection=True)
        await h.lock()
        connection = h.connection
        await h.unlock()
        for _ in range(50):
            await h.lock()
            await h.unlock()
        assert h.connection is connection and h.state is pyflom.HandleState.CONNECTED
        await h.lock()
        h.abandon()  # leaving without unlocking gives the lock up
        assert h.state is pyflom.HandleState.DISCONNECTED
        async with pyflom.aio.lock("Kept", timeout=WIDE, socket_name=daemon.socket):
            pass
        await h.close()
        assert h.connection is None

    run(main())


def tls_daemon(box: FlomSandbox, certs: Standard, node: NodeFiles, check: bool) -> Settings:
    """Start a TLS daemon with ``node``'s certificate; return the settings of a client
    at level 3 (peer2's certificate, the peer-id check)."""
    daemon_side = tls_options(node, certs.ca1, check=check)
    assert box.run("-d", "-1", *daemon_side, "--", "true").returncode == 0
    box.remember_daemon()
    return Settings(
        socket_name=box.socket,
        tls_certificate=str(certs.peer2.cert),
        tls_private_key=str(certs.peer2.key),
        tls_ca_certificate=str(certs.ca1.cert),
        tls_check_peer_id=True,
    )


@pytest.mark.parametrize("loop", LOOPS)
def test_a_kept_connection_outlives_its_daemon(sandbox: FlomSandbox, loop: str) -> None:
    """The daemon dies between locks: the next lock starts over on a new daemon."""

    async def main() -> None:
        h = pyflom.aio.Handle("K", socket_name=sandbox.socket, keep_connection=True)
        await h.lock()
        await h.unlock()
        first = sandbox.remember_daemon()
        assert first is not None
        os.kill(first, signal.SIGKILL)
        assert wait_for(lambda: not process_alive(first))
        await h.lock()
        assert sandbox.remember_daemon() not in (None, first)
        await h.close()

    run(main(), loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_tls_level_3_with_the_peer_id_check(
    sandbox: FlomSandbox, certs: Standard, loop: str
) -> None:
    settings = tls_daemon(sandbox, certs, certs.peer1, check=True)

    async def main() -> None:
        async with pyflom.aio.lock("Secret", settings=settings) as h:
            assert h.connection is not None and h.connection.tls
            assert h.connection.peer_common_name == peer_id()
            with pytest.raises(pyflom.LockBusy):
                await pyflom.aio.Handle("Secret", timeout=0, settings=settings).lock()
        plain = Settings(socket_name=sandbox.socket)
        with pytest.raises(pyflom.FlomError, match="TLS-PEER-NOT-TLS"):
            await pyflom.aio.Handle("Secret", settings=plain, start_daemon=False).lock()

    run(main(), loop)


def test_tls_daemon_failing_the_peer_id_check(sandbox: FlomSandbox, certs: Standard) -> None:
    """The daemon's certificate CN is not the id it announces: refused, as blocking."""
    settings = tls_daemon(sandbox, certs, certs.peer3, check=False)

    async def main() -> None:
        with pytest.raises(pyflom.FlomError, match="TLS-PEER-ID-MISMATCH") as refused:
            await pyflom.aio.Handle("R", settings=settings, start_daemon=False).lock()
        assert refused.value.rc == rc.UNIQUE_ID_DOES_NOT_MATCH
        other = Settings(
            socket_name=sandbox.socket,
            tls_certificate=str(certs.other.cert),
            tls_private_key=str(certs.other.key),
            tls_ca_certificate=str(certs.ca2.cert),
        )
        with pytest.raises(pyflom.ConnectionFailed, match=r"\[TLS-"):
            await pyflom.aio.Handle("R", settings=other, start_daemon=False).lock()

    run(main())


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("loop", LOOPS)
def test_tcp_and_multicast_discovery(sandbox: FlomSandbox, loop: str) -> None:
    port, udp = free_tcp_port(), free_udp_port()
    where = ["-a", "127.0.0.1", "-p", str(port)]
    group = ["-A", "224.0.0.199", "-P", str(udp)]
    assert sandbox.run("-d", "-1", *where, *group, "--", "true", socket_name=False).returncode == 0
    tcp = Settings(unicast_address="127.0.0.1", unicast_port=port)
    multicast = Settings(multicast_address="224.0.0.199", multicast_port=udp)

    async def main() -> None:
        async with pyflom.aio.lock("Net", settings=tcp, start_daemon=False) as h:
            assert h.lock_generation is not None
            found = pyflom.aio.Handle("Net", timeout=0, settings=multicast, start_daemon=False)
            with pytest.raises(pyflom.LockBusy):
                await found.lock()  # the same daemon, found by discovery
        async with pyflom.aio.lock("Net", settings=multicast, start_daemon=False) as h:
            assert h.connection is not None
        assert threading.active_count() == 1

    try:
        run(main(), loop)
    finally:
        assert sandbox.run(*where, "-X", socket_name=False).returncode == 0


def test_asyncio_stays_off_the_command_path() -> None:
    code = (
        "import sys, pyflom, pyflom.cli; print('asyncio' in sys.modules); "
        "import pyflom.client; print('asyncio' in sys.modules); "
        "pyflom.aio; print('asyncio' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "True"]
