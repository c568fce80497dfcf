"""The sans-IO core at scale (issue 9, items 7-9): waiters that leave leave nothing, the
cost of an event does not grow with unrelated state, the number of live resources is
capped, and the fast paths (one-pass grants, the holders' trie, the grant-deadline heap)
give exactly what the plain reference algorithms give.

Costs are never timed: they are counted as Python function calls (deterministic)."""

from __future__ import annotations

import gc
import itertools
import sys
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyflom import rc
from pyflom.core import Answer, LockTable, Request
from pyflom.core.hierarchical import HierarchicalResource
from pyflom.core.numeric import NumericResource
from pyflom.core.resource import Grant, Resource, Verdict
from pyflom.core.sequence import SequenceResource
from pyflom.core.set import SetResource
from pyflom.core.simple import SimpleResource
from pyflom.core.table import MAX_RESOURCES
from pyflom.core.timestamp import TimestampResource
from pyflom.lockmodes import COMPATIBLE, LockMode
from pyflom.settings import GrantPolicy

M = LockMode
T0 = 1_700_000_000.0  # a whole second
POLICIES = [GrantPolicy.FLOM, GrantPolicy.FIFO]


def python_calls(action: Callable[[], object]) -> int:
    """How many Python function calls (and generator resumptions) ``action`` makes.

    The garbage collector is off while counting: a collection runs ``gc.callbacks``
    (Hypothesis registers one), which would add calls that ``action`` did not make.
    """
    count = 0

    def profile(frame: object, event: str, arg: object) -> None:
        nonlocal count
        if event == "call":
            count += 1

    collecting = gc.isenabled()
    gc.disable()
    sys.setprofile(profile)
    try:
        action()
    finally:
        sys.setprofile(None)
        if collecting:
            gc.enable()
    return count


def rcs(answers: list[Answer]) -> list[tuple[object, int]]:
    return [(a.conn, a.rc) for a in answers]


# -- item 7: a waiter that leaves leaves nothing behind ----------------------------------


@pytest.mark.parametrize("name", ["R", "/h/x", "pool[1]", "_s_q[1]", "_t_%s[1]"])
@pytest.mark.parametrize("policy", POLICIES)
def test_waiters_that_leave_leave_nothing_behind(name: str, policy: str) -> None:
    table = LockTable(policy)
    assert table.lock("holder", Request(name), T0)[0].rc == rc.OK

    def cycles(first: int, count: int) -> None:
        for conn in range(first, first + count):
            assert rcs(table.lock(conn, Request(name), T0)) == [(conn, rc.LOCK_ENQUEUED)]
            assert table.disconnect(conn, T0) == []

    cycles(0, 2000)  # the tables reach their working size
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        cycles(2000, 8000)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 16000, f"{grown} bytes kept for 8000 waiters that left"
    (resource,) = table.resources.values()
    assert not resource.waiting and not resource.queue


@pytest.mark.parametrize("policy", POLICIES)
def test_cancels_anywhere_in_the_queue_keep_arrival_order(policy: str) -> None:
    table = LockTable(policy)
    table.lock("holder", Request("R"), 0)
    for conn in "abcdef":
        table.lock(conn, Request("R", mode=M.EX if conn in "ace" else M.PR), 0)
    for conn in "bc":
        table.disconnect(conn, 0)
    # Queue now: a (EX), d (PR), e (EX), f (PR).
    assert rcs(table.unlock("holder", "R", False, 0)) == [("a", rc.OK)]
    assert rcs(table.unlock("a", "R", False, 0)) == [("d", rc.OK)] + (
        [] if policy == GrantPolicy.FIFO else [("f", rc.OK)]
    )


# -- item 9a: one pass of grants equals the plain queue scan -----------------------------


