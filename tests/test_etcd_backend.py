"""EtcdBackend against a real 3-member etcd cluster: two gateways in one process."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from pyflom import rc
from pyflom.core.resource import Request
from pyflom.core.table import Answer, ProtocolViolation
from pyflom.settings import GrantPolicy

etcd3aio = pytest.importorskip("etcd3aio")
from pyflom.etcd.backend import EtcdBackend  # noqa: E402
from pyflom.etcd.connect import keepalive_options  # noqa: E402

WAIT = 20.0  # generous: answers normally come within milliseconds


class Gateway:
    """An EtcdBackend with the answers it pushes and the connections it drops."""

    def __init__(self, endpoints: list[str], prefix: str, name: str, policy: str, **kw: Any):
        self.answers: asyncio.Queue[Answer] = asyncio.Queue()
        self.dropped: asyncio.Queue[tuple[object, str]] = asyncio.Queue()

        async def factory() -> Any:
            client = etcd3aio.Etcd3Client(endpoints, rpc_max_attempts=1)
            # A stopped member is found dead by gRPC keepalive, as in connect().
            client._manager.grpc_options = keepalive_options(client._manager.grpc_options)
            await client.connect()
            return client

        self.backend = EtcdBackend(
            factory,
            policy=policy,
            gateway=name,
            push=self._push,
            drop=lambda conn, why: self.dropped.put_nowait((conn, why)),
            prefix=prefix,
            ttl=kw.pop("ttl", 15),
            **kw,
        )

    def _push(self, answers: list[Answer]) -> None:
        for answer in answers:
            self.answers.put_nowait(answer)

    async def next(self) -> tuple[object, int, str | None, int | None]:
        a = await asyncio.wait_for(self.answers.get(), WAIT)
        return a.conn, a.rc, a.element, a.generation

    async def lock(
        self, conn: object, name: str, **kw: Any
    ) -> tuple[object, int, str | None, int | None]:
        now = asyncio.get_running_loop().time()
        immediate = self.backend.lock(conn, Request(name, **kw), now)
        if immediate:
            a = immediate[0]
            return a.conn, a.rc, a.element, a.generation
        return await self.next()

    def unlock(self, conn: object, name: str, rollback: bool = False) -> None:
        assert self.backend.unlock(conn, name, rollback, 0.0) == []

    async def settled(self) -> None:
        """Every request this gateway started is written."""
        while self.backend._tasks:
            await asyncio.gather(*self.backend._tasks, return_exceptions=True)

    async def quiet(self, seconds: float = 0.3) -> None:
        """Nothing more is pushed for ``seconds``."""
        await asyncio.sleep(seconds)
        assert self.answers.empty(), self.answers.get_nowait()


@asynccontextmanager
async def gateways(
    cluster: Any, count: int = 2, policy: str = GrantPolicy.FLOM, **kw: Any
) -> AsyncIterator[list[Gateway]]:
    prefix = f"/test-{uuid.uuid4().hex[:8]}/"
    made = [Gateway(cluster.endpoints, prefix, f"gw{i}", policy, **dict(kw)) for i in range(count)]
    for g in made:
        await g.backend.start()
    try:
        yield made
    finally:
        for g in made:
            await g.backend.close()


def run(coro_fn: Callable[[], Any]) -> None:
    asyncio.run(asyncio.wait_for(coro_fn(), 120))


def test_holder_on_a_waiter_on_b_granted_after_unlock(etcd_shared: Any) -> None:
    async def main() -> None:
        async with gateways(etcd_shared) as (a, b):
            c1, code, _, gen1 = await a.lock(1, "R")
            assert (c1, code) == (1, rc.OK) and gen1
            assert await b.lock(2, "R") == (2, rc.LOCK_ENQUEUED, None, None)
            assert b.backend.what(2) == ("R", "waiting")
            a.unlock(1, "R")
            conn, code, _, gen2 = await b.next()
            assert (conn, code) == (2, rc.OK) and gen2 > gen1
            assert b.backend.what(2) == ("R", "holding")
            assert not a.backend.involves(1)
            status = await a.backend.status()
            (res,) = status["resources"]
            assert [(h["gateway"], h["connection"]) for h in res["holders"]] == [("gw1", "2")]
            b.unlock(2, "R")
            await b.settled()
            # busy without waiting, as the memory table answers
            assert (await a.lock(3, "R", wait=False))[1] == rc.OK
            assert (await b.lock(4, "R", wait=False))[1] == rc.LOCK_BUSY
            assert not b.backend.involves(4)
            with pytest.raises(ProtocolViolation):
                b.backend.unlock(4, "R", False, 0.0)
            assert b.backend.lock(5, Request("bad name"), 0.0)[0].rc == rc.INVALID_RESOURCE_NAME
            await a.quiet()
            await b.quiet()

    run(main)


async def cache_is_current(g: Gateway, key: str) -> bool:
    """The gateway's cached snapshot of ``key`` says what a fresh read says."""
    cached = g.backend._cache.get(key)
    fresh = await g.backend._read(key)
    g.backend._cache[key] = cached  # type: ignore[assignment]  (the read replaced it)
    return cached is not None and (
        cached.entries,
        cached.state,
        cached.state_revision,
        cached.uid,
    ) == (fresh.entries, fresh.state, fresh.state_revision, fresh.uid)


