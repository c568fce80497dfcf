"""The etcd backend's sans-IO decisions give exactly the memory lock table's answers."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from pyflom import rc
from pyflom.core.durable import DurableState
from pyflom.core.resource import Request
from pyflom.core.table import LockTable
from pyflom.etcd import model
from pyflom.settings import GrantPolicy

NAMES = ["R", "n[3]", "a.b.c", "/a", "/a/b", "/a/b/c", "/a/c", "_S_q[2]", "_s_p[1]", "_t_%s[1]"]


@dataclass
class Store:
    """A stand-in for etcd: one snapshot per resource, a cluster-wide revision."""

    policy: str
    revision: int = 1
    snapshots: dict[str, model.Snapshot] = field(default_factory=dict)
    rid_of: dict[int, str] = field(default_factory=dict)
    nonce: int = 0
    generations: list[int] = field(default_factory=list)

    def run(self, key: str, event: model.Event, now: float) -> list[tuple[int, int, str | None]]:
        snap = self.snapshots.get(key) or model.Snapshot(key)
        outcome = model.decide(snap, event, self.policy, now)
        if outcome.writes:
            self.revision += 1
            self.snapshots[key] = model.apply(snap, outcome, self.revision)
        answers = []
        for entry, code in outcome.answers:
            conn = int(entry.conn)
            answers.append((conn, code, entry.element if code == rc.OK else None))
            if code == rc.OK:
                self.generations.append(self.revision)
            if entry.status == model.REFUSED:  # its owner answers and deletes it
                self.rid_of.pop(conn)
                self.run(key, model.Leave(entry.rid), now)
            elif code not in (rc.OK, rc.LOCK_ENQUEUED, rc.LOCK_WAIT_RESOURCE):
                self.rid_of.pop(conn, None)
        return answers

    def lock(self, conn: int, request: Request, now: float) -> list[tuple[int, int, str | None]]:
        kind_request = model.normalize(request)
        assert kind_request is not None
        self.nonce += 1
        rid = f"g.{conn}.{self.nonce}"
        self.rid_of[conn] = rid
        entry = model.Entry(rid, "g", str(conn), kind_request[1], "new", since=now)
        key = model.resource_key(request.name)
        assert key is not None
        return self.run(key, model.Lock(entry), now)

    def key_of(self, conn: int) -> str:
        rid = self.rid_of[conn]
        for key, snap in self.snapshots.items():
            if snap.find(rid) is not None:
                return key
        raise AssertionError(rid)

    def unlock(self, conn: int, rollback: bool, now: float) -> list[tuple[int, int, str | None]]:
        key = self.key_of(conn)
        return self.run(key, model.Unlock(self.rid_of.pop(conn), rollback), now)

    def leave(self, conn: int, now: float) -> list[tuple[int, int, str | None]]:
        key = self.key_of(conn)
        return self.run(key, model.Leave(self.rid_of.pop(conn)), now)


def plain(answers: list) -> list[tuple[int, int, str | None]]:
    return [(a.conn, a.rc, a.element) for a in answers]


operation = st.tuples(
    st.integers(0, 5),  # connection
    st.sampled_from(NAMES),
    st.integers(0, 5),  # mode
    st.integers(1, 4),  # quantity
    st.booleans(),  # wait
    st.sampled_from([True, True, True, False]),  # create
    st.sampled_from(["unlock", "rollback", "leave"]),
    st.sampled_from([0.01, 0.01, 0.01, 0.6, 3.0]),  # time passing
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(GrantPolicy.ALL), st.lists(operation, max_size=60))
def test_same_answers_as_the_memory_table(policy: str, ops: list) -> None:
    # Sequence values outlive the resource in etcd, as with a daemon's state file.
    table = LockTable(policy=policy, durable=DurableState())
    store = Store(policy)
    now = 1000.0
    for conn, name, mode, qty, wait, create, end, step in ops:
        now += step
        ticked = sorted(plain(table.tick(now)))  # time-based grants
        reconciled = []
        for key in list(store.snapshots):
            reconciled += store.run(key, model.Reconcile(), now)
        assert sorted(reconciled) == ticked
        state = table.what(conn)
        if state is None:
            request = Request(name, mode, qty, wait, create)
            expected = plain(table.lock(conn, request, now))
            got = store.lock(conn, request, now)
        elif state[1] == "holding" and end != "leave":
            held = next(n for n in NAMES if model.resource_key(n) == state[0])
            expected = plain(table.unlock(conn, held, end == "rollback", now))
            got = store.unlock(conn, end == "rollback", now)
        else:
            expected = plain(table.disconnect(conn, now))
            got = store.leave(conn, now)
        assert got == expected, (policy, conn, name, state)
        assert store.generations == sorted(store.generations)  # one txn: one revision


def test_hierarchical_conflicts_in_one_snapshot() -> None:
    """/a/b held EX blocks /a and /a/b/c, not /a/c: one prefix per first level."""
    store = Store(GrantPolicy.FLOM)
    assert store.lock(1, Request("/a/b", 5), 0.0) == [(1, rc.OK, None)]
    assert store.lock(2, Request("/a", 5, wait=False), 0.0) == [(2, rc.LOCK_BUSY, None)]
    assert store.lock(3, Request("/a/b/c", 3), 0.0) == [(3, rc.LOCK_ENQUEUED, None)]
    assert store.lock(4, Request("/a/c", 5), 0.0) == [(4, rc.OK, None)]
    assert store.unlock(1, False, 0.1) == [(3, rc.OK, None)]
    assert model.resource_key("/a/b/c") == model.resource_key("/a") == "/a"


def test_sequence_value_of_a_vanished_holder_is_handed_out_again() -> None:
    """A holder whose key vanished (its gateway's lease expired) rolls back its _S_ value."""
    store = Store(GrantPolicy.FLOM)
    assert store.lock(1, Request("_S_q[2]"), 0.0) == [(1, rc.OK, "1")]
    snap = store.snapshots["_S_q[2]"]
    snap.entries.clear()  # the lease expired: the key is gone, nobody unlocked
    assert store.lock(2, Request("_S_q[2]"), 0.1) == [(2, rc.OK, "1")]
    assert store.lock(3, Request("_s_p[1]"), 0.1) == [(3, rc.OK, "1")]
    store.snapshots["_s_p[1]"].entries.clear()
    assert store.lock(4, Request("_s_p[1]"), 0.2) == [(4, rc.OK, "2")]


def test_reconcile_grants_after_vanished_holder_and_writes_nothing_otherwise() -> None:
    store = Store(GrantPolicy.FLOM)
    store.lock(1, Request("R"), 0.0)
    store.lock(2, Request("R"), 0.0)
    snap = store.snapshots["R"]
    assert not model.decide(snap, model.Reconcile(), GrantPolicy.FLOM, 0.1).writes
    snap.entries.pop(0)  # holder 1's lease expired
    assert store.run("R", model.Reconcile(), 0.2) == [(2, rc.OK, None)]
