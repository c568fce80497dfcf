"""A live resource ("locker" in FLoM): holders, a wait queue and a grant policy.

Pure state machine: requests in, grants out.  No sockets, no clocks it is not given.
Subclasses say what a request needs (``verdict``) and record what a grant takes
(``take``/``give_back``); this base class owns the queue and the order of grants.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import ClassVar

from ..settings import GrantPolicy
from .durable import GenerationCounter

ConnId = Hashable


@dataclass(slots=True)
class Request:
    """What a client asks of a resource (already checked against the name grammar)."""

    name: str
    mode: int = 5
    quantity: int = 1
    wait: bool = True
    create: bool = True
    idle_lifespan_ms: int = 0


class ResourceInitError(Exception):
    """A valid name whose resource cannot be built (e.g. a timestamp format with no
    usable specifier).  ``rc`` is the FLoM reason code the requester gets."""

    def __init__(self, message: str, rc: int) -> None:
        super().__init__(message)
        self.rc = rc


class Verdict(Enum):
    """Whether a request can be granted against the current holders."""

    GRANTABLE = "grantable"
    NOT_NOW = "not now"
    NEVER = "never"


@dataclass(slots=True)
class Waiter:
    """A queued request.  ``seq`` orders waiters; ``key`` is its class in the queue;
    ``since`` is when it was queued (the caller's clock)."""

    conn: ConnId
    request: Request
    seq: int
    key: Hashable = None
    since: float = 0.0


@dataclass(slots=True)
class Holding:
    """A granted request, what it was given and when (the caller's clock)."""

    request: Request
    element: str | None
    generation: int
    since: float = 0.0


@dataclass(slots=True)
class Grant:
    """A waiter that has just been granted."""

    conn: ConnId
    element: str | None
    generation: int


class WaitQueue:
    """Waiters partitioned into classes of interchangeable requests.

    All waiters of one class (same ``class_key``) are equally grantable, so only the
    head of each class needs checking.  Each class is an ``OrderedDict`` keyed by
    connection, in arrival order: push, pop of the head and removal of any waiter
    (a cancel) are O(1), and a waiter that leaves leaves nothing behind.
    """

    __slots__ = ("_classes", "_live")

    def __init__(self) -> None:
        self._classes: dict[Hashable, OrderedDict[ConnId, Waiter]] = {}
        self._live = 0

    def __len__(self) -> int:
        return self._live

    def push(self, waiter: Waiter, key: Hashable) -> None:
        """Queue ``waiter`` at the end of class ``key``."""
        waiter.key = key
        waiters = self._classes.get(key)
        if waiters is None:
            waiters = self._classes[key] = OrderedDict()
        waiters[waiter.conn] = waiter
        self._live += 1

    def cancel(self, waiter: Waiter) -> None:
        """Remove a queued ``waiter`` wherever it is in its class."""
        waiters = self._classes[waiter.key]
        del waiters[waiter.conn]
        if not waiters:
            del self._classes[waiter.key]
        self._live -= 1

    def drain(
        self, verdict: Callable[[Request, float], Verdict], now: float, fifo: bool
    ) -> Iterator[Waiter]:
        """Remove and yield, oldest first, each waiter that ``verdict`` finds grantable
        when it is reached; the caller grants it before the next one is checked.

        One pass over a heap of class heads ordered by arrival: a blocked head ends its
        class's turn for this pass (``fifo``: ends the pass).  This is the plain scan of
        the queue in arrival order as long as a grant never makes another request
        grantable, which holds for every resource type.
        """
        classes = self._classes
        key_of: dict[int, Hashable] = {}  # head's seq -> its class (ints compare fast)
        for key, waiters in classes.items():
            key_of[next(iter(waiters.values())).seq] = key
        heap = list(key_of)
        heapq.heapify(heap)
        while heap:
            key = key_of[heap[0]]
            waiters = classes[key]
            waiter = next(iter(waiters.values()))
            if verdict(waiter.request, now) is not Verdict.GRANTABLE:
                if fifo:
                    return
                heapq.heappop(heap)  # blocked for the rest of this pass
                continue
            del waiters[waiter.conn]
            self._live -= 1
            if waiters:
                following = next(iter(waiters.values())).seq
                key_of[following] = key
                heapq.heapreplace(heap, following)
            else:
                del classes[key]
                heapq.heappop(heap)
            yield waiter


@dataclass
class Resource:
    """Base class of every resource type.

    ``policy`` is :class:`GrantPolicy` ``FLOM`` (a newcomer is checked against the
    holders only, so compatible newcomers overtake queued requests; every release
    grants each queued request that has become compatible, in queue order) or ``FIFO``
    (strict arrival order: nobody is granted while an older request waits).
    """

    name: str
    key: str = ""  # the lock table's key (hierarchical names share their first level)
    uid: int = 0  # the lock table's number for this resource (status, VFS)
    kind: str = ""  # its ResourceType, set by the lock table
    idle_lifespan_ms: int = 0
    policy: str = GrantPolicy.FLOM
    holders: dict[ConnId, Holding] = field(default_factory=dict)
    queue: WaitQueue = field(default_factory=WaitQueue)
    waiting: dict[ConnId, Waiter] = field(default_factory=dict)
    # Fencing tokens: one counter shared by every resource of a lock table, so each
    # resource's grants carry strictly increasing numbers, across restarts too.
    generations: GenerationCounter = field(default_factory=GenerationCounter)
    _seq: int = 0
    timed: ClassVar[bool] = False  # True for types whose grants depend on time

    # -- what subclasses define (``now``: wall-clock seconds, given by the caller) -------
    def verdict(self, request: Request, now: float) -> Verdict:
        """Can ``request`` be granted next to the current holders?"""
        raise NotImplementedError

    def take(self, request: Request, now: float) -> str | None:
        """Record a grant; return the element handed out (None for element-less types)."""
        raise NotImplementedError

    def give_back(self, holding: Holding, rollback: bool) -> None:
        """Undo what ``take`` recorded."""
        raise NotImplementedError

    def class_key(self, request: Request) -> Hashable:
        """Requests with equal keys are interchangeable for ``verdict``."""
        return None

    def next_deadline(self) -> float | None:
        """When ``tick`` should next be called for time-based grants (None: never)."""
        return None

    # -- the protocol ---------------------------------------------------------------
    @property
    def in_use(self) -> bool:
        """True while any connection holds or waits for this resource."""
        return bool(self.holders) or bool(self.waiting)

    def acquire(self, conn: ConnId, request: Request, now: float) -> tuple[Verdict, Grant | None]:
        """Handle a new request: grant it, queue it (if it may wait) or refuse it.

        Returns ``(GRANTABLE, grant)``, ``(NOT_NOW, None)`` when queued or busy (queued
        iff ``request.wait``), or ``(NEVER, None)``.
        """
        verdict = self.verdict(request, now)
        if verdict is Verdict.GRANTABLE and self.policy == GrantPolicy.FIFO and self.queue:
            verdict = Verdict.NOT_NOW
        if verdict is Verdict.GRANTABLE:
            return verdict, self._grant(conn, request, now)
        if verdict is Verdict.NOT_NOW and request.wait:
            self._seq += 1
            waiter = Waiter(conn, request, self._seq, since=now)
            self.waiting[conn] = waiter
            self.queue.push(waiter, self.class_key(request))
        return verdict, None

    def release(self, conn: ConnId, rollback: bool, now: float) -> list[Grant]:
        """The holder ``conn`` unlocks (or vanishes); grant whatever that allows."""
        holding = self.holders.pop(conn)
        self.give_back(holding, rollback)
        return self.grant_waiters(now)

    def cancel(self, conn: ConnId, now: float) -> list[Grant]:
        """The waiter ``conn`` gives up (timeout, disconnect)."""
        self.queue.cancel(self.waiting.pop(conn))
        return self.grant_waiters(now) if self.policy == GrantPolicy.FIFO else []

    def tick(self, now: float) -> list[Grant]:
        """Time has passed: grant what became grantable (time-based resources)."""
        return self.grant_waiters(now)

    def grant_waiters(self, now: float) -> list[Grant]:
        """Grant queued requests in queue order, as the policy allows (one pass)."""
        if not self.queue:
            return []
        waiting, holders, take = self.waiting, self.holders, self.take
        generations = self.generations
        grants = []
        for waiter in self.queue.drain(self.verdict, now, self.policy == GrantPolicy.FIFO):
            conn, request = waiter.conn, waiter.request
            del waiting[conn]
            element = take(request, now)  # as _grant, inlined: thousands per pass
            generation = generations.next(now)
            holders[conn] = Holding(request, element, generation, now)
            grants.append(Grant(conn, element, generation))
        return grants

    def _grant(self, conn: ConnId, request: Request, now: float) -> Grant:
        element = self.take(request, now)
        generation = self.generations.next(now)
        self.holders[conn] = Holding(request, element, generation, now)
        return Grant(conn, element, generation)
