"""Sans-IO decisions of the etcd backend: one resource's snapshot + one event -> writes.

No IO and no clock.  The etcd backend reads every key of one resource (a
:class:`Snapshot`), asks :func:`decide` what an event (lock, unlock, disconnect, or
"grant what has become grantable") does to it, and writes the :class:`Outcome` in one
transaction guarded by "the resource's state key was not modified since the snapshot".
The decision itself is the memory lock table's: a fresh core :class:`Resource` is built,
the granted requests are replayed into it as holders and the waiting ones into its queue
in create-revision order, and the event is handed to it (``acquire``, ``release``,
``cancel``, ``grant_waiters``).  So the answers are exactly those of ``LockTable``.

Key layout (see :mod:`pyflom.etcd.backend`): one etcd prefix per *locker*, the memory
table's unit: a simple, numeric, set, sequence or timestamp name, or the first level of
a hierarchical name (``/a`` for ``/a``, ``/a/b``, ``/a/x/y``), so that one snapshot holds
every node that may conflict with a hierarchical request.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field, replace

from .. import rc
from ..core.durable import SequenceState
from ..core.resource import Holding, Request, Resource, ResourceInitError, Verdict, Waiter
from ..core.sequence import SequenceResource
from ..core.set import SetResource
from ..core.table import _RESOURCE_CLASSES, IDLE_GRACE_MS
from ..core.timestamp import TimestampResource
from ..lockmodes import LockMode
from ..names import ResourceType, locker_key, resource_type, uses_lock_mode

HELD = "held"
WAITING = "waiting"
INCUBATING = "incubating"
REFUSED = "refused"  # an incubated request refused when its resource was created


@dataclass(slots=True)
class Entry:
    """One lock request, stored as one etcd key under its resource's prefix.

    ``rid`` (gateway + connection + nonce) names the key; ``revision`` is its create
    revision, its place in the queue; ``generation`` is the revision of the transaction
    that granted it (0 while not granted).  ``lease`` is the owner gateway's lease.
    """

    rid: str
    gateway: str
    conn: str
    request: Request
    status: str
    revision: int = 0
    element: str | None = None
    generation: int = 0
    since: float = 0.0
    rc: int = rc.OK  # the answer of a REFUSED request
    lease: int = 0

    def encode(self) -> bytes:
        """The key's value (what, whose, and its state)."""
        r = self.request
        return json.dumps(
            [
                self.gateway,
                self.conn,
                r.name,
                r.mode,
                r.quantity,
                r.wait,
                r.create,
                r.idle_lifespan_ms,
                self.status,
                self.element,
                self.since,
                self.rc,
            ],
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, rid: str, value: bytes, revision: int, mod_revision: int, lease: int) -> Entry:
        """The entry stored in ``value`` (``mod_revision`` is the generation if held)."""
        gw, conn, name, mode, qty, wait, create, life, status, element, since, code = json.loads(
            value
        )
        request = Request(name, mode, qty, wait, create, life)
        generation = mod_revision if status == HELD else 0
        return cls(
            rid, gw, conn, request, status, revision, element, generation, since, code, lease
        )


@dataclass(slots=True)
class State:
    """What a resource keeps beside its requests (its etcd state key, no lease).

    ``until``: when an unused resource stops existing (idle lifespan + 1 s, as
    ``LockTable``); ``index``: a set's rotating index; ``counter``/``returned``/``out``:
    a sequence's last new value, its rolled-back values and the value each holder has;
    ``last_grain``/``last_offset``: a timestamp resource's last value.  Sequence values
    outlive the resource (never handed out twice, as with a daemon's state file).
    """

    until: float = 0.0
    lifespan_ms: int = 0
    index: int = 0
    counter: int = 0
    returned: list[int] = field(default_factory=list)
    out: dict[str, int] = field(default_factory=dict)
    last_grain: int | None = None
    last_offset: int = 0

    def encode(self) -> bytes:
        return json.dumps(
            [
                self.until,
                self.lifespan_ms,
                self.index,
                self.counter,
                self.returned,
                self.out,
                self.last_grain,
                self.last_offset,
            ],
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, value: bytes) -> State:
        until, life, index, counter, returned, out, grain, offset = json.loads(value)
        return cls(until, life, index, counter, list(returned), dict(out), grain, offset)