def test_watch_keeps_the_cache_current_so_a_hand_off_is_one_transaction(
    etcd_shared: Any,
) -> None:
    """A gateway that watches a resource follows other gateways' writes in its cache:
    its unlock is decided on current keys, one transaction, no read, no conflict."""

    async def main() -> None:
        async with gateways(etcd_shared) as (a, b):
            assert (await a.lock(1, "H"))[1] == rc.OK
            assert (await b.lock(2, "H"))[1] == rc.LOCK_ENQUEUED
            a.unlock(1, "H")
            assert (await b.next())[:2] == (2, rc.OK)  # granted by A's transaction
            assert (await a.lock(3, "H"))[1] == rc.LOCK_ENQUEUED
            for _ in range(100):  # B's watch brings A's request into its cache
                if await cache_is_current(b, "H"):
                    break
                await asyncio.sleep(0.05)
            assert await cache_is_current(b, "H")
            calls: list[str] = []
            kv = b.backend.client.kv
            txn, get = kv.txn, kv.get

            async def counted_txn(*args: Any, **kw: Any) -> Any:
                reply = await txn(*args, **kw)
                calls.append("txn" if reply.succeeded else "conflict")
                return reply

            async def counted_get(*args: Any, **kw: Any) -> Any:
                calls.append("get")
                return await get(*args, **kw)

            kv.txn, kv.get = counted_txn, counted_get
            b.unlock(2, "H")
            assert (await a.next())[:2] == (3, rc.OK)
            await b.settled()
            assert calls == ["txn"]
            kv.txn, kv.get = txn, get
            assert await cache_is_current(a, "H")

    run(main)


def test_modes_numeric_set_hierarchical_across_gateways(etcd_shared: Any) -> None:
    async def main() -> None:
        async with gateways(etcd_shared) as (a, b):
            # numeric: r[3] sums across gateways
            assert (await a.lock(1, "n[3]", quantity=2))[1] == rc.OK
            assert (await b.lock(2, "n[3]", quantity=2))[1] == rc.LOCK_ENQUEUED
            assert (await b.lock(3, "n[3]", quantity=1))[1] == rc.OK  # overtakes (FLoM)
            assert (await a.lock(4, "n[3]", quantity=4))[1] == rc.LOCK_IMPOSSIBLE
            a.unlock(1, "n[3]")
            assert (await b.next())[:2] == (2, rc.OK)
            status = await b.backend.status("n[3]")
            (res,) = status["resources"]
            assert sorted(h["quantity"] for h in res["holders"]) == [1, 2]
            # modes: PR shared across gateways, EX waits
            assert (await a.lock(10, "M", mode=3))[1] == rc.OK
            assert (await b.lock(11, "M", mode=3))[1] == rc.OK
            assert (await b.lock(12, "M", mode=5))[1] == rc.LOCK_ENQUEUED
            a.unlock(10, "M")
            await b.quiet()
            b.unlock(11, "M")
            assert (await b.next())[:2] == (12, rc.OK)
            # set: elements handed out round-robin, shared
            got = {(await a.lock(20, "x.y"))[2], (await b.lock(21, "x.y"))[2]}
            assert got == {"x", "y"}
            assert (await a.lock(22, "x.y", wait=False))[1] == rc.LOCK_BUSY
            # hierarchical: /h/b on A blocks /h and /h/b/c on B, not /h/c
            assert (await a.lock(30, "/h/b"))[1] == rc.OK
            assert (await b.lock(31, "/h", wait=False))[1] == rc.LOCK_BUSY
            assert (await b.lock(32, "/h/b/c"))[1] == rc.LOCK_ENQUEUED
            assert (await b.lock(33, "/h/c"))[1] == rc.OK
            a.unlock(30, "/h/b")
            assert (await b.next())[:2] == (32, rc.OK)

    run(main)