def naive_grant_waiters(self: Resource, now: float) -> list[Grant]:
    """Reference: scan the waiters in arrival order, grant the first one that can be
    granted (FIFO: only if it is the oldest), and start over until none can."""
    grants = []
    fifo = self.policy == GrantPolicy.FIFO
    while True:
        for waiter in list(self.waiting.values()):  # insertion order = arrival order
            if self.verdict(waiter.request, now) is Verdict.GRANTABLE:
                break
            if fifo:
                return grants
        else:
            return grants
        self.queue.cancel(waiter)
        del self.waiting[waiter.conn]
        grants.append(self._grant(waiter.conn, waiter.request, now))


def naive(cls: type[Resource]) -> type[Resource]:
    return type(f"Naive{cls.__name__}", (cls,), {"grant_waiters": naive_grant_waiters})


modes = st.sampled_from(list(M))
clashing = st.sampled_from([M.EX, M.EX, M.PR, M.PR, M.PR, M.CW, M.NL])  # conflicts often
KINDS: dict[str, tuple[type[Resource], str, st.SearchStrategy[Request]]] = {
    "simple": (SimpleResource, "R", st.builds(Request, st.just("R"), mode=clashing)),
    "numeric": (
        NumericResource,
        "pool[4]",
        st.builds(Request, st.just("pool[4]"), quantity=st.integers(1, 4)),
    ),
    "set": (SetResource, "a.b.c", st.builds(Request, st.just("a.b.c"))),
    "hierarchical": (
        HierarchicalResource,
        "/r",
        st.builds(Request, st.sampled_from(["/r", "/r/a", "/r/b", "/r/a/x", "/r/a/y"]), mode=modes),
    ),
    "sequence": (SequenceResource, "_s_n[2]", st.builds(Request, st.just("_s_n[2]"))),
    "transactional": (SequenceResource, "_S_t[2]", st.builds(Request, st.just("_S_t[2]"))),
    "timestamp": (TimestampResource, "_t_%s#f[2]", st.builds(Request, st.just("_t_%s#f[2]"))),
}


Round = tuple[list[Request], list[int], list[tuple[int, bool]], int]


def rounds(requests: st.SearchStrategy[Request]) -> st.SearchStrategy[list[Round]]:
    """Rounds of events: new requests, cancels, releases (with rollback), then time
    passes and the resource is ticked.  Rounds build queues that releases drain."""
    return st.lists(
        st.tuples(
            st.lists(requests, max_size=5),
            st.lists(st.integers(0, 15), max_size=2),  # which waiters give up
            st.lists(st.tuples(st.integers(0, 15), st.booleans()), max_size=3),  # releases
            st.integers(0, 150_000),  # µs until the next round
        ),
        max_size=12,
    )


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("policy", POLICIES)
def test_grants_equal_the_plain_queue_scan(kind: str, policy: str) -> None:
    cls, name, requests = KINDS[kind]

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(steps=rounds(requests))
    def check(steps: list[Round]) -> None:
        fast = cls(name=name, key=name, policy=policy)
        slow = naive(cls)(name=name, key=name, policy=policy)
        conns = itertools.count()
        now = T0
        for new, cancels, releases, step_us in steps:
            for request in new:
                conn = next(conns)
                assert fast.acquire(conn, request, now) == slow.acquire(conn, request, now)
            for i in cancels:
                if fast.waiting:
                    conn = list(fast.waiting)[i % len(fast.waiting)]
                    assert fast.cancel(conn, now) == slow.cancel(conn, now)
            for i, rollback in releases:
                if fast.holders:
                    conn = sorted(fast.holders)[i % len(fast.holders)]
                    assert fast.release(conn, rollback, now) == slow.release(conn, rollback, now)
            now += step_us / 1e6
            assert fast.tick(now) == slow.tick(now)
            assert fast.holders == slow.holders
            assert list(fast.waiting) == list(slow.waiting)
            assert len(fast.queue) == len(fast.waiting)

    check()


# -- item 9b: the holders' trie equals the plain scan of every holder --------------------

NAMES = ["/r", "/r/a", "/r/b", "/r/ab", "/r/a/x", "/r/a/y", "/r/a/x/1", "/r/b/x"]


