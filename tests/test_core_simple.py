"""The sans-IO lock core on simple resources: modes, grant order, incubator, lifetime."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyflom import rc
from pyflom.core import Answer, LockTable, ProtocolViolation, Request
from pyflom.lockmodes import COMPATIBLE, LockMode, parse_lock_mode
from pyflom.settings import GrantPolicy

M = LockMode


def req(name: str = "R", mode: int = M.EX, **kw: object) -> Request:
    return Request(name=name, mode=mode, **kw)  # type: ignore[arg-type]


def rcs(answers: list[Answer]) -> list[tuple[object, int]]:
    return [(a.conn, a.rc) for a in answers]


# The VMS matrix of reference 5.2, written out independently of the implementation.
MATRIX = """
NL Y Y Y Y Y Y
CR Y Y Y Y Y N
CW Y Y Y N N N
PR Y Y N Y N N
PW Y Y N N N N
EX Y N N N N N
"""


@pytest.mark.parametrize(
    ("held", "requested", "ok"),
    [
        (M[row.split()[0]], M(col), flag == "Y")
        for row in MATRIX.strip().splitlines()
        for col, flag in enumerate(row.split()[1:])
    ],
)
def test_compatibility_matrix(held: LockMode, requested: LockMode, ok: bool) -> None:
    assert COMPATIBLE[held][requested] is ok
    table = LockTable()
    assert table.lock(1, req(mode=held), 0.0) == [Answer(1, rc.OK, None, 1)]
    answer = table.lock(2, req(mode=requested, wait=False), 0.0)[0]
    assert answer.rc == (rc.OK if ok else rc.LOCK_BUSY)


@pytest.mark.parametrize(
    ("text", "mode"),
    [("EX", M.EX), ("ex", M.EX), ("ProtectedRead", M.PR), ("nullLOCK", M.NL), (" CW ", M.CW)],
)
def test_lock_mode_words(text: str, mode: LockMode) -> None:
    assert parse_lock_mode(text) is mode


@pytest.mark.parametrize("text", ["xnly", "PRX", "", "Exclusive2", "5"])
def test_lock_mode_refuses_partial_words(text: str) -> None:
    with pytest.raises(ValueError):
        parse_lock_mode(text)


def test_compatible_newcomer_overtakes_queue_under_flom_policy() -> None:
    table = LockTable(GrantPolicy.FLOM)
    table.lock("pr1", req(mode=M.PR), 0)
    assert rcs(table.lock("pw", req(mode=M.PW), 0)) == [("pw", rc.LOCK_ENQUEUED)]
    assert rcs(table.lock("pr2", req(mode=M.PR), 0)) == [("pr2", rc.OK)]


def test_strict_fifo_policy_keeps_arrival_order() -> None:
    table = LockTable(GrantPolicy.FIFO)
    table.lock("pr1", req(mode=M.PR), 0)
    assert rcs(table.lock("pw", req(mode=M.PW), 0)) == [("pw", rc.LOCK_ENQUEUED)]
    assert rcs(table.lock("pr2", req(mode=M.PR), 0)) == [("pr2", rc.LOCK_ENQUEUED)]
    assert rcs(table.lock("busy", req(mode=M.NL, wait=False), 0)) == [("busy", rc.LOCK_BUSY)]
    assert rcs(table.unlock("pr1", "R", False, 0)) == [("pw", rc.OK)]
    assert rcs(table.unlock("pw", "R", False, 0)) == [("pr2", rc.OK)]


def test_release_grants_every_compatible_waiter_in_queue_order() -> None:
    for policy, expected in (
        (GrantPolicy.FLOM, ["a", "b", "d"]),
        (GrantPolicy.FIFO, ["a", "b"]),
    ):
        table = LockTable(policy)
        table.lock("x", req(mode=M.EX), 0)
        for conn, mode in (("a", M.PR), ("b", M.CR), ("c", M.EX), ("d", M.PR)):
            table.lock(conn, req(mode=mode), 0)
        granted = [a.conn for a in table.unlock("x", "R", False, 0)]
        assert granted == expected, policy


def test_fifo_cancel_of_head_unblocks_followers() -> None:
    table = LockTable(GrantPolicy.FIFO)
    table.lock("h", req(mode=M.PR), 0)
    table.lock("ex", req(mode=M.EX), 0)
    table.lock("pr", req(mode=M.PR), 0)
    assert rcs(table.disconnect("ex", 0)) == [("pr", rc.OK)]


def test_holder_disconnect_releases_and_waiter_disconnect_is_forgotten() -> None:
    table = LockTable()
    table.lock(1, req(), 0)
    table.lock(2, req(), 0)
    table.lock(3, req(), 0)
    assert table.disconnect(2, 0) == []
    assert rcs(table.disconnect(1, 0)) == [(3, rc.OK)]
    assert table.involves(3) and not table.involves(2)


def test_generation_increases_with_every_grant() -> None:
    table = LockTable()
    gens = []
    for conn in range(5):
        gens.append(table.lock(conn, req(), 1000.0)[0].generation)
        table.unlock(conn, "R", False, 1000.0)
    assert all(a is not None and b is not None and a < b for a, b in itertools.pairwise(gens))


def test_invalid_name_is_refused() -> None:
    assert rcs(LockTable().lock(1, req(name="1abc"), 0)) == [(1, rc.INVALID_RESOURCE_NAME)]


def test_incubator_waits_for_the_creator() -> None:
    table = LockTable()
    assert rcs(table.lock("w", req(create=False), 0)) == [("w", rc.LOCK_WAIT_RESOURCE)]
    assert rcs(table.lock("nw", req(create=False, wait=False), 0)) == [("nw", rc.LOCK_CANT_WAIT)]
    answers = table.lock("creator", req(mode=M.PR), 0)
    # The creator is served first, then the incubated request by the new resource.
    assert rcs(answers) == [("creator", rc.OK), ("w", rc.LOCK_ENQUEUED)]
    assert rcs(table.unlock("creator", "R", False, 0)) == [("w", rc.OK)]


def test_incubated_client_leaving_is_forgotten() -> None:
    table = LockTable()
    table.lock("w", req(create=False), 0)
    assert table.disconnect("w", 0) == []
    assert table.idle


def test_unused_resource_lives_two_seconds_or_idle_lifespan_plus_one() -> None:
    table = LockTable()
    table.lock(1, req(), 0)
    table.unlock(1, "R", False, 10.0)
    table.tick(11.9)
    assert "R" in table.resources
    table.tick(12.0)
    assert table.idle
    table.lock(2, req(name="S", idle_lifespan_ms=2000), 0)
    table.unlock(2, "S", False, 0)
    assert rcs(table.lock(3, req(name="S", create=False, wait=False), 2.5)) == [(3, rc.OK)]
    table.unlock(3, "S", False, 2.5)
    # An expired resource is never handed a new request, even before the sweep.
    assert rcs(table.lock(4, req(name="S", create=False, wait=False), 6.0)) == [
        (4, rc.LOCK_CANT_WAIT)
    ]


@pytest.mark.parametrize(
    "steps",
    [
        [("unlock", 1, "R")],
        [("lock", 1, "R"), ("unlock", 1, "S")],
        [("lock", 1, "R"), ("lock", 1, "R")],
        [("lock", 1, "R"), ("lock", 2, "R"), ("unlock", 2, "R")],
    ],
)
def test_protocol_violations(steps: list[tuple[str, int, str]]) -> None:
    table = LockTable()
    *setup, (last_op, last_conn, last_name) = steps
    for _, conn, name in setup:
        table.lock(conn, req(name=name), 0)
    with pytest.raises(ProtocolViolation):
        if last_op == "lock":
            table.lock(last_conn, req(name=last_name), 0)
        else:
            table.unlock(last_conn, last_name, False, 0)


# -- property tests ------------------------------------------------------------------


class NaiveSimpleResource:
    """Reference model: FLoM's grant rules written as the plain list scan."""

    def __init__(self, fifo: bool) -> None:
        self.fifo = fifo
        self.holders: dict[int, int] = {}
        self.queue: list[tuple[int, int]] = []

    def ok(self, mode: int) -> bool:
        return all(COMPATIBLE[h][mode] for h in self.holders.values())

    def lock(self, conn: int, mode: int, wait: bool) -> list[tuple[int, int]]:
        if self.ok(mode) and not (self.fifo and self.queue):
            self.holders[conn] = mode
            return [(conn, rc.OK)]
        if wait:
            self.queue.append((conn, mode))
            return [(conn, rc.LOCK_ENQUEUED)]
        return [(conn, rc.LOCK_BUSY)]

    def scan(self) -> list[tuple[int, int]]:
        granted = []
        rest = []
        blocked = False
        for conn, mode in self.queue:
            if not blocked and self.ok(mode):
                self.holders[conn] = mode
                granted.append((conn, rc.OK))
            else:
                rest.append((conn, mode))
                blocked = self.fifo
        self.queue = rest
        return granted

    def leave(self, conn: int) -> list[tuple[int, int]]:
        if conn in self.holders:
            del self.holders[conn]
            return self.scan()
        self.queue = [(c, m) for c, m in self.queue if c != conn]
        return self.scan() if self.fifo else []


