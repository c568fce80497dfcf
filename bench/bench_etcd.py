"""The etcd backend against the etcd floor, same cluster, same concurrency, same run.

* Uncontended pairs/s: W workers, each on a resource of its own, lock then unlock as
  fast as they can, spread over two gateways (two EtcdBackend instances), against W raw
  etcd3aio workers doing the minimum a lock needs: txn(create_revision == 0 -> put with a
  lease) then delete.
  Also a raw loop of the gateway's transaction shape (the same compares and writes,
  decided by no one), and for each loop the CPU that etcd's members and this Python
  process spend per pair: where the gateway's time goes.
* Contended hand-off: a holder on gateway A unlocks; the waiter on gateway B is granted.
  Latency from the unlock call to B's grant, p50/p99, next to etcd's own round trip (one
  put) measured in the same run; once with the unlock right after the waiter's gateway
  got its "waiting" answer (A's gateway has not heard of the waiter yet: its transaction
  conflicts and is decided again), once with a 10 ms hold.

Starts its own 3-member cluster on loopback (tests/etcd_cluster.py: needs an etcd binary,
``make etcd`` or PYFLOM_ETCD_BIN).  Rerun: ``.venv/bin/python bench/bench_etcd.py``
(``--seconds 5 --workers 16 --handoffs 200 --rounds 3``).  Figures vary with the load
of the machine: compare figures of one run only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import etcd3aio

from etcd_cluster import EtcdCluster, require_etcd
from pyflom.core.resource import Request
from pyflom.core.table import Answer
from pyflom.etcd.backend import EtcdBackend


async def client(endpoints: list[str]) -> Any:
    c = etcd3aio.Etcd3Client(endpoints, rpc_max_attempts=1)
    await c.connect()
    return c


async def _timed_workers(c: Any, lease: int, workers: int, work: Any, done: Any) -> float:
    """Run ``work(i)`` for each worker, then give back the lease and the client: the
    pairs per second (``done()`` counts them)."""
    began = time.monotonic()
    await asyncio.gather(*(work(i) for i in range(workers)))
    rate = float(done()) / (time.monotonic() - began)
    await c.lease.revoke(lease, timeout=5)
    await c.close()
    return rate


async def raw_pairs(endpoints: list[str], workers: int, seconds: float) -> float:
    c = await client(endpoints)
    lease = (await c.lease.grant(ttl=30, timeout=5)).ID
    prefix = f"/raw-{uuid.uuid4().hex[:8]}/"
    done = 0
    stop = time.monotonic() + seconds

    async def work(i: int) -> None:
        nonlocal done
        n = 0
        while time.monotonic() < stop:
            n += 1
            key = f"{prefix}{i}/{n}"
            await c.kv.txn(
                [c.kv.txn_compare_create_revision(key, 0)],
                [c.kv.txn_op_put(key, b"x", lease=lease)],
                timeout=5,
            )
            await c.kv.delete(key, timeout=5)
            done += 1

    return await _timed_workers(c, lease, workers, work, lambda: done)


class Gate:
    def __init__(self, endpoints: list[str], prefix: str, name: str) -> None:
        self.waiting: dict[object, asyncio.Future[Answer]] = {}

        async def factory() -> Any:
            return await client(endpoints)

        self.backend = EtcdBackend(
            factory, policy="flom", gateway=name, push=self.push, drop=print, prefix=prefix
        )

    def push(self, answers: list[Answer]) -> None:
        for a in answers:
            if a.rc in (0, 4, 5, 6):  # final answers
                future = self.waiting.pop(a.conn, None)
                if future is not None and not future.done():
                    future.set_result(a)

    async def lock(self, conn: object, name: str) -> Answer:
        future = asyncio.get_running_loop().create_future()
        self.waiting[conn] = future
        assert self.backend.lock(conn, Request(name), time.time()) == []
        return await future


async def gateway_pairs(endpoints: list[str], workers: int, seconds: float) -> float:
    prefix = f"/gw-{uuid.uuid4().hex[:8]}/"
    gates = [Gate(endpoints, prefix, f"g{i}") for i in range(2)]
    for g in gates:
        await g.backend.start()
    done = 0
    stop = time.monotonic() + seconds

    async def work(i: int) -> None:
        nonlocal done
        g = gates[i % 2]
        name = f"R{i}"
        n = 0
        while time.monotonic() < stop:
            n += 1
            conn = (i, n)
            answer = await g.lock(conn, name)
            assert answer.rc == 0, answer
            g.backend.unlock(conn, name, False, time.time())
            done += 1

    began = time.monotonic()
    await asyncio.gather(*(work(i) for i in range(workers)))
    for g in gates:  # the last unlocks are written too
        while g.backend._tasks:
            await asyncio.gather(*g.backend._tasks, return_exceptions=True)
    rate = done / (time.monotonic() - began)
    for g in gates:
        await g.backend.close()
    return rate


async def handoffs(endpoints: list[str], count: int, hold: float = 0.0) -> list[float]:
    """Hand-off latencies; ``hold``: seconds the holder keeps the lock after the
    waiter is queued (0: it unlocks as soon as the waiter's gateway has its answer,
    before the holder's gateway can have heard of the waiter)."""
    prefix = f"/ho-{uuid.uuid4().hex[:8]}/"
    a, b = Gate(endpoints, prefix, "a"), Gate(endpoints, prefix, "b")
    await a.backend.start()
    await b.backend.start()
    latencies = []
    holder, waiter = a, b
    conn = 0
    conn += 1
    assert (await holder.lock(conn, "H")).rc == 0
    held = conn
    for _ in range(count):
        conn += 1
        future = asyncio.get_running_loop().create_future()
        waiter.waiting[conn] = future
        waiter.backend.lock(conn, Request("H"), time.time())
        while waiter.backend.what(conn) != ("H", "waiting"):
            await asyncio.sleep(0.001)
        await asyncio.sleep(hold)
        began = time.perf_counter()
        holder.backend.unlock(held, "H", False, time.time())
        assert (await future).rc == 0
        latencies.append(time.perf_counter() - began)
        held = conn
        holder, waiter = waiter, holder
    await a.backend.close()
    await b.backend.close()
    return latencies


async def round_trips(endpoints: list[str], count: int) -> list[float]:
    c = await client(endpoints)
    times = []
    for i in range(count):
        began = time.perf_counter()
        await c.kv.put(f"/rt-{i % 10}", b"x", timeout=5)
        times.append(time.perf_counter() - began)
    await c.close()
    return times


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1000


async def shaped_pairs(endpoints: list[str], workers: int, seconds: float) -> float:
    """The raw client doing what the gateway writes for a lock and an unlock, with no
    decision: txn(state key unchanged, no request put since; put the request) then
    txn(the same compares; delete the request, put the state key)."""
    from etcd3aio._protobuf import Compare, DeleteRangeRequest, PutRequest, RequestOp

    c = await client(endpoints)
    lease = (await c.lease.grant(ttl=30, timeout=5)).ID
    prefix = f"/shape-{uuid.uuid4().hex[:8]}/"
    done = 0
    stop = time.monotonic() + seconds

    def guard(p: bytes, state_revision: int, at: int) -> list[Any]:
        return [
            Compare(result=Compare.EQUAL, target=Compare.MOD, key=p + b"s", mod_revision=0)
            if state_revision == 0
            else Compare(
                result=Compare.EQUAL,
                target=Compare.MOD,
                key=p + b"s",
                mod_revision=state_revision,
            ),
            Compare(
                result=Compare.LESS,
                target=Compare.MOD,
                key=p + b"q/",
                range_end=p + b"q0",
                mod_revision=at + 1,
            ),
        ]

    async def work(i: int) -> None:
        nonlocal done
        p = f"{prefix}r/R{i}/".encode()
        failure = [c.kv.txn_op_get(p.decode(), range_end=etcd3aio.prefix_range_end(p.decode()))]
        state_revision = at = n = 0
        while time.monotonic() < stop:
            n += 1
            entry = p + b"q/g0.%d.%d" % (i, n)
            put = RequestOp(request_put=PutRequest(key=entry, value=b"x" * 90, lease=lease))
            reply = await c.kv.txn(guard(p, state_revision, at), [put], failure, timeout=5)
            at = reply.header.revision
            ops = [
                RequestOp(request_put=PutRequest(key=p + b"s", value=b"y" * 40)),
                RequestOp(request_delete_range=DeleteRangeRequest(key=entry)),
            ]
            reply = await c.kv.txn(guard(p, state_revision, at), ops, failure, timeout=5)
            at = state_revision = reply.header.revision
            done += 1

    return await _timed_workers(c, lease, workers, work, lambda: done)


class Loop:
    """One way of doing pairs, with its rate and CPU per pair over the rounds."""

    def __init__(self, label: str, run: Any) -> None:
        self.label, self.run = label, run
        self.rates: list[float] = []
        self.etcd_ms: list[float] = []
        self.python_ms: list[float] = []

    async def measure(
        self, args: argparse.Namespace, endpoints: list[str], pids: list[int]
    ) -> None:
        etcd_before, python_before = cpu_seconds(pids), time.process_time()
        began = time.monotonic()
        rate = await self.run(endpoints, args.workers, args.seconds)
        pairs = rate * (time.monotonic() - began)
        self.rates.append(rate)
        self.etcd_ms.append((cpu_seconds(pids) - etcd_before) / pairs * 1000)
        self.python_ms.append((time.process_time() - python_before) / pairs * 1000)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the processes ``pids``."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


async def main(args: argparse.Namespace, endpoints: list[str], pids: list[int]) -> None:
    raw = Loop("raw etcd3aio txn(put-if-absent, lease) + delete", raw_pairs)
    shaped = Loop("raw etcd3aio, the gateway's transactions", shaped_pairs)
    gateway = Loop("EtcdBackend, 2 gateways", gateway_pairs)
    loops = [raw, shaped, gateway]
    for _ in range(args.rounds):  # interleaved: the machine's load changes over a run
        for loop in loops:
            await loop.measure(args, endpoints, pids)
    print(f"uncontended, {args.workers} workers, {args.rounds} x {args.seconds:g} s each:")
    print(
        "  rounds (raw, shaped, gateways): "
        + ", ".join(
            "/".join(f"{r:.0f}" for r in rs)
            for rs in zip(raw.rates, shaped.rates, gateway.rates, strict=True)
        )
    )
    base = statistics.mean(raw.rates)
    for loop in loops:
        rate = statistics.mean(loop.rates)
        etcd_ms, python_ms = statistics.mean(loop.etcd_ms), statistics.mean(loop.python_ms)
        print(
            f"  {loop.label:<50} {rate:6.0f} pairs/s ({rate / base:.2f}x)  CPU per pair: "
            f"etcd {etcd_ms:.2f} ms, Python {python_ms:.2f} ms"
        )
    rtt = await round_trips(endpoints, args.handoffs)
    await handoffs(endpoints, 20)  # warm-up
    print(f"contended hand-off A -> B, {args.handoffs} times:")
    for hold in (0.0, 0.01):
        lat = await handoffs(endpoints, args.handoffs, hold)
        print(
            f"  unlock on A -> granted on B, held {hold * 1000:2.0f} ms after B queued: "
            f"p50 {pct(lat, 0.5):.2f} ms  p99 {pct(lat, 0.99):.2f} ms"
        )
    print(
        f"  etcd round trip (one put):   p50 {pct(rtt, 0.5):.2f} ms  p99 {pct(rtt, 0.99):.2f} ms"
        f"  (mean {statistics.mean(rtt) * 1000:.2f} ms)"
    )
    print("rerun: .venv/bin/python bench/bench_etcd.py " + " ".join(sys.argv[1:]))


def end_on_signal(signum: int, _frame: object) -> None:
    """Leave as an interrupted program does (status 128 + the signal's number)."""
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--handoffs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    # SIGTERM (or SIGINT) leaves through the `finally` that ends the members by PID: killed
    # by a signal, the bench would otherwise leave its cluster running.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, end_on_signal)
    with tempfile.TemporaryDirectory() as root:
        cluster = EtcdCluster(require_etcd(), Path(root))
        try:
            cluster.start()
            pids = [m.pid for m in cluster.members if m.pid is not None]
            asyncio.run(main(options, cluster.endpoints, pids))
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, signal.SIG_IGN)  # the clean-up is not cut short
            cluster.close()
