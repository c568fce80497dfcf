"""Names for type checkers: the accepted spellings of lock modes and resource kinds, the
options every lock helper takes, and the shape of pyflom's status document.

Imported by programs (and mypy), never by the ``flom`` command: it imports ``typing``.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Literal, NotRequired, TypedDict

from .errors import LockLost
from .settings import Settings

Seconds = float | int | datetime.timedelta
"""A duration in seconds (:mod:`pyflom.durations`)."""

ModeName = Literal[
    "NL",
    "CR",
    "CW",
    "PR",
    "PW",
    "EX",
    "NullLock",
    "ConcurrentRead",
    "ConcurrentWrite",
    "ProtectedRead",
    "ProtectedWrite",
    "Exclusive",
]
"""A lock mode by name (the library also takes them in any case, and
:class:`pyflom.LockMode`)."""

ResourceKind = Literal["simple", "hierarchical", "set", "numeric", "sequence", "timestamp"]
"""A kind of resource (``kind=`` of :func:`pyflom.lock` and :class:`pyflom.Handle`)."""

LossCallback = Callable[[LockLost], object]
"""``on_lost=``: called with the :class:`pyflom.LockLost` when a held lock is lost."""


class LockOptions(TypedDict, total=False):
    """The keyword arguments :func:`pyflom.semaphore`, :func:`pyflom.sequence`,
    :func:`pyflom.one_of` and :func:`pyflom.timestamp` pass on to :func:`pyflom.lock`."""

    timeout: Seconds | None
    create: bool
    idle_lifespan: Seconds
    socket_name: str | None
    daemon_lifespan: Seconds | None
    start_daemon: bool
    settings: Settings | None
    on_lost: LossCallback | None


class LockKeywords(LockOptions, total=False):
    """Every keyword argument of :func:`pyflom.lock` (:class:`LockOptions`, the kind and
    the quantity)."""

    kind: ResourceKind | None
    quantity: int


class AsyncLockOptions(LockOptions, total=False):
    """:class:`LockOptions` of :mod:`pyflom.aio`'s helpers."""

    cancel_on_loss: bool


class _Peer(TypedDict):
    connection: int | str
    peer: str
    pid: int | None
    user: int | None
    certificate_cn: str | None
    name: str
    mode: str | None
    quantity: int | None
    since: float
    gateway: NotRequired[str]


class HolderStatus(_Peer):
    """A holder in the status document (``flom --status``)."""

    element: str | None
    generation: int | None
    held_s: float


class WaiterStatus(_Peer):
    """A waiter in the status document."""

    position: int
    waiting_s: float


class IncubatingStatus(_Peer):
    """A request waiting for its resource to be created (``create=False``)."""

    type: str
    waiting_s: float


class ResourceStatus(TypedDict):
    """One resource of the status document."""

    id: int | str
    name: str
    type: str
    holders: list[HolderStatus]
    waiters: list[WaiterStatus]


class DaemonStatus(TypedDict):
    """The daemon part of the status document."""

    pid: int
    peer_id: str
    started: float
    now: float
    connections: int
    lifespan_ms: int
    tls: bool
    lock_delay_s: float | None
    view: NotRequired[str]
    backend: NotRequired[str | None]
    gateway: NotRequired[str | None]


class StatusDocument(TypedDict):
    """What :func:`pyflom.status.query_status` returns: pyflom's status document,
    version 1 (a dict, described in :mod:`pyflom.daemon.status`)."""

    pyflom_status: int
    daemon: DaemonStatus
    resources: list[ResourceStatus]
    incubator: list[IncubatingStatus]