def test_fifo_policy_across_gateways(etcd_shared: Any) -> None:
    async def main() -> None:
        async with gateways(etcd_shared, policy=GrantPolicy.FIFO) as (a, b):
            assert (await a.lock(1, "F", mode=3))[1] == rc.OK
            assert (await b.lock(2, "F", mode=5))[1] == rc.LOCK_ENQUEUED
            # a compatible newcomer does not overtake under FIFO
            assert (await a.lock(3, "F", mode=3))[1] == rc.LOCK_ENQUEUED
            a.unlock(1, "F")
            assert (await b.next())[:2] == (2, rc.OK)
            b.unlock(2, "F")
            assert (await a.next())[:2] == (3, rc.OK)

    run(main)


def test_sequence_and_incubation_across_gateways(etcd_shared: Any) -> None:
    async def main() -> None:
        async with gateways(etcd_shared) as (a, b):
            assert (await a.lock(1, "_S_q[1]"))[:3] == (1, rc.OK, "1")
            assert (await b.lock(2, "_S_q[1]"))[1] == rc.LOCK_ENQUEUED
            a.unlock(1, "_S_q[1]", rollback=True)
            assert (await b.next())[:3] == (2, rc.OK, "1")  # rolled back: handed out again
            b.unlock(2, "_S_q[1]")
            await b.settled()
            assert (await a.lock(3, "_S_q[1]"))[:3] == (3, rc.OK, "2")
            # -e no: incubated on B until A creates the resource
            assert (await b.lock(4, "Inc", create=False, wait=False))[1] == rc.LOCK_CANT_WAIT
            assert (await b.lock(5, "Inc", create=False))[1] == rc.LOCK_WAIT_RESOURCE
            assert b.backend.what(5) == ("Inc", "incubating")
            assert (await a.lock(6, "Inc"))[1] == rc.OK
            assert (await b.next())[:2] == (5, rc.LOCK_ENQUEUED)
            a.unlock(6, "Inc")
            assert (await b.next())[:2] == (5, rc.OK)

    run(main)


def test_disconnect_and_gateway_close_release_locks(etcd_shared: Any) -> None:
    async def main() -> None:
        async with gateways(etcd_shared, count=3) as (a, b, c):
            assert (await a.lock(1, "D"))[1] == rc.OK
            assert (await b.lock(2, "D"))[1] == rc.LOCK_ENQUEUED
            assert (await c.lock(3, "D"))[1] == rc.LOCK_ENQUEUED
            b.backend.disconnect(2, 0.0)  # a waiter leaves
            await a.backend.close()  # the holder's gateway goes: its lease is revoked
            assert (await c.next())[:2] == (3, rc.OK)
            await b.quiet()

    run(main)


def test_lease_expiry_of_a_dead_gateway_grants_elsewhere(etcd_shared: Any) -> None:
    async def main() -> None:
        async with gateways(etcd_shared, ttl=2, drop_after=1.5) as (a, b):
            _, code, _, gen1 = await a.lock(1, "E")
            assert code == rc.OK
            assert (await b.lock(2, "E"))[1] == rc.LOCK_ENQUEUED
            assert a.backend._keeper is not None
            a.backend._keeper.cancel()  # gateway A stops renewing (as if SIGSTOPped)
            loop = asyncio.get_running_loop()
            started = loop.time()
            _, code, _, gen2 = await b.next()
            assert code == rc.OK and gen2 > gen1
            assert loop.time() - started > 1.0  # only after the lease expired

    run(main)


