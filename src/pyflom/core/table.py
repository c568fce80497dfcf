"""The daemon's lock table: every live resource, the incubator and each connection's state.

Sans-IO: the daemon feeds it events (lock, unlock, disconnect, time) with the current
time, and sends the :class:`Answer` values it returns.  Nothing here reads a clock.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from enum import Enum

from .. import rc
from ..lockmodes import LockMode
from ..names import ResourceType, locker_key, resource_type, uses_lock_mode
from ..settings import GrantPolicy
from .durable import DurableChanges, DurableState, GenerationCounter
from .hierarchical import HierarchicalResource
from .numeric import NumericResource
from .resource import ConnId, Grant, Request, Resource, ResourceInitError, Verdict
from .sequence import SequenceResource
from .set import SetResource
from .simple import SimpleResource
from .timestamp import TimestampResource

IDLE_GRACE_MS = 1000  # FLoM keeps an unused resource (idle lifespan or 1 s) + 1 s
MAX_RESOURCES = 100_000  # live resources a table keeps at most (default)


@dataclass(slots=True)
class Answer:
    """Tell connection ``conn`` the outcome ``rc`` (a FLOM_RC code) of its lock request
    (``request``: what it asked, for the daemon's log)."""

    conn: ConnId
    rc: int
    element: str | None = None
    generation: int | None = None
    request: Request | None = field(default=None, compare=False)


class ProtocolViolation(Exception):
    """A client broke the protocol; the daemon must close that connection."""


class _Status(Enum):
    HOLDING = "holding"
    WAITING = "waiting"
    INCUBATING = "incubating"


@dataclass(slots=True)
class _ConnState:
    key: str
    status: _Status


_RESOURCE_CLASSES: dict[str, type[Resource]] = {
    ResourceType.SIMPLE: SimpleResource,
    ResourceType.NUMERIC: NumericResource,
    ResourceType.SET: SetResource,
    ResourceType.HIERARCHICAL: HierarchicalResource,
    ResourceType.SEQUENCE: SequenceResource,
    ResourceType.TIMESTAMP: TimestampResource,
}


def register_resource_class(kind: str, cls: type[Resource]) -> None:
    """Make the lock table serve resources of ``kind`` with ``cls``."""
    _RESOURCE_CLASSES[kind] = cls


class LockTable:
    """All resources of one daemon.  One lock (held, queued or incubated) per connection.

    With ``durable`` (a daemon with a state file), sequence counters outlive their
    resources and generations stay under a durable ceiling; after every event, call
    :meth:`pending_changes` and make what it returns durable before sending the answers.
    At most ``max_resources`` resources live at once: a request that would create one
    more is refused with ``rc.CONTAINER_FULL``.  The cost of an event does not depend on
    the number of live resources.  Each new resource is numbered by ``new_uid``
    (by default 1, 2, 3...; a daemon shares its connection counter, as FLoM does).
    """

    def __init__(
        self,
        policy: str = GrantPolicy.FLOM,
        durable: DurableState | None = None,
        max_resources: int = MAX_RESOURCES,
        new_uid: Callable[[], int] | None = None,
    ) -> None:
        if max_resources < 1:
            raise ValueError(f"max_resources must be at least 1, not {max_resources}")
        self.policy = policy
        self.durable = durable
        self.max_resources = max_resources
        self.resources: dict[str, Resource] = {}
        self._new_uid = itertools.count(1).__next__ if new_uid is None else new_uid
        self._incubator: dict[str, dict[ConnId, tuple[Request, float]]] = {}
        self._conns: dict[ConnId, _ConnState] = {}
        self._expiry: dict[str, float] = {}  # unused resource -> when it is dropped
        self._deadlines: list[tuple[float, str]] = []  # heap; entries may be early
        # Time-based grants: the pending deadline of each timed resource that has one,
        # and a heap of (deadline, key) whose entries are stale unless they match it.
        self._grant_due: dict[str, float] = {}
        self._grant_heap: list[tuple[float, str]] = []
        # Set when a deadline was added that may come before the ones known until then
        # (a resource fell unused, a time-based grant got a date); whoever plans its
        # wake-ups from next_deadline() looks again and clears it.
        self.deadline_added = False
        # Fencing tokens, shared by all resources.
        self._generations = GenerationCounter() if durable is None else durable.generations

    # -- queries ------------------------------------------------------------------------
    @property
    def idle(self) -> bool:
        """True when no resource is alive and no connection holds, waits or incubates."""
        return not self.resources and not self._conns

    def involves(self, conn: ConnId) -> bool:
        """True while ``conn`` holds, waits for or incubates a lock."""
        return conn in self._conns

    def what(self, conn: ConnId) -> tuple[str, str] | None:
        """(resource key, ``"holding"``/``"waiting"``/``"incubating"``) for a connection
        that has a lock request, else None."""
        state = self._conns.get(conn)
        return None if state is None else (state.key, state.status.value)

    def incubating(self) -> Iterator[tuple[ConnId, Request, float]]:
        """Each incubated request (``create=0``, no resource yet) with when it came."""
        for waiting in self._incubator.values():
            for conn, (request, since) in waiting.items():
                yield conn, request, since

    def next_deadline(self) -> float | None:
        """The earliest time at which :meth:`tick` has work to do."""
        # Heap entries may be early (an idle clock restarted): at worst a spurious tick.
        expiry = self._deadlines[0][0] if self._deadlines else None
        grant = self.next_grant_deadline()
        if expiry is None or (grant is not None and grant < expiry):
            return grant
        return expiry

    def next_expiry_deadline(self) -> float | None:
        """When an unused resource may next expire (may be early: then nothing does)."""
        return self._deadlines[0][0] if self._deadlines else None

    def next_grant_deadline(self) -> float | None:
        """When a time-based resource (timestamps) can next grant a queued request."""
        heap, current = self._grant_heap, self._grant_due
        while heap and current.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)  # stale: that resource's deadline changed since
        return heap[0][0] if heap else None

    def pending_changes(self) -> DurableChanges | None:
        """What the events since the last call changed that must be made durable before
        their answers are sent (None: nothing, or no durable state)."""
        return None if self.durable is None else self.durable.take_changes()

    # -- events -------------------------------------------------------------------------
    def lock(self, conn: ConnId, request: Request, now: float) -> list[Answer]:
        """A lock request arrived on ``conn``."""
        if conn in self._conns:
            raise ProtocolViolation("a second lock request on a connection that already has one")
        kind = resource_type(request.name)
        if kind is None:
            return [Answer(conn, rc.INVALID_RESOURCE_NAME, request=request)]
        if not uses_lock_mode(kind) and request.mode != LockMode.EX:
            request = replace(request, mode=LockMode.EX)
        if kind != ResourceType.NUMERIC and request.quantity != 1:
            request = replace(request, quantity=1)
        key = locker_key(request.name, kind)
        resource = self._live(key, now)
        if resource is not None:
            return self._acquire(conn, resource, request, now)
        if not request.create:
            if not request.wait:
                return [Answer(conn, rc.LOCK_CANT_WAIT, request=request)]
            self._incubator.setdefault(key, {})[conn] = (request, now)
            self._conns[conn] = _ConnState(key, _Status.INCUBATING)
            return [Answer(conn, rc.LOCK_WAIT_RESOURCE, request=request)]
        try:
            resource = _RESOURCE_CLASSES[kind](
                name=request.name,
                key=key,
                idle_lifespan_ms=request.idle_lifespan_ms,
                policy=self.policy,
                generations=self._generations,
                uid=self._new_uid(),
                kind=kind,
            )
        except ResourceInitError as exc:
            return [Answer(conn, exc.rc, request=request)]
        if len(self.resources) >= self.max_resources:
            self._expire(now)  # make room with what is already past its expiry
            if len(self.resources) >= self.max_resources:
                return [Answer(conn, rc.CONTAINER_FULL, request=request)]
        if self.durable is not None and isinstance(resource, SequenceResource):
            resource.keep_in(self.durable)
        self.resources[key] = resource
        answers = self._acquire(conn, resource, request, now)
        for waiting_conn, (waiting_request, _) in self._incubator.pop(key, {}).items():
            del self._conns[waiting_conn]
            answers += self._acquire(waiting_conn, resource, waiting_request, now)
        return answers

    def unlock(self, conn: ConnId, name: str, rollback: bool, now: float) -> list[Answer]:
        """``conn`` unlocks ``name``; returns the grants this release allows."""
        state = self._conns.get(conn)
        if state is None or state.status is not _Status.HOLDING:
            raise ProtocolViolation("unlock request without a granted lock")
        kind = resource_type(name)
        if kind is None or locker_key(name, kind) != state.key:
            raise ProtocolViolation(
                f"unlock of resource '{name}' but the connection locked '{state.key}'"
            )
        del self._conns[conn]
        resource = self.resources[state.key]
        return self._answers(resource.release(conn, rollback, now), resource, now)

    def disconnect(self, conn: ConnId, now: float) -> list[Answer]:
        """``conn`` went away: release what it held, drop what it waited for."""
        state = self._conns.pop(conn, None)
        if state is None:
            return []
        if state.status is _Status.INCUBATING:
            waiting = self._incubator[state.key]
            del waiting[conn]
            if not waiting:
                del self._incubator[state.key]
            return []
        resource = self.resources[state.key]
        if state.status is _Status.HOLDING:
            grants = resource.release(conn, True, now)
        else:
            grants = resource.cancel(conn, now)
        return self._answers(grants, resource, now)

    def tick(self, now: float) -> list[Answer]:
        """Time passed: drop expired unused resources, serve the time-based grants due."""
        self._expire(now)
        heap, current = self._grant_heap, self._grant_due
        due_keys = []
        while heap and heap[0][0] <= now:
            due, key = heapq.heappop(heap)
            if current.get(key) == due:
                del current[key]
                due_keys.append(key)
        answers: list[Answer] = []
        for key in due_keys:  # each refreshes its own deadline (served from the next tick)
            resource = self.resources[key]
            answers += self._answers(resource.tick(now), resource, now)
        return answers

    # -- internals ----------------------------------------------------------------------
    def _expire(self, now: float) -> None:
        """Drop the unused resources whose idle time is over."""
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            _, key = heapq.heappop(heap)
            due = self._expiry.get(key)
            if due is None:
                continue  # in use again
            if due > now:
                heapq.heappush(heap, (due, key))  # its idle clock restarted since
            else:
                self._drop(key)

    def _drop(self, key: str) -> None:
        del self._expiry[key]
        del self.resources[key]
        self._grant_due.pop(key, None)

    def _live(self, key: str, now: float) -> Resource | None:
        """The resource for ``key`` unless it is absent or already past its expiry."""
        resource = self.resources.get(key)
        if resource is not None:
            due = self._expiry.get(key)
            if due is not None and due <= now:
                self._drop(key)
                return None
        return resource

    def _acquire(
        self, conn: ConnId, resource: Resource, request: Request, now: float
    ) -> list[Answer]:
        verdict, grant = resource.acquire(conn, request, now)
        self._touch(resource, now)
        if grant is not None:
            self._conns[conn] = _ConnState(resource.key, _Status.HOLDING)
            return [Answer(conn, rc.OK, grant.element, grant.generation, request)]
        if verdict is Verdict.NEVER:
            return [Answer(conn, rc.LOCK_IMPOSSIBLE, request=request)]
        if request.wait:
            self._conns[conn] = _ConnState(resource.key, _Status.WAITING)
            return [Answer(conn, rc.LOCK_ENQUEUED, request=request)]
        return [Answer(conn, rc.LOCK_BUSY, request=request)]

    def _answers(self, grants: list[Grant], resource: Resource, now: float) -> list[Answer]:
        for grant in grants:
            self._conns[grant.conn].status = _Status.HOLDING
        self._touch(resource, now)
        holders = resource.holders
        return [
            Answer(g.conn, rc.OK, g.element, g.generation, holders[g.conn].request) for g in grants
        ]

    def _touch(self, resource: Resource, now: float) -> None:
        """After an event on ``resource``: refresh its grant deadline (time-based types),
        restart its idle clock if nobody uses it, else stop it."""
        key = resource.key
        if resource.timed:
            self._refresh_grant_deadline(resource)
        if resource.in_use:
            self._expiry.pop(key, None)
            return
        keep_ms = (resource.idle_lifespan_ms or IDLE_GRACE_MS) + IDLE_GRACE_MS
        due = now + keep_ms / 1000.0
        if key not in self._expiry:  # one heap entry per key; tick() re-pushes if later
            heapq.heappush(self._deadlines, (due, key))
            self.deadline_added = True
        self._expiry[key] = due

    def _refresh_grant_deadline(self, resource: Resource) -> None:
        """Record when ``resource`` can next grant by itself; O(log n), stale entries of
        the heap are skipped later (and compacted away when they outnumber live ones)."""
        key = resource.key
        due = resource.next_deadline()
        current = self._grant_due
        if due is None:
            current.pop(key, None)
            return
        if current.get(key) == due:
            return
        current[key] = due
        heap = self._grant_heap
        heapq.heappush(heap, (due, key))
        self.deadline_added = True
        if len(heap) > 2 * len(current) + 64:
            heap[:] = [(d, k) for k, d in current.items()]
            heapq.heapify(heap)