@dataclass(slots=True)
class Snapshot:
    """Every key of one resource at one revision: its requests, oldest first, and its
    state (``state_revision``: the state key's mod revision, 0 if it does not exist;
    ``uid``: its create revision, the resource's number in status; ``at``: the revision
    it was read at)."""

    key: str
    entries: list[Entry] = field(default_factory=list)
    state: State = field(default_factory=State)
    state_revision: int = 0
    uid: int = 0
    at: int = 0

    def find(self, rid: str) -> Entry | None:
        for entry in self.entries:
            if entry.rid == rid:
                return entry
        return None


# -- events -----------------------------------------------------------------------------
@dataclass(slots=True)
class Lock:
    """A new request ``entry`` (status not yet decided)."""

    entry: Entry


@dataclass(slots=True)
class Unlock:
    """The holder ``rid`` unlocks (``rollback``: its command failed)."""

    rid: str
    rollback: bool


@dataclass(slots=True)
class Leave:
    """The connection of ``rid`` went away, whatever it held, waited or incubated."""

    rid: str


@dataclass(slots=True)
class Reconcile:
    """Nothing asked: grant what has become grantable (keys that vanished with a lease,
    time-based grants).  Writes nothing when nothing changes."""


Event = Lock | Unlock | Leave | Reconcile


@dataclass(slots=True)
class Outcome:
    """What an event does: ``answers`` (entry, rc) in the order the memory table gives
    them, the entries to write (``put``) and delete, and the new state (None: unchanged,
    not written; it is always written with a delete, which the guard of a concurrent
    decision could not see otherwise).  A granted entry's generation is the revision of
    the transaction that writes it, known only once it is written."""

    answers: list[tuple[Entry, int]] = field(default_factory=list)
    put: list[Entry] = field(default_factory=list)
    delete: list[Entry] = field(default_factory=list)
    state: State | None = None

    @property
    def writes(self) -> bool:
        return bool(self.put or self.delete) or self.state is not None


def normalize(request: Request) -> tuple[str, Request] | None:
    """(resource kind, request as the lock table sees it), or None for a bad name."""
    kind = resource_type(request.name)
    if kind is None:
        return None
    if not uses_lock_mode(kind) and request.mode != LockMode.EX:
        request = replace(request, mode=LockMode.EX)
    if kind != ResourceType.NUMERIC and request.quantity != 1:
        request = replace(request, quantity=1)
    return kind, request


def resource_key(name: str) -> str | None:
    """The locker key of a resource name (hierarchical: its first level), or None."""
    kind = resource_type(name)
    return None if kind is None else locker_key(name, kind)


def build(key: str, policy: str) -> Resource:
    """A fresh, empty core resource for locker ``key`` (may raise ResourceInitError)."""
    kind = resource_type(key)
    if kind is None:
        raise ResourceInitError(f"'{key}' is not a resource name", rc.INVALID_RESOURCE_NAME)
    return _RESOURCE_CLASSES[kind](name=key, key=key, policy=policy, kind=kind)


def init_error(request: Request) -> int | None:
    """The rc of a valid name whose resource cannot be built (a bad timestamp format)."""
    key = resource_key(request.name)
    if key is None:
        return rc.INVALID_RESOURCE_NAME
    try:
        build(key, "flom")
    except ResourceInitError as exc:
        return exc.rc
    return None


def alive(snapshot: Snapshot, now: float) -> bool:
    """Whether the resource exists (``-e no`` requests are incubated while it does not):
    someone holds or waits for it, or it was last used less than its idle time ago."""
    return any(e.status in (HELD, WAITING) for e in snapshot.entries) or (
        snapshot.state.until > now
    )


