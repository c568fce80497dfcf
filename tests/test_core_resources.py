"""The sans-IO core on numeric, set, hierarchical and sequence resources: the reference's
worked examples, then hypothesis runs of random lock/unlock/disconnect interleavings
checking each type's invariant after every step."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyflom import rc
from pyflom.core import Answer, LockTable, Request
from pyflom.core.hierarchical import path_of, related
from pyflom.lockmodes import COMPATIBLE, LockMode
from pyflom.settings import GrantPolicy


def elements(answers: list[Answer]) -> list[str | None]:
    return [a.element for a in answers]


# -- worked examples of the reference ---------------------------------------------------


def test_numeric_pool() -> None:
    t = LockTable()
    assert t.lock(1, Request("foo[2]"), 0)[0].rc == rc.OK
    assert t.lock(2, Request("foo[2]"), 0)[0].rc == rc.OK
    assert t.lock(3, Request("foo[2]", wait=False), 0)[0].rc == rc.LOCK_BUSY
    assert t.lock(4, Request("foo[2]", quantity=2), 0)[0].rc == rc.LOCK_ENQUEUED
    assert t.lock(5, Request("foo[2]", quantity=3), 0)[0].rc == rc.LOCK_IMPOSSIBLE
    assert t.lock(6, Request("nil[0]"), 0)[0].rc == rc.LOCK_IMPOSSIBLE
    assert t.unlock(1, "foo[2]", False, 0) == []  # one unit free: q=2 still waits
    assert [a.conn for a in t.unlock(2, "foo[2]", False, 0)] == [4]


def test_numeric_small_request_overtakes_big_one() -> None:
    t = LockTable()
    t.lock(1, Request("p[3]", quantity=2), 0)
    assert t.lock(2, Request("p[3]", quantity=3), 0)[0].rc == rc.LOCK_ENQUEUED
    assert t.lock(3, Request("p[3]", quantity=1), 0)[0].rc == rc.OK


def test_set_rotation_and_free_element_search() -> None:
    t = LockTable()
    assert elements([t.lock(c, Request("red.green.blue"), 0)[0] for c in (1, 2, 3)]) == [
        "red",
        "green",
        "blue",
    ]
    assert t.lock(4, Request("red.green.blue", wait=False), 0)[0].rc == rc.LOCK_BUSY
    t.unlock(2, "red.green.blue", False, 0)
    assert t.lock(5, Request("red.green.blue"), 0)[0].element == "green"  # use case 13


def test_set_sequential_rotation() -> None:
    t = LockTable()
    got = []
    for conn in range(4):
        got.append(t.lock(conn, Request("red.green.blue"), 0)[0].element)
        t.unlock(conn, "red.green.blue", False, 0)
    assert got == ["red", "green", "blue", "red"]


def test_hierarchy_conflicts() -> None:
    t = LockTable()
    t.lock(1, Request("/a/b", mode=LockMode.EX), 0)
    for name, ok in (("/a/b", False), ("/a", False), ("/a/b/c", False), ("/a/c", True)):
        got = t.lock(name, Request(name, mode=LockMode.EX, wait=False), 0)[0].rc
        assert got == (rc.OK if ok else rc.LOCK_BUSY), name
    assert t.lock("b", Request("/b", mode=LockMode.EX, wait=False), 0)[0].rc == rc.OK
    assert t.lock("bb", Request("/a/bb", mode=LockMode.EX, wait=False), 0)[0].rc == rc.OK


def test_hierarchy_modes() -> None:
    t = LockTable()
    t.lock(1, Request("/a/b", mode=LockMode.PR), 0)
    assert t.lock(2, Request("/a", mode=LockMode.PR, wait=False), 0)[0].rc == rc.OK
    assert t.lock(3, Request("/a/b/c", mode=LockMode.EX, wait=False), 0)[0].rc == rc.LOCK_BUSY


def test_hierarchy_unlock_with_other_path_of_same_first_level() -> None:
    t = LockTable()
    t.lock(1, Request("/a/b", mode=LockMode.EX), 0)
    assert t.unlock(1, "/a/zzz", False, 0) == []  # FLoM checks the first level only
    assert t.lock(2, Request("/a/b", wait=False), 0)[0].rc == rc.OK


@pytest.mark.parametrize(
    ("name", "statuses", "values"),
    [
        ("_S_seqb[1]", [0, 1, 0, 3, 4, 0, 0], ["1", "2", "2", "3", "3", "3", "4"]),
        ("_s_seqb[1]", [0, 1, 0, 3, 4], ["1", "2", "3", "4", "5"]),
    ],
)
def test_sequence_values(name: str, statuses: list[int], values: list[str]) -> None:
    t = LockTable()
    got = []
    for conn, status in enumerate(statuses):
        got.append(t.lock(conn, Request(name), 0)[0].element)
        t.unlock(conn, name, status != 0, 0)
    assert got == values


def test_transactional_value_of_a_vanished_client_is_reused() -> None:
    t = LockTable()
    t.lock(1, Request("_S_x[1]"), 0)
    t.unlock(1, "_S_x[1]", False, 0)
    assert t.lock(2, Request("_S_x[1]"), 0)[0].element == "2"
    t.disconnect(2, 0)
    assert t.lock(3, Request("_S_x[1]"), 0)[0].element == "2"


def test_sequence_zero_slots_is_busy_forever() -> None:
    assert LockTable().lock(1, Request("_s_x[0]", wait=False), 0)[0].rc == rc.LOCK_BUSY


def test_generations_keep_rising_across_resource_lifetimes() -> None:
    t = LockTable()
    first = t.lock(1, Request("R"), 0)[0].generation
    t.unlock(1, "R", False, 0)
    t.tick(100.0)  # the resource expires
    assert not t.resources
    second = t.lock(2, Request("R"), 100.0)[0].generation
    assert first is not None and second is not None and second > first


# -- property tests ---------------------------------------------------------------------


@dataclass
class Harness:
    """Drives a lock table and mirrors who holds what, from the answers alone."""

    table: LockTable
    holding: dict[int, Answer] = field(default_factory=dict)
    waiting: set[int] = field(default_factory=set)
    requests: dict[int, Request] = field(default_factory=dict)
    issued: list[tuple[str, str]] = field(default_factory=list)  # (resource, element)
    last_generation: dict[str, int] = field(default_factory=dict)
    now: float = 0.0

    def absorb(self, answers: list[Answer]) -> None:
        for answer in answers:
            if answer.rc == rc.OK:
                self.waiting.discard(answer.conn)  # type: ignore[arg-type]
                self.holding[answer.conn] = answer  # type: ignore[index]
                request = self.requests[answer.conn]  # type: ignore[index]
                if answer.element is not None:
                    self.issued.append((request.name, answer.element))
                key = request.name.split("/")[:2]
                name = "/".join(key)
                assert answer.generation is not None
                assert answer.generation > self.last_generation.get(name, 0)
                self.last_generation[name] = answer.generation
            elif answer.rc == rc.LOCK_ENQUEUED:
                self.waiting.add(answer.conn)  # type: ignore[arg-type]

    def step(self, op: str, conn: int, request: Request, rollback: bool) -> None:
        self.now += 0.1
        if op == "lock" and conn not in self.holding and conn not in self.waiting:
            self.requests[conn] = request
            self.absorb(self.table.lock(conn, request, self.now))
        elif op == "unlock" and conn in self.holding:
            del self.holding[conn]
            name = self.requests[conn].name
            self.absorb(self.table.unlock(conn, name, rollback, self.now))
        elif op == "disconnect":
            self.holding.pop(conn, None)
            self.waiting.discard(conn)
            self.absorb(self.table.disconnect(conn, self.now))


def ops(requests: st.SearchStrategy[Request]) -> st.SearchStrategy[list[tuple[object, ...]]]:
    return st.lists(
        st.tuples(
            st.sampled_from(["lock", "lock", "unlock", "disconnect"]),
            st.integers(0, 9),
            requests,
            st.booleans(),
        ),
        max_size=60,
    )


policies = st.sampled_from([GrantPolicy.FLOM, GrantPolicy.FIFO])


@settings(max_examples=200, deadline=None)
@given(
    steps=ops(
        st.builds(Request, st.just("pool[4]"), quantity=st.integers(1, 5), wait=st.booleans())
    ),
    policy=policies,
)
def test_numeric_never_over_allocated(steps: list[tuple[object, ...]], policy: str) -> None:
    h = Harness(LockTable(policy))
    for step in steps:
        h.step(*step)  # type: ignore[arg-type]
        used = sum(h.requests[c].quantity for c in h.holding)
        assert used <= 4
        if policy == GrantPolicy.FLOM:  # nobody waits who would fit
            assert all(h.requests[c].quantity > 4 - used for c in h.waiting)


@settings(max_examples=200, deadline=None)
@given(
    steps=ops(st.builds(Request, st.sampled_from(["a.b.c", "a.a.b"]), wait=st.booleans())),
    policy=policies,
)
def test_set_elements_never_double_assigned(steps: list[tuple[object, ...]], policy: str) -> None:
    h = Harness(LockTable(policy))
    for step in steps:
        h.step(*step)  # type: ignore[arg-type]
        for name in ("a.b.c", "a.a.b"):
            held = Counter(a.element for c, a in h.holding.items() if h.requests[c].name == name)
            available = Counter(name.split("."))
            assert all(held[e] <= available[e] for e in held)


paths = st.sampled_from(["/r", "/r/a", "/r/b", "/r/a/x", "/r/a/y", "/q"])


@settings(max_examples=300, deadline=None)
@given(
    steps=ops(st.builds(Request, paths, mode=st.sampled_from(list(LockMode)), wait=st.booleans())),
    policy=policies,
)
def test_hierarchy_conflicts_respected(steps: list[tuple[object, ...]], policy: str) -> None:
    h = Harness(LockTable(policy))
    for step in steps:
        h.step(*step)  # type: ignore[arg-type]
        held = [h.requests[c] for c in h.holding]
        for i, a in enumerate(held):
            for b in held[i + 1 :]:
                if related(path_of(a.name), path_of(b.name)):
                    assert COMPATIBLE[a.mode][b.mode], (a, b)
        if policy == GrantPolicy.FLOM:  # nobody waits who could be granted
            for c in h.waiting:
                w = h.requests[c]
                assert any(
                    related(path_of(w.name), path_of(x.name)) and not COMPATIBLE[x.mode][w.mode]
                    for x in held
                )


@settings(max_examples=300, deadline=None)
@given(
    steps=ops(
        st.builds(
            Request,
            st.sampled_from(["_S_t[2]", "_s_n[2]"]),
            wait=st.booleans(),
            idle_lifespan_ms=st.just(10**9),  # state must survive the whole run
        )
    ),
    policy=policies,
)
def test_sequence_values_never_duplicated(steps: list[tuple[object, ...]], policy: str) -> None:
    h = Harness(LockTable(policy))
    for step in steps:
        h.step(*step)  # type: ignore[arg-type]
        for name in ("_S_t[2]", "_s_n[2]"):
            live = [a.element for c, a in h.holding.items() if h.requests[c].name == name]
            assert len(live) == len(set(live)) <= 2
    # A non-transactional sequence never hands out a value twice, ever; a transactional
    # one only hands out again values that were given back.
    non_tx = [e for name, e in h.issued if name == "_s_n[2]"]
    assert len(non_tx) == len(set(non_tx))
    assert non_tx == [str(i) for i in range(1, len(non_tx) + 1)]