def related_names(a: str, b: str) -> bool:
    """Written out independently: one name is the other or an ancestor of it."""
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def plain_verdict(holders: dict[int, Request], request: Request) -> Verdict:
    for held in holders.values():
        if related_names(held.name, request.name) and not COMPATIBLE[held.mode][request.mode]:
            return Verdict.NOT_NOW
    return Verdict.GRANTABLE


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.booleans(), st.integers(0, 11), st.sampled_from(NAMES), modes),
        max_size=60,
    )
)
def test_hierarchy_verdict_equals_scan_of_every_holder(
    steps: list[tuple[bool, int, str, LockMode]],
) -> None:
    resource = HierarchicalResource(name="/r", key="/r")
    holders: dict[int, Request] = {}
    for add, conn, name, mode in steps:
        if add and conn not in holders:
            request = Request(name, mode=mode, wait=False)
            verdict, grant = resource.acquire(conn, request, 0)
            assert verdict is plain_verdict(holders, request)
            if grant is not None:
                holders[conn] = request
        elif not add and conn in holders:
            del holders[conn]
            resource.release(conn, False, 0)
        for probe in NAMES:
            for probe_mode in M:
                probe_request = Request(probe, mode=probe_mode)
                assert resource.verdict(probe_request, 0) is plain_verdict(holders, probe_request)
    # Never two incompatible holders on related paths.
    held = list(holders.values())
    for i, a in enumerate(held):
        for b in held[i + 1 :]:
            assert not related_names(a.name, b.name) or COMPATIBLE[a.mode][b.mode]
    for conn in list(holders):
        resource.release(conn, False, 0)
    assert resource._root.children is None  # released nodes are pruned


def test_hierarchy_trie_follows_path_components_not_text() -> None:
    resource = HierarchicalResource(name="/r", key="/r")
    resource.acquire(1, Request("/r/ab", mode=M.EX), 0)
    assert resource.verdict(Request("/r/a", mode=M.EX), 0) is Verdict.GRANTABLE
    assert resource.verdict(Request("/r/ab/c", mode=M.EX), 0) is Verdict.NOT_NOW
    assert resource.verdict(Request("/r", mode=M.NL), 0) is Verdict.GRANTABLE
    assert resource.verdict(Request("/r", mode=M.CR), 0) is Verdict.NOT_NOW


# -- item 9: cost of a drain and of a verdict, counted in calls --------------------------


@pytest.mark.parametrize("policy", POLICIES)
def test_hierarchical_drain_costs_linear_calls(policy: str) -> None:
    def drain_calls(waiters: int) -> int:
        table = LockTable(policy)
        table.lock("holder", Request("/h", mode=M.EX), 0)
        for conn in range(waiters):
            table.lock(conn, Request(f"/h/x{conn}", mode=M.EX), 0)
        granted: list[Answer] = []
        calls = python_calls(lambda: granted.extend(table.unlock("holder", "/h", False, 0)))
        assert [a.conn for a in granted] == list(range(waiters))
        return calls

    small, big = drain_calls(400), drain_calls(1600)
    assert big <= 4.4 * small, (small, big)  # quadratic would be 16x


def test_hierarchy_verdict_cost_does_not_grow_with_holders() -> None:
    def verdict_calls(holders: int) -> int:
        resource = HierarchicalResource(name="/h", key="/h")
        for conn in range(holders):
            resource.acquire(conn, Request(f"/h/x{conn}", mode=M.PR), 0)
        request = Request("/h/y", mode=M.EX)
        return python_calls(lambda: resource.verdict(request, 0))

    assert verdict_calls(1000) == verdict_calls(10)


# -- item 8: per-event cost independent of the live resources; the cap -------------------


