"""The asyncio library (pyflom.aio) against the blocking one, in the same run.

Lock+unlock pairs per second on the UNIX socket: one client, connect per pair (FLoM's
model) and one kept connection; then N clients at once on N resources (N tasks on one
event loop for pyflom.aio, N threads with a handle each for pyflom.Handle).  Then the
event loop's lag: a 10 ms ticker's lateness (max and p99) while 1000 tasks connect and
queue on a held resource, while they all wait, and while they are granted one by one.
Client loops: asyncio, and uvloop when installed.  One private daemon, stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pyflom
import pyflom.aio
from _common import lock_request, private_daemon, raise_fd_limit, rerun_line, unlock_request

try:
    import uvloop
except ImportError:
    uvloop = None


def on_loop(kind: str, main: Coroutine[Any, Any, Any]) -> Any:
    """Run ``main`` on a fresh loop of ``kind`` ("asyncio" or "uvloop")."""
    factory = uvloop.new_event_loop if kind == "uvloop" else None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def blocking_pairs(path: str, seconds: float, keep: bool, clients: int) -> float:
    """Pairs/s of ``clients`` threads, each with its own pyflom.Handle and resource."""
    counts = [0] * clients
    stop = time.perf_counter() + seconds

    def client(i: int) -> None:
        h = pyflom.Handle(f"Bench{i}", socket_name=path, keep_connection=keep)
        while time.perf_counter() < stop:
            for _ in range(20):
                h.lock()
                h.unlock()
            counts[i] += 20
        h.close()

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


async def async_pairs(path: str, seconds: float, keep: bool, clients: int) -> float:
    """Pairs/s of ``clients`` tasks, each with its own pyflom.aio.Handle and resource."""
    counts = [0] * clients
    stop = time.perf_counter() + seconds

    async def client(i: int) -> None:
        h = pyflom.aio.Handle(f"Bench{i}", socket_name=path, keep_connection=keep)
        while time.perf_counter() < stop:
            for _ in range(20):
                await h.lock()
                await h.unlock()
            counts[i] += 20
        await h.close()

    start = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return sum(counts) / (time.perf_counter() - start)


async def bare_pairs(path: str, seconds: float) -> float:
    """The same exchange as connect per pair on bare asyncio streams, no pyflom code: the
    most an asyncio client could do here."""
    request, unlock = lock_request("Bench0"), unlock_request("Bench0")
    count = 0
    start = time.perf_counter()
    while (now := time.perf_counter()) < start + seconds:
        for _ in range(20):
            reader, writer = await asyncio.open_unix_connection(path)
            writer.write(request)
            await reader.read(4096)
            writer.write(unlock)
            writer.write_eof()
            while await reader.read(4096):
                pass
            writer.close()
            await writer.wait_closed()
        count += 20
    return count / (now - start)


class Ticker:
    """A task that sleeps 10 ms at a time and records how late it wakes up."""

    def __init__(self) -> None:
        self.lateness: list[float] = []
        self._stop = False
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop:
            due = loop.time() + 0.01
            await asyncio.sleep(0.01)
            self.lateness.append(loop.time() - due)

    def phase(self) -> list[float]:
        """The lateness recorded since the last call."""
        taken, self.lateness = self.lateness, []
        return taken

    async def stop(self) -> None:
        self._stop = True
        await self._task


def lag(samples: list[float]) -> str:
    if not samples:
        return "no tick"
    p99 = (
        statistics.quantiles(samples, n=100, method="inclusive")[98]
        if len(samples) >= 2
        else samples[0]
    )
    return f"max {max(samples) * 1000:7.1f} ms  p99 {p99 * 1000:6.1f} ms  ({len(samples)} ticks)"


async def loop_lag(path: str, waiters: int, hold: float) -> dict[str, Any]:
    """The ticker's lateness while ``waiters`` tasks queue, wait and are granted."""
    ticker = Ticker()
    await asyncio.sleep(hold)
    idle = ticker.phase()
    holder = pyflom.aio.Handle("Crowd", socket_name=path)
    await holder.lock()
    ticker.phase()
    queued = 0
    all_queued = asyncio.Event()

    def waits(_channel: object, _answer: object) -> None:
        nonlocal queued
        queued += 1
        if queued == waiters:
            all_queued.set()

    async def waiter() -> None:
        h = pyflom.aio.Handle("Crowd", socket_name=path)
        h.on_wait = waits
        await h.lock()
        await h.unlock()

    begin = time.perf_counter()
    tasks = [asyncio.create_task(waiter()) for _ in range(waiters)]
    await all_queued.wait()
    queue_s = time.perf_counter() - begin
    queueing = ticker.phase()
    await asyncio.sleep(hold)
    waiting = ticker.phase()
    begin = time.perf_counter()
    await holder.unlock()
    await asyncio.gather(*tasks)
    grant_s = time.perf_counter() - begin
    granting = ticker.phase()
    await ticker.stop()
    return {
        "idle": idle,
        "queue_s": queue_s,
        "grant_s": grant_s,
        "queueing": queueing,
        "waiting": waiting,
        "granting": granting,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="per throughput figure")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--waiters", type=int, default=1000)
    args = parser.parse_args()
    raise_fd_limit()
    loops = ["asyncio"] + (["uvloop"] if uvloop is not None else [])
    secs = args.seconds
    rows: list[tuple[str, Callable[[], float], Callable[[str], float]]] = [
        (
            "1 client, connect per pair",
            lambda: blocking_pairs(path, secs, False, 1),
            lambda kind: on_loop(kind, async_pairs(path, secs, False, 1)),
        ),
        (
            "1 client, kept connection",
            lambda: blocking_pairs(path, secs, True, 1),
            lambda kind: on_loop(kind, async_pairs(path, secs, True, 1)),
        ),
        (
            f"{args.clients} clients, connect per pair",
            lambda: blocking_pairs(path, secs, False, args.clients),
            lambda kind: on_loop(kind, async_pairs(path, secs, False, args.clients)),
        ),
        (
            f"{args.clients} clients, kept connection",
            lambda: blocking_pairs(path, secs, True, args.clients),
            lambda kind: on_loop(kind, async_pairs(path, secs, True, args.clients)),
        ),
    ]
    with private_daemon() as path:
        blocking_pairs(path, 0.3, False, 1)  # warm up
        print("pairs/s (daemon: its default loop; blocking: threads, aio: tasks on one loop)")
        print(f"{'':34} {'blocking':>9}  " + "  ".join(f"{'aio/' + k:>18}" for k in loops))
        for label, blocking, asynchronous in rows:
            base = blocking()
            cells = []
            for kind in loops:
                rate = asynchronous(kind)
                cells.append(f"{rate:9.0f} ({rate / base:4.2f}x)")
            print(f"{label:34} {base:9.0f}  " + "  ".join(f"{c:>18}" for c in cells))
        bare = [on_loop(kind, bare_pairs(path, secs)) for kind in loops]
        print(
            f"{'bare asyncio streams, same bytes':34} {'':9}  "
            + "  ".join(f"{rate:9.0f} {'':8}" for rate in bare)
            + "  (ceiling of connect per pair)"
        )
        for kind in loops:
            result = on_loop(kind, loop_lag(path, args.waiters, 1.0))
            print(f"\nloop lag on {kind}, a 10 ms ticker, {args.waiters} tasks on a held resource:")
            phases = [
                ("idle loop, nothing to do (1 s)", result["idle"]),
                (f"connecting and queueing ({result['queue_s']:.2f} s)", result["queueing"]),
                ("all waiting (1 s)", result["waiting"]),
                (f"granted one by one ({result['grant_s']:.2f} s)", result["granting"]),
            ]
            for label, samples in phases:
                print(f"  {label:34}{lag(samples)}")
    print(
        rerun_line(
            "bench_aio.py",
            f"--seconds {secs:g} --clients {args.clients} --waiters {args.waiters}",
        )
    )


if __name__ == "__main__":
    main()