def _replay(snapshot: Snapshot, policy: str, now: float) -> tuple[Resource, State]:
    """A core resource holding and queueing what ``snapshot`` says, and the state the
    decision starts from (a fresh one, sequences aside, if the resource had expired)."""
    resource = build(snapshot.key, policy)
    old = snapshot.state
    if alive(snapshot, now):
        state = State(
            old.until,
            old.lifespan_ms,
            old.index,
            old.counter,
            list(old.returned),
            dict(old.out),
            old.last_grain,
            old.last_offset,
        )
    else:  # a new locker: only the sequence's values outlive the old one
        state = State(counter=old.counter, returned=list(old.returned), out=dict(old.out))
    held = [e for e in snapshot.entries if e.status == HELD]
    if isinstance(resource, SequenceResource):
        seq = SequenceState(state.counter, deque(state.returned))
        present = {e.rid for e in held}
        for rid, value in state.out.items():
            if rid not in present and resource.transactional:
                seq.returned.append(value)  # its holder vanished: a rollback
        resource.state = seq
    if isinstance(resource, SetResource):
        resource.index = state.index
    if isinstance(resource, TimestampResource):
        resource.last_grain = state.last_grain
        resource._last_offset = state.last_offset
    for e in held:
        if isinstance(resource, SetResource):
            for slot, element in enumerate(resource.elements):
                if element == e.element and not resource.taken[slot]:
                    resource.taken[slot] = True
                    break
        elif not isinstance(resource, SequenceResource | TimestampResource):
            resource.take(e.request, now)
        resource.holders[e.rid] = Holding(e.request, e.element, e.generation, e.since)
    last = 0
    for e in snapshot.entries:
        last = max(last, e.revision)
        if e.status == WAITING:
            waiter = Waiter(e.rid, e.request, e.revision, since=e.since)
            resource.waiting[e.rid] = waiter
            resource.queue.push(waiter, resource.class_key(e.request))
    resource._seq = last
    return resource, state


def _final_state(resource: Resource, state: State, now: float, lifespan_ms: int) -> State:
    """``state`` updated from what ``resource`` now keeps."""
    if isinstance(resource, SetResource):
        state.index = resource.index
    if isinstance(resource, SequenceResource):
        state.counter = resource.state.counter
        state.returned = list(resource.state.returned)
        state.out = {str(rid): int(h.element or 0) for rid, h in resource.holders.items()}
    if isinstance(resource, TimestampResource):
        state.last_grain = resource.last_grain
        state.last_offset = resource._last_offset
    if not resource.in_use:  # its idle clock (re)starts, as LockTable._touch
        state.until = now + ((lifespan_ms or IDLE_GRACE_MS) + IDLE_GRACE_MS) / 1000.0
    return state


def decide(snapshot: Snapshot, event: Event, policy: str, now: float) -> Outcome:
    """What ``event`` does to the resource of ``snapshot`` under grant ``policy``.

    The same answers as ``LockTable`` for the same history.  An event whose request is
    no longer (or already) in the snapshot is a retried one whose first try committed:
    the caller looks at the snapshot instead.
    """
    was_alive = alive(snapshot, now)
    resource, state = _replay(snapshot, policy, now)
    by_rid = {e.rid: e for e in snapshot.entries}
    out = Outcome()
    lifespan = state.lifespan_ms
    grants: list[tuple[Hashable, str | None]] = []
    if isinstance(event, Lock):
        entry = event.entry
        request = entry.request
        if not was_alive and not request.create:
            if not request.wait:
                out.answers.append((entry, rc.LOCK_CANT_WAIT))
                return out
            incubated = replace(entry, status=INCUBATING)
            out.answers.append((incubated, rc.LOCK_WAIT_RESOURCE))
            out.put.append(incubated)
            return out
        if not was_alive:
            lifespan = request.idle_lifespan_ms
            state.lifespan_ms = lifespan
        out.answers += _acquire(resource, entry, now, out)
        if not was_alive:  # the resource is created: its incubated requests come in
            for waiting in snapshot.entries:
                if waiting.status == INCUBATING:
                    out.answers += _acquire(resource, waiting, now, out)
    elif isinstance(event, Unlock) and by_rid[event.rid].status == HELD:
        entry = by_rid[event.rid]
        grants += [(g.conn, g.element) for g in resource.release(entry.rid, event.rollback, now)]
        out.delete.append(entry)
    elif isinstance(event, Unlock | Leave):  # an unlock seen on a stale snapshot: a leave
        entry = by_rid[event.rid]
        out.delete.append(entry)
        if entry.status in (INCUBATING, REFUSED):  # never part of the resource
            out.state = replace(snapshot.state)
            return out
        if entry.status == HELD:
            grants += [(g.conn, g.element) for g in resource.release(entry.rid, True, now)]
        elif entry.status == WAITING:
            grants += [(g.conn, g.element) for g in resource.cancel(entry.rid, now)]
    else:
        grants += [(g.conn, g.element) for g in resource.grant_waiters(now)]
    for rid, element in grants:
        granted = replace(by_rid[str(rid)], status=HELD, element=element)
        out.answers.append((granted, rc.OK))
        out.put.append(granted)
    new_state = _final_state(resource, state, now, lifespan)
    if isinstance(event, Reconcile):
        old = snapshot.state
        if not grants and (new_state.out, new_state.returned) == (old.out, old.returned):
            return out  # nothing became grantable: no write
    if out.delete or new_state != snapshot.state:
        out.state = new_state
    return out