def test_event_cost_does_not_grow_with_live_resources() -> None:
    def pair_calls(idle: int) -> int:
        table = LockTable()
        for i in range(idle):  # idle timestamp and simple resources, kept alive
            for name in (f"_t_i{i}%s[1]", f"Idle{i}"):
                table.lock("c", Request(name, idle_lifespan_ms=10**9), T0)
                table.unlock("c", name, False, T0)
        table.lock("w1", Request("_t_w%s[1]"), T0 + 0.1)
        table.unlock("w1", "_t_w%s[1]", False, T0 + 0.1)
        table.lock("w2", Request("_t_w%s[1]"), T0 + 0.2)  # waits for the next grain

        def pair() -> None:
            table.lock("p", Request("R"), T0 + 0.3)
            table.unlock("p", "R", False, T0 + 0.3)
            assert table.next_grant_deadline() == T0 + 1  # what the daemon asks each time
            table.next_deadline()

        return python_calls(pair)

    assert pair_calls(1000) == pair_calls(10)


def test_default_limit_of_live_resources() -> None:
    assert MAX_RESOURCES == 100_000 and LockTable().max_resources == MAX_RESOURCES
    with pytest.raises(ValueError):
        LockTable(max_resources=0)


def test_limit_refuses_new_resources_only() -> None:
    table = LockTable(max_resources=3)
    for name in ("A", "/h/x", "_s_q[1]"):
        assert table.lock("c", Request(name, idle_lifespan_ms=60000), 0)[0].rc == rc.OK
        table.unlock("c", name, False, 0)
    assert rcs(table.lock(1, Request("D"), 1)) == [(1, rc.CONTAINER_FULL)]
    assert not table.involves(1) and "D" not in table.resources
    # Resources that exist are still served, whatever their path.
    assert rcs(table.lock(2, Request("A"), 1)) == [(2, rc.OK)]
    assert rcs(table.lock(3, Request("/h/y/z"), 1)) == [(3, rc.OK)]
    # A request that does not create waits in the incubator as before.
    assert rcs(table.lock(4, Request("E", create=False), 1)) == [(4, rc.LOCK_WAIT_RESOURCE)]
    # A bad timestamp format is still reported as such.
    assert rcs(table.lock(5, Request("_t_%Y[1]"), 1)) == [(5, rc.INVALID_TIMESTAMP_FORMAT)]
    # Resources past their expiry make room, even before the next tick.
    assert rcs(table.lock(6, Request("D"), 100)) == [(6, rc.OK)]
    assert set(table.resources) == {"A", "/h", "D"}
    assert rcs(table.lock(7, Request("F"), 100)) == [(7, rc.CONTAINER_FULL)]


# -- item 8: the grant-deadline heap -----------------------------------------------------


def test_timestamp_waiter_granted_at_its_grain_among_many_resources() -> None:
    table = LockTable()
    for i in range(3000):
        for name in (f"_t_i{i}%s#fff[1]", f"Idle{i}"):
            table.lock("c", Request(name, idle_lifespan_ms=10**9), T0)
            table.unlock("c", name, False, T0)
    second, tenth = "_t_%s[1]", "_t_%s#f[1]"
    for name, at in ((second, 0.01), (tenth, 0.03)):
        assert table.lock("x", Request(name), T0 + at)[0].rc == rc.OK
        table.unlock("x", name, False, T0 + at)
    assert rcs(table.lock("b", Request(second), T0 + 0.035)) == [("b", rc.LOCK_ENQUEUED)]
    assert rcs(table.lock("d", Request(tenth), T0 + 0.04)) == [("d", rc.LOCK_ENQUEUED)]
    due = table.next_grant_deadline()
    assert due is not None and abs(due - (T0 + 0.1)) < 1e-6 and table.next_deadline() == due
    assert table.tick(due - 1e-6) == []
    assert [(a.conn, a.element) for a in table.tick(due)] == [("d", f"{int(T0)}.1")]
    assert table.next_grant_deadline() == T0 + 1
    assert table.tick(T0 + 0.999) == []
    assert [(a.conn, a.element) for a in table.tick(T0 + 1)] == [("b", str(int(T0) + 1))]
    assert table.next_grant_deadline() is None


