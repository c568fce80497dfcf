"""The etcd backend: a pyflom daemon as a stateless gateway to locks kept in etcd.

Sits where the daemon's ``LockTable`` sits (``lock``/``unlock``/``disconnect``/``tick``
return the answers known at once; the rest is pushed later through ``push``).  Every
queue, holder, incubated request, sequence counter and generation lives in etcd only;
the decisions are those of :mod:`pyflom.etcd.model`, i.e. of the memory lock table.

Key layout, under the configured prefix ``P`` (default ``/pyflom/``)::

    P r/<locker>/s           the resource's state (no lease): see model.State
    P r/<locker>/q/<rid>     one lock request: value = model.Entry, leased by its gateway

``<locker>`` is the memory table's locker key, percent-encoded (hierarchical names share
their first level: every node under ``/a`` is under one prefix, so one range read sees
everything a request there may conflict with).  ``<rid>`` = gateway id + connection id +
a nonce: unique, so a retried request whose first try has an unknown outcome (timeout,
lost leader) finds its own key instead of queueing twice.

Transactions.  Every change of a resource is one transaction guarded by "nothing under
the resource changed since the snapshot the decision was made on (read at revision A)":
``mod_revision(state key) == R`` (its revision in the snapshot) and ``mod_revision < A + 1``
over the request keys.  A put is seen by the second compare; a delete is not (etcd keeps
no trace of a deleted key), so every transaction that deletes also rewrites the state
key; it is rewritten too when its content changes (set index, sequence values, idle
time).  So all decisions on one resource are serialized by etcd, whichever gateway makes
them, and an uncontended lock writes one key, like etcd's own mutex.  Entries the
transaction rewrites (another gateway's waiter being granted) are also guarded by their
create revision (a key whose lease expired since is not recreated).  Its failure branch
reads the whole resource prefix: a conflict costs no extra round trip.  A gateway caches
the snapshot its last transaction produced, so an uncontended lock and unlock are one
round trip each.  Keys that vanish with an expired lease do not move the state key: a snapshot that
still has them is only more conservative (more holders, more waiters), never unsafe, and
the watch event of the expiry makes the gateways re-decide ("reconcile").

Generation (fencing token) = the revision of the transaction that granted the request,
i.e. the mod revision of its key once granted.  Revisions are cluster-wide and strictly
increasing, so a conflicting later grant always gets a larger generation; requests
granted together (in one transaction, hence compatible) share it.

Watches: one per resource prefix per gateway, while that gateway has a request waiting or
incubating there.  Any event makes the gateway re-read the resource and (a) answer its own
connections whose request was granted or moved on by another gateway's transaction,
(b) grant what the vanished keys of a dead gateway allow.

Lease: one per gateway, TTL from the configuration.  The gateway renews it itself and
calls ``drop(conn, reason)`` for every connection when no renewal has been confirmed for
``config.holder_drop_deadline_s`` = TTL - lock-loss grace - 2 s since it was sent (the
daemon then closes them: each client's lock-loss monitor stops its command within the
grace, before etcd can let the lease expire and grant the locks elsewhere).  Rule
(``config.min_lease_ttl_s``): TTL >= grace + 2 s margin + 3 s of renewal attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from .. import rc
from ..core.resource import ConnId, Request
from ..core.table import Answer, ProtocolViolation
from ..lockmodes import LockMode
from ..names import ResourceType, resource_type, uses_lock_mode
from ..settings import DEFAULT_LOCK_LOSS_GRACE_MS
from . import model
from .config import holder_drop_deadline_s, min_lease_ttl_s
from .model import HELD, INCUBATING, REFUSED, WAITING, Entry, Snapshot

_log = logging.getLogger(__name__)

PENDING = "pending"  # the request's first transaction has not answered yet
_RANK = {PENDING: 0, INCUBATING: 1, WAITING: 2, HELD: 3, REFUSED: 4}
_CODE = {INCUBATING: rc.LOCK_WAIT_RESOURCE, WAITING: rc.LOCK_ENQUEUED, HELD: rc.OK}
_STATUS_WORD = {PENDING: "waiting", INCUBATING: "incubating", WAITING: "waiting", HELD: "holding"}
POLL_S = 1.0  # a waiting request's resource is re-read this often whatever the watch says
WATCH_LINGER_S = 10.0  # a watch outlives the last request on its resource this long
RENEW_INTERVAL_S = 1.0  # how often the lease is renewed
MAX_CACHED = 4096  # resource snapshots kept for one-round-trip transactions


@dataclass(slots=True)
class _Local:
    """A connection of this gateway with a lock request."""

    conn: ConnId
    rid: str
    key: str
    request: Request
    status: str = PENDING
    known: int = 0  # the revision its status was learned at
    element: str | None = None
    generation: int = 0
    task: asyncio.Task[None] | None = None
    early: Entry | None = None  # seen by the watch before its first answer was known


@dataclass(slots=True)
class _Watched:
    task: asyncio.Task[None] | None = None
    dirty: bool = False
    evaluating: asyncio.Task[None] | None = None
    locals: set[str] = field(default_factory=set)  # rids of this gateway's requests


class EtcdBackend:
    """Lock backend keeping everything in etcd; see the module docstring for the design.

    ``client_factory_or_config``: an ``EtcdConfig`` (connected with
    ``pyflom.etcd.connect.connect``) or an async callable returning a connected
    ``etcd3aio.Etcd3Client``.  ``prefix``/``ttl``/``drop_after``/``request_timeout``
    override what the configuration says (tests).
    """

    def __init__(
        self,
        client_factory_or_config: Any,
        *,
        policy: str,
        gateway: str,
        push: Callable[[list[Answer]], None],
        drop: Callable[[ConnId, str], None],
        clock: Callable[[], float] = time.time,
        prefix: str | None = None,
        ttl: int | None = None,
        drop_after: float | None = None,
        request_timeout: float | None = None,
    ) -> None:
        config: Any = None if callable(client_factory_or_config) else client_factory_or_config
        self._factory: Callable[[], Awaitable[Any]] | None = (
            client_factory_or_config if config is None else None
        )
        self._config = config
        self.policy = policy
        self.gateway = gateway
        self._push = push
        self._drop = drop
        self._clock = clock
        self.prefix = prefix if prefix else str(getattr(config, "key_prefix", "/pyflom/"))
        self.ttl = ttl if ttl else int(getattr(config, "lease_ttl_s", 15))
        grace_ms = int(getattr(config, "lock_loss_grace_ms", DEFAULT_LOCK_LOSS_GRACE_MS))
        grace = grace_ms / 1000
        self.drop_after = (
            drop_after if drop_after is not None else holder_drop_deadline_s(self.ttl, grace_ms)
        )
        if self.drop_after <= 0:
            raise ValueError(
                f"the etcd lease TTL of {self.ttl} s leaves no time to serve holders with a "
                f"lock-loss grace of {grace:g} s: use a TTL of at least "
                f"{min_lease_ttl_s(grace_ms)} s"
            )
        self.request_timeout = float(
            request_timeout if request_timeout else getattr(config, "request_timeout_s", 1.0)
        )
        self.client: Any = None
        self.lease = 0
        self._confirmed = 0.0  # monotonic time the last confirmed renewal was sent
        self._conns: dict[ConnId, _Local] = {}
        self._by_rid: dict[str, _Local] = {}
        self._watched: dict[str, _Watched] = {}
        self._cache: dict[str, Snapshot] = {}
        self._prefixes: dict[str, str] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_op: dict[str, asyncio.Task[Any]] = {}  # per resource, in arrival order
        self._nonce = itertools.count(1)
        self._keeper: asyncio.Task[None] | None = None
        self._refresher: Any = None
        self._replacing: asyncio.Task[Any] | None = None  # a lost lease being replaced
        self._poller: asyncio.Task[None] | None = None
        self._closed = False

    # -- life -------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect, grant this gateway's lease and keep it alive."""
        if self._factory is not None:
            self.client = await self._factory()
        else:
            from .connect import connect

            self.client = await connect(self._config)
            if self._config.user:  # the login token must stay fresh
                refresher = self.client.token_refresher(
                    self._config.user, self._config.password or ""
                )
                await refresher.__aenter__()
                self._refresher = refresher
        sent = time.monotonic()
        grant = await self.client.lease.grant(ttl=self.ttl, timeout=self.request_timeout * 3)
        self.lease = grant.ID
        self._confirmed = sent
        self._keeper = asyncio.create_task(self._keep_lease(), name="etcd-lease")
        self._poller = asyncio.create_task(self._poll(), name="etcd-poll")

    async def close(self) -> None:
        """Stop, and revoke the lease: every key of this gateway goes at once."""
        self._closed = True
        tasks = [t for t in (self._keeper, self._poller, *self._tasks) if t is not None]
        tasks += [w.task for w in self._watched.values() if w.task is not None]
        tasks += [w.evaluating for w in self._watched.values() if w.evaluating is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        if self._refresher is not None:
            with contextlib.suppress(Exception):
                await self._refresher.__aexit__(None, None, None)
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.lease.revoke(self.lease, timeout=self.request_timeout * 2)
            with contextlib.suppress(Exception):
                await self.client.close()
        self._conns.clear()
        self._by_rid.clear()

    # -- queries ------------------------------------------------------------------------
    @property
    def endpoints(self) -> tuple[str, ...]:
        """``host:port`` of the etcd members, as configured (empty with a factory)."""
        return tuple(self._config.endpoint_names) if self._config is not None else ()

    # What the daemon's timer asks of the memory backend: nothing here (this backend
    # plans its own re-decisions), no resource limit of the daemon's, no state file.
    max_resources = 0
    deadline_added = False

    def next_grant_deadline(self) -> float | None:
        return None

    def next_expiry_deadline(self) -> float | None:
        return None

    def pending_changes(self) -> None:
        return None

    @property
    def idle(self) -> bool:
        """True when no connection of this gateway holds, waits or incubates, and no
        request is still being written."""
        return not self._conns and not self._tasks

    def involves(self, conn: ConnId) -> bool:
        return conn in self._conns

    def what(self, conn: ConnId) -> tuple[str, str] | None:
        local = self._conns.get(conn)
        return None if local is None else (local.key, _STATUS_WORD[local.status])

    # -- events (synchronous; the outcomes are pushed) -----------------------------------
    def lock(self, conn: ConnId, request: Request, now: float) -> list[Answer]:
        """A lock request arrived on ``conn``."""
        if conn in self._conns:
            raise ProtocolViolation("a second lock request on a connection that already has one")
        normal = model.normalize(request)
        if normal is None:
            return [Answer(conn, rc.INVALID_RESOURCE_NAME, request=request)]
        request = normal[1]
        code = model.init_error(request)
        if code is not None:
            return [Answer(conn, code, request=request)]
        key = model.resource_key(request.name)
        assert key is not None
        rid = f"{self.gateway}.{conn}.{os.getpid()}-{next(self._nonce)}"
        local = _Local(conn, rid, key, request)
        self._conns[conn] = local
        self._by_rid[rid] = local
        self._watch_entry(key).locals.add(rid)
        entry = Entry(rid, self.gateway, str(conn), request, PENDING, since=now, lease=self.lease)
        local.task = self._in_order(key, self._lock(local, entry))
        return []

    def unlock(self, conn: ConnId, name: str, rollback: bool, now: float) -> list[Answer]:
        """``conn`` unlocks ``name``; grants it allows are pushed."""
        local = self._conns.get(conn)
        if local is None or local.status != HELD:
            raise ProtocolViolation("unlock request without a granted lock")
        if model.resource_key(name) != local.key:
            raise ProtocolViolation(
                f"unlock of resource '{name}' but the connection locked '{local.key}'"
            )
        self._forget(local)
        self._in_order(
            local.key,
            self._change(local.key, local.rid, model.Unlock(local.rid, rollback), local.known),
        )
        return []

    def disconnect(self, conn: ConnId, now: float) -> list[Answer]:
        """``conn`` went away: release what it held, drop what it waited for."""
        local = self._conns.get(conn)
        if local is None:
            return []
        self._forget(local)
        self._in_order(
            local.key, self._change(local.key, local.rid, model.Leave(local.rid), local.known)
        )
        return []

    def tick(self, now: float) -> list[Answer]:
        """Time passed: re-decide the timestamp resources this gateway waits for."""
        for key, watched in self._watched.items():
            if resource_type(key) == ResourceType.TIMESTAMP and watched.locals:
                self._dirty(key)
        return []

    # -- status -------------------------------------------------------------------------
    async def status(self, resource: str | None = None) -> dict[str, Any]:
        """The whole cluster's resources (or the one ``resource`` locks): holders,
        waiters and incubated requests, each with its gateway and connection."""
        if resource is None:
            start = self.prefix + "r/"
        else:
            key = model.resource_key(resource)
            if key is None:
                return {"resources": [], "incubator": []}
            start = self._resource_prefix(key)
        from etcd3aio import prefix_range_end

        reply = await self.client.kv.get(
            start, range_end=prefix_range_end(start), timeout=self.request_timeout * 3
        )
        grouped: dict[str, list[Any]] = {}
        for kv in reply.kvs:
            key = unquote(kv.key.decode()[len(self.prefix) + 2 :].split("/", 1)[0])
            grouped.setdefault(key, []).append(kv)
        snapshots = {
            key: self._parse(key, kvs, reply.header.revision) for key, kvs in grouped.items()
        }
        now = self._clock()
        resources: list[dict[str, Any]] = []
        incubator: list[dict[str, Any]] = []
        for key, snap in sorted(snapshots.items(), key=lambda kv: kv[1].uid):
            kind = resource_type(key) or ResourceType.SIMPLE
            holders: list[dict[str, Any]] = []
            waiters: list[dict[str, Any]] = []
            for e in snap.entries:
                about = _describe(kind, e)
                if e.status == HELD:
                    about.update(
                        element=e.element,
                        generation=e.generation,
                        since=e.since,
                        held_s=round(now - e.since, 6),
                    )
                    holders.append(about)
                elif e.status == WAITING:
                    about.update(
                        position=len(waiters) + 1,
                        since=e.since,
                        waiting_s=round(now - e.since, 6),
                    )
                    waiters.append(about)
                elif e.status == INCUBATING:
                    about.update(type=kind, since=e.since, waiting_s=round(now - e.since, 6))
                    incubator.append(about)
            if holders or waiters:
                resources.append(
                    {
                        "id": snap.uid,
                        "name": key,
                        "type": kind,
                        "holders": holders,
                        "waiters": waiters,
                    }
                )
        return {"resources": resources, "incubator": incubator}

    # -- requests -----------------------------------------------------------------------
    async def _lock(self, local: _Local, entry: Entry) -> None:
        rid = local.rid

        def event(snap: Snapshot) -> model.Event | None:
            if snap.find(rid) is not None:
                return None
            entry.lease = self.lease  # the current one (a lost lease is replaced)
            return model.Lock(entry)

        result = await self._run(local.key, event)
        if result is None:
            return
        outcome, revision, snap = result
        if outcome is not None:  # (a request gone meanwhile is not answered)
            self._answers(outcome, revision)
        elif self._conns.get(local.conn) is local:  # an earlier try committed
            found = snap.find(rid)
            assert found is not None
            self._answer_from(found, snap.at)
        if self._conns.get(local.conn) is local and local.status in (WAITING, INCUBATING):
            self._ensure_watch(local.key, revision)  # from revision + 1: nothing is missed
            self._plan_tick(local.key, snap)
            early, local.early = local.early, None
            if early is not None:  # moved on while the answer was on its way
                self._answer_from(early, early.generation or local.known + 1)

    async def _change(self, key: str, rid: str, change: model.Event, known: int = 0) -> None:
        """Unlock or leave: delete ``rid`` and grant what that allows (idempotent).
        ``known``: the revision its state was learned at (older snapshots are stale)."""

        def event(snap: Snapshot) -> model.Event | None:
            return change if snap.find(rid) is not None else None

        result = await self._run(key, event, known)
        if result is not None and result[0] is not None:
            self._answers(result[0], result[1])
        self._unwatch_if_unneeded(key)

    async def _run(
        self,
        key: str,
        event: Callable[[Snapshot], model.Event | None],
        known: int = 0,
        current: Snapshot | None = None,
    ) -> tuple[model.Outcome | None, int, Snapshot] | None:
        """Decide ``event`` on the latest snapshot and write the outcome under the guard;
        on a conflict the failure branch's read is the next snapshot.  An error or
        timeout has an unknown outcome: re-read and decide again (``event`` returns None
        when the snapshot shows its request already in place or gone)."""
        from etcd3aio import prefix_range_end

        kv = self.client.kv
        start = self._resource_prefix(key)
        end = prefix_range_end(start)
        snap = self._cache.get(key) if current is None else current
        if snap is not None and snap.at < known:
            snap = None  # older than what this gateway knows: read again
        backoff = 0.05
        while not self._closed:
            try:
                fresh = snap is None or snap is current
                if snap is None:
                    snap = await self._read(key)
                happening = event(snap)
                outcome = None
                if happening is not None:
                    outcome = model.decide(snap, happening, self.policy, self._clock())
                if outcome is None or not outcome.writes:
                    if not fresh:  # an answer without a write needs a current snapshot
                        snap = None
                        continue
                    return outcome, snap.at, snap
                compares, ops = self._transaction(key, snap, outcome)
                reply = await kv.txn(
                    compares,
                    ops,
                    [kv.txn_op_get(start, range_end=end)],
                    timeout=self.request_timeout,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # unknown outcome: read again, decide again
                _log.info("etcd request about %s failed (%r); retrying", key, exc)
                self._cache.pop(key, None)
                snap = None
                # Jitter: with round robin, a retry in step with other calls could
                # always land on the same (stopped) member.
                await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
                backoff = min(backoff * 2, 0.5)
                continue
            revision = reply.header.revision
            if reply.succeeded:
                snap = model.apply(snap, outcome, revision)
                self._remember(key, snap)
                return outcome, revision, snap
            snap = self._parse(key, reply.responses[0].response_range.kvs, revision)
            self._remember(key, snap)
        return None

    def _transaction(
        self, key: str, snap: Snapshot, outcome: model.Outcome
    ) -> tuple[list[Any], list[Any]]:
        """The compares and operations that write ``outcome`` if the resource did not
        change since ``snap``.  A new entry needs no compare of its own: its key is
        unique, and a retry whose first try committed fails the state key's compare."""
        from etcd3aio._protobuf import Compare, DeleteRangeRequest, PutRequest, RequestOp

        prefix = self._resource_prefix(key).encode()
        state_key = prefix + b"s"
        compares = [
            Compare(
                result=Compare.EQUAL,
                target=Compare.MOD,
                key=state_key,
                mod_revision=snap.state_revision,
            ),
            Compare(  # no request put (created, granted) since the snapshot
                result=Compare.LESS,
                target=Compare.MOD,
                key=prefix + b"q/",
                range_end=prefix + b"q0",  # "0" follows "/"
                mod_revision=snap.at + 1,
            ),
        ]
        ops = []
        if outcome.state is not None:
            ops.append(
                RequestOp(request_put=PutRequest(key=state_key, value=outcome.state.encode()))
            )
        for e in outcome.put:
            entry_key = prefix + b"q/" + e.rid.encode()
            old = snap.find(e.rid)
            if old is not None:  # not recreated if its lease expired meanwhile
                compares.append(
                    Compare(
                        result=Compare.EQUAL,
                        target=Compare.CREATE,
                        key=entry_key,
                        create_revision=old.revision,
                    )
                )
            ops.append(
                RequestOp(request_put=PutRequest(key=entry_key, value=e.encode(), lease=e.lease))
            )
        for e in outcome.delete:
            entry_key = prefix + b"q/" + e.rid.encode()
            ops.append(RequestOp(request_delete_range=DeleteRangeRequest(key=entry_key)))
        return compares, ops

    async def _read(self, key: str) -> Snapshot:
        from etcd3aio import prefix_range_end

        start = self._resource_prefix(key)
        reply = await self.client.kv.get(
            start, range_end=prefix_range_end(start), timeout=self.request_timeout
        )
        snap = self._parse(key, reply.kvs, reply.header.revision)
        self._remember(key, snap)
        return snap

    def _parse(self, key: str, kvs: Any, revision: int) -> Snapshot:
        """The snapshot of resource ``key`` from a range read (other keys are skipped)."""
        start = self._resource_prefix(key).encode()
        snap = Snapshot(key, at=revision)
        entries = []
        for kv in kvs:
            if not kv.key.startswith(start):
                continue
            rest = kv.key[len(start) :].decode()
            if rest == "s":
                snap.state = model.State.decode(kv.value)
                snap.state_revision = kv.mod_revision
                snap.uid = kv.create_revision
            elif rest.startswith("q/"):
                entries.append(
                    Entry.decode(rest[2:], kv.value, kv.create_revision, kv.mod_revision, kv.lease)
                )
        entries.sort(key=lambda e: e.revision)
        snap.entries = entries
        return snap

    def _remember(self, key: str, snap: Snapshot) -> None:
        if len(self._cache) >= MAX_CACHED and key not in self._cache:
            self._cache.clear()
        self._cache[key] = snap

    # -- answers ------------------------------------------------------------------------
    def _answers(self, outcome: model.Outcome, revision: int) -> None:
        """Answer this gateway's connections among ``outcome``'s answers (others are
        answered by their own gateway, which sees the change through its watch)."""
        answers = []
        for entry, code in outcome.answers:
            if entry.gateway != self.gateway:
                continue
            local = self._by_rid.get(entry.rid)
            if local is None:
                continue
            answer = self._advance(local, entry.status, code, entry.element, revision, revision)
            if answer is not None:
                answers.append(answer)
        if answers:
            self._push(answers)

    def _answer_from(self, entry: Entry, revision: int) -> None:
        local = self._by_rid.get(entry.rid)
        if local is None:
            return
        code = entry.rc if entry.status == REFUSED else _CODE[entry.status]
        answer = self._advance(local, entry.status, code, entry.element, entry.generation, revision)
        if answer is not None:
            self._push([answer])

    def _advance(
        self,
        local: _Local,
        status: str,
        code: int,
        element: str | None,
        generation: int,
        revision: int,
    ) -> Answer | None:
        """Move ``local`` to ``status`` (forward only) and build its answer."""
        if local.status != PENDING and _RANK.get(status, 0) <= _RANK[local.status]:
            return None  # nothing new, or older news
        local.known = max(local.known, revision)
        if code == rc.OK:
            local.status, local.element, local.generation = HELD, element, generation
            return Answer(local.conn, rc.OK, element, generation, local.request)
        if code in (rc.LOCK_ENQUEUED, rc.LOCK_WAIT_RESOURCE):
            local.status = WAITING if code == rc.LOCK_ENQUEUED else INCUBATING
            return Answer(local.conn, code, request=local.request)
        # refused: busy, can't wait, impossible; the connection has no lock any more
        self._forget(local)
        if status == REFUSED:
            self._in_order(local.key, self._change(local.key, local.rid, model.Leave(local.rid)))
        return Answer(local.conn, code, request=local.request)

    def _forget(self, local: _Local) -> None:
        if self._conns.get(local.conn) is local:
            del self._conns[local.conn]
        self._by_rid.pop(local.rid, None)
        watched = self._watched.get(local.key)
        if watched is not None:
            watched.locals.discard(local.rid)

    # -- watches ------------------------------------------------------------------------
    def _watch_entry(self, key: str) -> _Watched:
        watched = self._watched.get(key)
        if watched is None:
            watched = self._watched[key] = _Watched()
        return watched

    def _ensure_watch(self, key: str, revision: int) -> None:
        watched = self._watch_entry(key)
        if watched.task is None or watched.task.done():
            watched.task = asyncio.create_task(self._watch(key, revision + 1))

    def _unwatch_if_unneeded(self, key: str) -> None:
        """Stop watching ``key`` :data:`WATCH_LINGER_S` after this gateway's last request
        on it is gone (a new watch costs a round trip, or more if etcd must catch it up)."""
        watched = self._watched.get(key)
        if watched is None or any(rid in self._by_rid for rid in watched.locals):
            return
        asyncio.get_running_loop().call_later(WATCH_LINGER_S, self._unwatch, key, watched)

    def _unwatch(self, key: str, watched: _Watched) -> None:
        if self._watched.get(key) is not watched or watched.locals or self._closed:
            return
        if watched.evaluating is not None and not watched.evaluating.done():
            return
        if watched.task is not None:
            watched.task.cancel()
        del self._watched[key]

    async def _watch(self, key: str, start_revision: int) -> None:
        """Watch ``key``'s prefix from ``start_revision`` (0: now, then re-read once the
        watch is in place, so nothing between is missed)."""
        from etcd3aio import prefix_range_end

        prefix = self._resource_prefix(key)
        while not self._closed:
            try:
                covered = start_revision  # events from here on arrive, in order
                first = True
                async for reply in self.client.watch.watch(
                    prefix, range_end=prefix_range_end(prefix), start_revision=start_revision
                ):
                    if reply.canceled or reply.compact_revision:
                        break  # events lost: re-read, then watch again from now
                    if reply.created and not first:
                        break  # etcd3aio reconnected, maybe past events: as if lost
                    if reply.created and start_revision == 0:
                        covered = reply.header.revision + 1
                        self._dirty(key)
                    first = False
                    if reply.events:
                        self._events(key, prefix, reply.events, covered)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.info("watch of %s failed (%s); watching again", key, exc)
                await asyncio.sleep(0.2)
            self._cache.pop(key, None)
            self._dirty(key)
            start_revision = 0

    def _events(self, key: str, prefix: str, events: Any, covered: int) -> None:
        """Answer this gateway's requests that another gateway's transaction moved on,
        straight from the watch events; re-read the resource only when a key vanished
        without a transaction of ours (a lease expired: a gateway died).  The cached
        snapshot follows the events when the watch saw every change since it was taken
        (``covered``: the first revision the watch stream delivers), so this gateway's
        next transaction there is decided on current keys and does not conflict."""
        state_key = (prefix + "s").encode()
        start = prefix.encode()
        cached = self._cache.get(key)
        if cached is not None and 0 < covered <= cached.at + 1:
            changes = [
                model.Change(
                    ev.kv.key[len(start) :].decode(),
                    ev.kv.value if ev.type == 0 else None,
                    ev.kv.create_revision,
                    ev.kv.mod_revision,
                    ev.kv.lease,
                )
                for ev in events
            ]
            self._remember(key, model.advance(cached, changes))
        written = {ev.kv.mod_revision for ev in events if ev.type == 0 and ev.kv.key == state_key}
        again = False
        for ev in events:
            rest = ev.kv.key[len(start) :].decode()
            if not rest.startswith("q/"):
                continue
            local = self._by_rid.get(rest[2:])
            if ev.type != 0:  # a delete
                again = again or local is not None or ev.kv.mod_revision not in written
                continue
            if local is None:
                continue
            kv = ev.kv
            entry = Entry.decode(rest[2:], kv.value, kv.create_revision, kv.mod_revision, kv.lease)
            if local.status == PENDING:
                local.early = entry
            else:
                self._answer_from(entry, kv.mod_revision)
        if again:
            self._dirty(key)
        else:
            self._unwatch_if_unneeded(key)

    async def _poll(self) -> None:
        """Re-read every resource this gateway waits on each :data:`POLL_S`: a watch
        served by a member that stopped (SIGSTOP, a partition) stalls without an error
        until gRPC's keepalive gives up, and a waiter must not wait for that."""
        while not self._closed:
            await asyncio.sleep(POLL_S)
            for key, watched in list(self._watched.items()):
                if any(
                    (local := self._by_rid.get(rid)) is not None
                    and local.status in (WAITING, INCUBATING)
                    for rid in watched.locals
                ):
                    self._dirty(key)

    def _plan_tick(self, key: str, snap: Snapshot) -> None:
        """Re-decide a timestamp resource when its next grain starts (it grants by
        itself then), while this gateway waits there."""
        now = self._clock()
        due = model.next_deadline(snap, self.policy, now)
        if due is not None:
            asyncio.get_running_loop().call_later(max(0.0, due - now) + 0.001, self._dirty, key)

    def _dirty(self, key: str) -> None:
        watched = self._watch_entry(key)
        watched.dirty = True
        if watched.evaluating is None or watched.evaluating.done():
            watched.evaluating = asyncio.create_task(self._evaluate(key, watched))

    async def _evaluate(self, key: str, watched: _Watched) -> None:
        """Re-read ``key``: answer this gateway's requests other gateways moved on, and
        grant what keys vanished with a lease allow."""
        while watched.dirty and not self._closed:
            watched.dirty = False
            try:
                snap = await self._read(key)
            except Exception as exc:
                _log.info("reading %s failed (%s); trying again", key, exc)
                await asyncio.sleep(0.2)
                watched.dirty = True
                continue
            for rid in list(watched.locals):
                local = self._by_rid.get(rid)
                if local is None or local.status == PENDING or snap.at <= local.known:
                    continue
                found = snap.find(rid)
                if found is None:
                    self._lost(local, "its lock request vanished from etcd (lease expired)")
                else:
                    self._answer_from(found, snap.at)
            result = await self._run(key, lambda s: model.Reconcile(), current=snap)
            if result is not None and result[0] is not None:
                self._answers(result[0], result[1])
            if result is not None:
                self._plan_tick(key, result[2])
            self._unwatch_if_unneeded(key)

    # -- the lease ----------------------------------------------------------------------
    async def _keep_lease(self) -> None:
        """Renew the lease every second; past the drop deadline without a confirmed
        renewal, drop every connection (their locks can no longer be guaranteed)."""
        while not self._closed:
            if self._replacing is not None and not self._replacing.done():
                await asyncio.sleep(RENEW_INTERVAL_S)
                continue
            sent = time.monotonic()
            try:
                stream = self.client.lease.keep_alive(self.lease)
                try:
                    async with asyncio.timeout(self.request_timeout):
                        async for reply in stream:
                            if reply.TTL > 0:
                                self._confirmed = sent
                            else:
                                self._lease_lost("the gateway's etcd lease expired")
                            break
                finally:
                    stream.cancel()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.info("renewing the etcd lease failed (%s)", exc)
            if time.monotonic() > self._confirmed + self.drop_after:
                self._lease_lost(
                    f"no etcd lease renewal confirmed for {self.drop_after:g} s "
                    "(etcd unreachable or without quorum)"
                )
            await asyncio.sleep(
                max(
                    0.0, min(RENEW_INTERVAL_S, self._confirmed + self.drop_after - time.monotonic())
                )
            )

    def _lease_lost(self, reason: str) -> None:
        """Drop every connection, then carry on with a new lease once etcd answers."""
        for local in list(self._conns.values()):
            self._lost(local, reason)
        self._cache.clear()
        self._confirmed = time.monotonic()  # nothing is left to guard
        if self._replacing is None or self._replacing.done():
            self._replacing = self._spawn(self._new_lease())

    async def _new_lease(self) -> None:
        old = self.lease
        while not self._closed:
            try:
                sent = time.monotonic()
                grant = await self.client.lease.grant(ttl=self.ttl, timeout=self.request_timeout)
                self.lease, self._confirmed = grant.ID, sent
                break
            except Exception:
                await asyncio.sleep(0.5)
        with contextlib.suppress(Exception):  # its keys must not outlive the drops
            await self.client.lease.revoke(old, timeout=self.request_timeout)

    def _lost(self, local: _Local, reason: str) -> None:
        self._forget(local)
        self._in_order(local.key, self._change(local.key, local.rid, model.Leave(local.rid)))
        self._drop(local.conn, reason)

    # -- helpers ------------------------------------------------------------------------
    def _spawn(self, work: Awaitable[Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _in_order(self, key: str, work: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run ``work`` after the earlier requests of this gateway on resource ``key``
        (an unlock followed by a lock on one gateway is seen in that order)."""
        before = self._last_op.get(key)
        if before is None or before.done():
            task = self._spawn(work)
        else:

            async def after() -> Any:
                with contextlib.suppress(BaseException):
                    await asyncio.shield(before)
                return await work

            task = self._spawn(after())
        self._last_op[key] = task
        task.add_done_callback(
            lambda t: self._last_op.pop(key) if self._last_op.get(key) is t else None
        )
        return task

    def _resource_prefix(self, key: str) -> str:
        prefix = self._prefixes.get(key)
        if prefix is None:
            if len(self._prefixes) >= MAX_CACHED:
                self._prefixes.clear()
            prefix = self._prefixes[key] = f"{self.prefix}r/{quote(key, safe='')}/"
        return prefix


def _describe(kind: str, entry: Entry) -> dict[str, Any]:
    request = entry.request
    return {
        "gateway": entry.gateway,
        "connection": entry.conn,
        "name": request.name,
        "mode": LockMode(request.mode).name if uses_lock_mode(kind) else None,
        "quantity": request.quantity if kind == ResourceType.NUMERIC else None,
    }
