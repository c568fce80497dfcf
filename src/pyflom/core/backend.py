"""What the daemon asks of the place its locks live: :class:`LockBackend`.

The daemon feeds a backend events (lock, unlock, disconnect, time) and sends the answers
each call returns; a backend whose decisions take I/O (the etcd gateway) returns what it
knows at once and pushes the rest later through the callback it was given.  The memory
backend is :class:`pyflom.core.table.LockTable` itself.
"""

from __future__ import annotations

from typing import Protocol

from .durable import DurableChanges
from .resource import ConnId, Request
from .table import Answer


class LockBackend(Protocol):
    """The lock table of a daemon, wherever it is kept."""

    max_resources: int
    deadline_added: bool  # set when a deadline may have come earlier (memory backend)

    @property
    def idle(self) -> bool:
        """True when no connection of this daemon holds, waits or incubates (and, in
        memory, no resource is alive)."""
        ...

    def involves(self, conn: ConnId) -> bool:
        """Does ``conn`` hold, wait or incubate?"""
        ...

    def what(self, conn: ConnId) -> tuple[str, str] | None:
        """``(resource key, "holding"|"waiting"|"incubating")`` of ``conn``."""
        ...

    def next_grant_deadline(self) -> float | None:
        """When (wall clock) :meth:`tick` next has a time-based grant to make."""
        ...

    def next_expiry_deadline(self) -> float | None:
        """When (wall clock) :meth:`tick` next has an unused resource to drop."""
        ...

    def pending_changes(self) -> DurableChanges | None:
        """What must be made durable (state file) before the last answers are sent."""
        ...

    def lock(self, conn: ConnId, request: Request, now: float) -> list[Answer]:
        """A lock request arrived on ``conn``."""
        ...

    def unlock(self, conn: ConnId, name: str, rollback: bool, now: float) -> list[Answer]:
        """``conn`` unlocks ``name``."""
        ...

    def disconnect(self, conn: ConnId, now: float) -> list[Answer]:
        """``conn`` went away: release what it held, drop what it waited for."""
        ...

    def tick(self, now: float) -> list[Answer]:
        """Time passed."""
        ...