TIMED = ["_t_%s[1]", "_t_%s#f[2]", "_t_x%s#ff[1]", "R"]


@dataclass
class Clock:
    now_us: int = int(T0 * 1e6)
    holding: set[object] = field(default_factory=set)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["lock", "lock", "unlock", "disconnect"]),
            st.integers(0, 7),
            st.sampled_from(TIMED),
            st.sampled_from([0, 500, 10**6]),  # idle lifespan, ms
            st.integers(0, 400_000),  # µs since the previous event
        ),
        max_size=80,
    ),
    policy=st.sampled_from(POLICIES),
)
def test_grant_deadlines_equal_the_scan_of_every_resource(
    steps: list[tuple[str, int, str, int, int]], policy: str
) -> None:
    table = LockTable(policy)
    clock = Clock()
    names: dict[int, str] = {}

    def scanned() -> float | None:
        dues = [d for r in table.resources.values() if (d := r.next_deadline()) is not None]
        return min(dues, default=None)

    def absorb(answers: list[Answer]) -> None:
        clock.holding.update(a.conn for a in answers if a.rc == rc.OK)

    for op, conn, name, lifespan, step_us in steps:
        clock.now_us += step_us
        now = clock.now_us / 1e6
        while (due := table.next_grant_deadline()) is not None and due <= now:
            assert due == scanned()
            absorb(table.tick(due))
            assert all(
                d is None or d > due for d in map(Resource.next_deadline, table.resources.values())
            )
        assert table.next_grant_deadline() == scanned()
        if op == "lock" and not table.involves(conn):
            names[conn] = name
            absorb(table.lock(conn, Request(name, idle_lifespan_ms=lifespan), now))
        elif op == "unlock" and conn in clock.holding:
            clock.holding.discard(conn)
            absorb(table.unlock(conn, names[conn], False, now))
        elif op == "disconnect":
            clock.holding.discard(conn)
            absorb(table.disconnect(conn, now))
        assert table.next_grant_deadline() == scanned()


def test_stale_deadlines_do_not_pile_up() -> None:
    table = LockTable()
    hourly = "_t_%H[1]"
    table.lock("h", Request(hourly), T0)
    table.unlock("h", hourly, False, T0)
    assert rcs(table.lock("w", Request(hourly), T0)) == [("w", rc.LOCK_ENQUEUED)]
    hour = table.next_grant_deadline()
    assert hour is not None and hour > T0 + 1
    table.disconnect("w", T0)
    assert table.next_grant_deadline() is None  # the entry left in the heap is stale
    table.lock("a", Request("_t_%s[1]"), T0)
    table.unlock("a", "_t_%s[1]", False, T0)
    table.lock("b", Request("_t_%s[1]"), T0)  # the earliest deadline: T0 + 1
    for _ in range(5000):  # a waiter for the next hour comes and goes, again and again
        assert rcs(table.lock("w", Request(hourly), T0)) == [("w", rc.LOCK_ENQUEUED)]
        assert table.next_grant_deadline() == T0 + 1
        table.disconnect("w", T0)
        assert table.next_grant_deadline() == T0 + 1
    assert len(table._grant_heap) < 100


def test_table_says_when_a_deadline_was_added() -> None:
    # The daemon re-plans its timer only then: a missed flag is a missed expiry or grant.
    table = LockTable()
    table.lock("a", Request("R"), T0)
    assert not table.deadline_added  # in use: no deadline
    table.unlock("a", "R", False, T0)
    assert table.deadline_added  # unused: it expires
    table.deadline_added = False
    table.lock("w1", Request("_t_w%s[1]"), T0 + 0.1)
    table.unlock("w1", "_t_w%s[1]", False, T0 + 0.1)
    table.deadline_added = False
    table.lock("w2", Request("_t_w%s[1]"), T0 + 0.2)  # waits for the next grain: a date
    assert table.deadline_added
