"""The etcd backend against the etcd floor, same cluster, same concurrency, same run.

* Uncontended pairs/s: W workers, each on a resource of its own, lock then unlock as
  fast as they can, spread over two gateways (two EtcdBackend instances), against W raw
  etcd3aio workers doing the minimum a lock needs: txn(create_revision == 0 -> put with a
  lease) then delete.
* Contended hand-off: a holder on gateway A unlocks; the waiter on gateway B is granted.
  Latency from the unlock call to B's grant, p50/p99, next to etcd's own round trip (one
  put) measured in the same run.

Starts its own 3-member cluster on loopback (tests/etcd_cluster.py: needs an etcd binary,
``make etcd`` or PYFLOM_ETCD_BIN).  Rerun: ``.venv/bin/python bench/bench_etcd.py``
(``--seconds 5 --workers 16 --handoffs 200 --rounds 3``).
"""

from __future__ import annotations

import argparse
import asyncio
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

    began = time.monotonic()
    await asyncio.gather(*(work(i) for i in range(workers)))
    rate = done / (time.monotonic() - began)
    await c.lease.revoke(lease, timeout=5)
    await c.close()
    return rate


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


async def handoffs(endpoints: list[str], count: int) -> list[float]:
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


async def main(args: argparse.Namespace, endpoints: list[str]) -> None:
    raws, gws = [], []
    for _ in range(args.rounds):  # interleaved: the machine's load changes over a run
        raws.append(await raw_pairs(endpoints, args.workers, args.seconds))
        gws.append(await gateway_pairs(endpoints, args.workers, args.seconds))
    raw, gw = statistics.mean(raws), statistics.mean(gws)
    print(f"uncontended, {args.workers} workers, {args.rounds} x {args.seconds:g} s each:")
    print(
        "  rounds (raw, gateways): "
        + ", ".join(f"{r:.0f}/{g:.0f}" for r, g in zip(raws, gws, strict=True))
    )
    print(f"  raw etcd3aio txn(put-if-absent, lease) + delete: {raw:8.0f} pairs/s")
    print(f"  EtcdBackend, 2 gateways:                        {gw:8.0f} pairs/s ({gw / raw:.2f}x)")
    rtt = await round_trips(endpoints, args.handoffs)
    await handoffs(endpoints, 20)  # warm-up
    lat = await handoffs(endpoints, args.handoffs)
    print(f"contended hand-off A -> B, {args.handoffs} times:")
    print(f"  unlock on A -> granted on B: p50 {pct(lat, 0.5):.2f} ms  p99 {pct(lat, 0.99):.2f} ms")
    print(
        f"  etcd round trip (one put):   p50 {pct(rtt, 0.5):.2f} ms  p99 {pct(rtt, 0.99):.2f} ms"
        f"  (mean {statistics.mean(rtt) * 1000:.2f} ms)"
    )
    print("rerun: .venv/bin/python bench/bench_etcd.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--handoffs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        cluster = EtcdCluster(require_etcd(), Path(root))
        cluster.start()
        try:
            asyncio.run(main(options, cluster.endpoints))
        finally:
            cluster.close()