def test_drop_before_the_lease_can_expire(etcd_cluster: Any) -> None:
    """Gateway cut off from etcd: its holders are dropped before the TTL runs out."""

    async def main() -> None:
        async with gateways(etcd_cluster, count=1, ttl=6, drop_after=2.0) as (a,):
            assert (await a.lock(1, "X"))[1] == rc.OK
            loop = asyncio.get_running_loop()
            for i in range(3):
                etcd_cluster.stop(i)
            started = loop.time()
            try:
                conn, why = await asyncio.wait_for(a.dropped.get(), WAIT)
                assert conn == 1 and "lease" in why
                assert loop.time() - started < 6.0
            finally:
                for i in range(3):
                    etcd_cluster.cont(i)

    run(main)


@pytest.mark.parametrize("fault", ["kill", "stop"])
def test_leader_killed_during_a_run(etcd_cluster: Any, fault: str) -> None:
    """The etcd leader is SIGKILLed (or SIGSTOPped) while two gateways hand a lock back
    and forth: every request completes, no two holders, generations increase."""

    async def main() -> None:
        async with gateways(etcd_cluster, request_timeout=0.5) as (a, b):
            holders: set[object] = set()
            generations: list[int] = []

            async def worker(g: Gateway, conn_base: int, rounds: int) -> None:
                for i in range(rounds):
                    conn = conn_base + i
                    now = asyncio.get_running_loop().time()
                    assert g.backend.lock(conn, Request("K"), now) == []
                    while True:
                        _, code, _, gen = await wait_for(g, conn)
                        if code == rc.OK:
                            break
                        assert code == rc.LOCK_ENQUEUED
                    assert not holders, holders
                    holders.add(conn)
                    generations.append(gen)
                    await asyncio.sleep(0.01)
                    holders.discard(conn)
                    g.unlock(conn, "K")

            queues: dict[object, asyncio.Queue[Any]] = {}

            async def wait_for(g: Gateway, conn: object) -> Any:
                while True:
                    q = queues.setdefault(conn, asyncio.Queue())
                    if not q.empty():
                        return q.get_nowait()
                    got = await g.next()
                    queues.setdefault(got[0], asyncio.Queue()).put_nowait(got)

            stopped: list[int] = []

            async def killer() -> None:
                await asyncio.sleep(0.5)
                leader = etcd_cluster.leader()
                if fault == "kill":
                    etcd_cluster.kill(leader)
                else:
                    etcd_cluster.stop(leader)
                    stopped.append(leader)

            try:
                await asyncio.gather(worker(a, 1000, 15), worker(b, 2000, 15), killer())
            finally:
                for i in stopped:
                    etcd_cluster.cont(i)
            assert len(generations) == 30
            assert generations == sorted(generations) and len(set(generations)) == 30

    run(main)


def test_started_from_an_etcd_config(etcd_shared: Any) -> None:
    """The daemon's way: an EtcdConfig, connected with pyflom.etcd.connect."""
    from pyflom.etcd.config import EtcdConfig

    async def main() -> None:
        endpoints = tuple((h, int(p)) for h, p in (e.rsplit(":", 1) for e in etcd_shared.endpoints))
        config = EtcdConfig(endpoints, key_prefix=f"/cfg-{uuid.uuid4().hex[:8]}/")
        pushed: list[Answer] = []
        backend = EtcdBackend(
            config, policy=GrantPolicy.FLOM, gateway="g", push=pushed.extend, drop=print
        )
        assert backend.ttl == config.lease_ttl_s and 0 < backend.drop_after < backend.ttl
        await backend.start()
        try:
            assert backend.lock(1, Request("C"), 0.0) == []
            while not pushed:
                await asyncio.sleep(0.01)
            assert pushed[0].rc == rc.OK and pushed[0].generation
            assert backend.what(1) == ("C", "holding")
            backend.unlock(1, "C", False, 0.0)
            while not backend.idle:
                await asyncio.sleep(0.01)
        finally:
            await backend.close()

    run(main)