ops = st.lists(
    st.tuples(
        st.sampled_from(["lock", "unlock", "disconnect"]),
        st.integers(0, 7),
        st.sampled_from(list(M)),
        st.booleans(),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(ops=ops, fifo=st.booleans())
def test_grants_match_reference_model_and_never_conflict(
    ops: list[tuple[str, int, LockMode, bool]], fifo: bool
) -> None:
    table = LockTable(GrantPolicy.FIFO if fifo else GrantPolicy.FLOM)
    model = NaiveSimpleResource(fifo)
    holders: dict[int, int] = {}
    clock = itertools.count()
    for op, conn, mode, wait in ops:
        now = float(next(clock))
        state = "holding" if conn in model.holders else None
        if state is None and any(c == conn for c, _ in model.queue):
            state = "waiting"
        if op == "lock" and state is None:
            got = rcs(table.lock(conn, req(mode=mode, wait=wait), now))
            want = model.lock(conn, mode, wait)
        elif op == "unlock" and state == "holding":
            got = rcs(table.unlock(conn, "R", False, now))
            want = model.leave(conn)
        elif op == "disconnect":
            got = rcs(table.disconnect(conn, now))
            want = model.leave(conn) if state else []
        else:
            continue
        assert got == want
        holders = dict(model.holders)
        # Invariant: the holders are pairwise compatible.
        modes = list(holders.values())
        for i, a in enumerate(modes):
            for b in modes[i + 1 :]:
                assert COMPATIBLE[a][b]
        # Invariant: nobody waits who could be granted (FLoM) / the head cannot (FIFO).
        waiting = model.queue[:1] if fifo else model.queue
        for _, wmode in waiting:
            assert not model.ok(wmode)