def _acquire(resource: Resource, entry: Entry, now: float, out: Outcome) -> list[tuple[Entry, int]]:
    """Hand a request to ``resource`` as ``LockTable._acquire`` does; record the writes."""
    verdict, grant = resource.acquire(entry.rid, entry.request, now)
    if grant is not None:
        done = replace(entry, status=HELD, element=grant.element, since=entry.since or now)
        out.put.append(done)
        return [(done, rc.OK)]
    code = rc.LOCK_IMPOSSIBLE if verdict is Verdict.NEVER else rc.LOCK_BUSY
    if verdict is Verdict.NOT_NOW and entry.request.wait:
        queued = replace(entry, status=WAITING)
        out.put.append(queued)
        return [(queued, rc.LOCK_ENQUEUED)]
    if entry.status == INCUBATING:  # its owner answers it and deletes it
        refused = replace(entry, status=REFUSED, rc=code)
        out.put.append(refused)
        return [(refused, code)]
    return [(entry, code)]


def apply(snapshot: Snapshot, outcome: Outcome, revision: int) -> Snapshot:
    """The snapshot after ``outcome`` was written by a transaction at ``revision``."""
    gone = {e.rid for e in outcome.delete}
    entries = {e.rid: e for e in snapshot.entries if e.rid not in gone}
    for e in outcome.put:
        old = entries.get(e.rid)
        generation = revision if e.status == HELD and (old is None or old.status != HELD) else 0
        entries[e.rid] = replace(
            e,
            revision=old.revision if old is not None else revision,
            generation=generation or (old.generation if old is not None else 0),
        )
    ordered = sorted(entries.values(), key=lambda e: e.revision)
    if outcome.state is None:
        return Snapshot(
            snapshot.key, ordered, snapshot.state, snapshot.state_revision, snapshot.uid, revision
        )
    return Snapshot(
        snapshot.key, ordered, outcome.state, revision, snapshot.uid or revision, revision
    )


@dataclass(slots=True, frozen=True)
class Change:
    """One key of a resource written or deleted at ``mod_revision`` (a watch event):
    ``name`` is ``s`` or ``q/<rid>``, ``value`` None for a delete."""

    name: str
    value: bytes | None
    create_revision: int
    mod_revision: int
    lease: int = 0


def advance(snapshot: Snapshot, changes: list[Change]) -> Snapshot:
    """The snapshot after ``changes``, every change of the resource's keys after
    ``snapshot.at`` in revision order up to the last one (older ones are skipped): it
    is then exact at the last change's revision."""
    changes = [c for c in changes if c.mod_revision > snapshot.at]
    if not changes:
        return snapshot
    entries = {e.rid: e for e in snapshot.entries}
    state, state_revision, uid = snapshot.state, snapshot.state_revision, snapshot.uid
    for c in changes:
        if c.name == "s":
            gone = c.value is None
            state = State() if c.value is None else State.decode(c.value)
            state_revision, uid = (0, 0) if gone else (c.mod_revision, c.create_revision)
        elif c.name.startswith("q/"):
            rid = c.name[2:]
            if c.value is None:
                entries.pop(rid, None)
            else:
                entries[rid] = Entry.decode(
                    rid, c.value, c.create_revision, c.mod_revision, c.lease
                )
    ordered = sorted(entries.values(), key=lambda e: e.revision)
    return Snapshot(snapshot.key, ordered, state, state_revision, uid, changes[-1].mod_revision)


def next_deadline(snapshot: Snapshot, policy: str, now: float) -> float | None:
    """When a time-based resource (timestamps) can next grant a waiter by itself."""
    if not snapshot.entries or resource_type(snapshot.key) != ResourceType.TIMESTAMP:
        return None
    resource, _ = _replay(snapshot, policy, now)
    return resource.next_deadline()