@pytest.mark.parametrize("policy", GrantPolicy.ALL)
def test_checker_no_incompatible_overlap(etcd_cluster: Any, policy: str) -> None:
    """3 gateways x 4 clients, random modes on a simple, a numeric and a hierarchical
    resource, the etcd leader SIGKILLed midway: no incompatible holders at any moment,
    conflicting grants' generations increase in grant order, every request completes."""
    import random

    from pyflom.core.hierarchical import path_of, related
    from pyflom.lockmodes import COMPATIBLE

    names = ["S", "n[3]", "/t", "/t/a", "/t/a/b", "/t/c"]

    def conflict(a: tuple[str, int, int], b: tuple[str, int, int]) -> bool:
        (na, ma, _), (nb, mb, _) = a, b
        if na == "n[3]" or nb == "n[3]":
            return False  # checked by the sum below
        if na.startswith("/") != nb.startswith("/"):
            return False
        if na.startswith("/") and not related(path_of(na), path_of(nb)):
            return False
        if not na.startswith("/") and na != nb:
            return False
        return not COMPATIBLE[ma][mb]

    async def main() -> None:
        async with gateways(etcd_cluster, count=3, policy=policy, request_timeout=0.5) as gws:
            holders: dict[object, tuple[str, int, int, int]] = {}
            violations: list[str] = []
            log: list[tuple[tuple[str, int, int], int]] = []  # grants in grant order
            grants = 0
            queues: dict[object, asyncio.Queue[Answer]] = {}
            for g in gws:
                g.backend._push = lambda answers: [queues[a.conn].put_nowait(a) for a in answers]  # type: ignore[assignment]

            async def client(g: Gateway, ident: int, rng: random.Random) -> None:
                nonlocal grants
                for i in range(12):
                    conn = (ident, i)
                    name = rng.choice(names)
                    mode = rng.randrange(6) if name != "n[3]" else 5
                    qty = rng.randint(1, 3) if name == "n[3]" else 1
                    queues[conn] = asyncio.Queue()
                    assert g.backend.lock(conn, Request(name, mode, qty), 0.0) == []
                    while True:
                        a = await asyncio.wait_for(queues[conn].get(), WAIT)
                        if a.rc == rc.OK:
                            break
                        assert a.rc == rc.LOCK_ENQUEUED, a
                    me = (name, mode, qty)
                    for other, (on, om, oq, _) in holders.items():
                        if conflict(me, (on, om, oq)):
                            violations.append(f"{conn} {me} granted beside {other} {on, om}")
                    used = qty + sum(q for (n, _, q, _) in holders.values() if n == "n[3]")
                    if name == "n[3]" and used > 3:
                        violations.append(f"n[3] over capacity: {used}")
                    log.append((me, a.generation or 0))
                    holders[conn] = (name, mode, qty, a.generation or 0)
                    grants += 1
                    await asyncio.sleep(rng.random() * 0.02)
                    del holders[conn]
                    g.unlock(conn, name, rollback=False)

            async def killer() -> None:
                await asyncio.sleep(1.0)
                etcd_cluster.kill(etcd_cluster.leader())

            rng = random.Random(7)
            await asyncio.gather(
                *(client(gws[i % 3], i, random.Random(rng.random())) for i in range(12)),
                killer(),
            )
            for i, (first, gen1) in enumerate(log):  # the fencing token's order
                for later, gen2 in log[i + 1 :]:
                    clash = conflict(first, later) or (
                        first[0] == later[0] == "n[3]" and first[2] + later[2] > 3
                    )
                    if clash and not gen1 < gen2:
                        violations.append(f"{later} got {gen2} after {first} got {gen1}")
            assert violations == []
            assert grants == 12 * 12

    run(main)


def test_timestamp_values_distinct_across_gateways(etcd_shared: Any) -> None:
    """_t_%s[1]: one value per second across both gateways; a waiter is granted when
    the next second starts (the gateway re-decides then by itself)."""

    async def main() -> None:
        async with gateways(etcd_shared) as (a, b):
            _, code, first, _ = await a.lock(1, "_t_%s[1]")
            assert code == rc.OK and first is not None
            a.unlock(1, "_t_%s[1]")
            await a.settled()
            conn, code, second, _ = await b.lock(2, "_t_%s[1]")
            if code == rc.LOCK_ENQUEUED:  # still the same second: granted at the next one
                conn, code, second, _ = await b.next()
            assert (conn, code) == (2, rc.OK)
            assert second is not None and int(second) > int(first)

    run(main)
