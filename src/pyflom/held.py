"""The locks this process holds, to refuse at once a request that would wait on itself.

Every lock a handle is granted is noted here until it is released (unlock, close, a
dropped connection, a lost lock, the handle collected), with the daemon's address as
the settings name it (socket path, ``host:port``), who holds it (the thread, and the
asyncio task) and where it was taken.  A request that must wait for a lock that the
*same* thread (or task) holds in a way that can never let it through would wait on
itself until its timeout: :func:`self_deadlock` finds that holder.  Other threads and
tasks of the process waiting for a lock are legitimate (the daemon serializes them).

Imported by the ``flom`` command too: builtins only.
"""

from __future__ import annotations

import _thread
import os
import sys
from _weakref import ref

from .lockmodes import COMPATIBLE, LockMode
from .names import ResourceType, locker_key

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_PACKAGE = __name__.rpartition(".")[0] + "."


class Holding:
    """One lock held by this process (weakly: a handle collected releases its lock)."""

    __slots__ = ("handle", "key", "kind", "mode", "name", "quantity", "site", "task", "thread")

    def __init__(
        self,
        handle: Any,
        key: tuple[str, str],
        name: str,
        kind: str,
        mode: int,
        quantity: int,
        task: object | None,
        site: str | None,
    ) -> None:
        self.handle = ref(handle)
        self.key = key
        self.name = name
        self.kind = kind
        self.mode = mode
        self.quantity = quantity
        self.thread = _thread.get_ident()
        self.task = task
        self.site = site

    def where(self) -> str:
        """``'R' (EX) taken at file.py:12``, for messages."""
        mode = f" ({LockMode(self.mode).name})" if self.kind in _MODE_KINDS else ""
        site = f" taken at {self.site}" if self.site else ""
        return f"'{self.name}'{mode}{site}"


_MODE_KINDS = (ResourceType.SIMPLE, ResourceType.HIERARCHICAL)

_guard = _thread.allocate_lock()
# (daemon address, locker key) -> the locks held: empty when the process holds none.
LOCKS: dict[tuple[str, str], list[Holding]] = {}


def caller_site(depth: int = 1) -> str | None:
    """``file:line`` of the nearest caller outside pyflom (None if there is none);
    ``depth``: how many frames up it is at least (a shortcut)."""
    try:
        frame = sys._getframe(depth)
    except ValueError:
        frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").startswith(_PACKAGE):
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return None
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


def note(
    handle: Any,
    address: str,
    terms: tuple[str, str, int, int],
    task: object | None,
    site: str | None,
) -> Holding:
    """Note that ``handle`` holds the lock of ``terms`` (name, kind, mode, quantity) on
    the daemon at ``address``."""
    name, kind, mode, quantity = terms
    key = (address, name if kind != ResourceType.HIERARCHICAL else locker_key(name, kind))
    holding = Holding(handle, key, name, kind, mode, quantity, task, site)
    with _guard:
        holders = LOCKS.setdefault(key, [])
        if holders and any(h.handle() is None for h in holders):
            holders[:] = [h for h in holders if h.handle() is not None]  # collected
        holders.append(holding)
    return holding


def forget(holding: Holding) -> None:
    """The lock of ``holding`` is released (or lost)."""
    key = holding.key
    with _guard:
        holders = LOCKS.get(key)
        if holders is not None:
            try:
                holders.remove(holding)
            except ValueError:
                pass
            if not holders:
                del LOCKS[key]


def _blocks(holding: Holding, name: str, kind: str, mode: int) -> bool:
    """Does ``holding`` alone keep the request from being granted, for ever?"""
    if kind == ResourceType.SIMPLE:
        return holding.name == name and not COMPATIBLE[holding.mode][mode]
    if kind == ResourceType.HIERARCHICAL:
        mine, theirs = name.split("/"), holding.name.split("/")
        shorter = min(len(mine), len(theirs))
        return mine[:shorter] == theirs[:shorter] and not COMPATIBLE[holding.mode][mode]
    return holding.name == name


def _capacity(name: str, kind: str) -> int:
    """How many units (numeric) or holders (set, sequence, timestamp) ``name`` has."""
    if kind == ResourceType.SET:
        return name.count(".") + 1
    return int(name[name.rindex("[") + 1 : -1])


def self_deadlock(
    address: str, name: str, kind: str, mode: int, quantity: int, task: object | None
) -> Holding | None:
    """The lock held by this thread (``task``: this asyncio task) that a waiting request
    for ``name`` could never get past, or None.

    Simple and hierarchical resources: a lock of an incompatible mode on the name (or a
    related node).  Numeric, set, sequence and timestamp resources: when this thread's
    own holdings and the request together exceed what the resource has."""
    holders = LOCKS.get((address, locker_key(name, kind)))
    if not holders:
        return None
    thread = _thread.get_ident()
    with _guard:
        mine = [
            h
            for h in holders
            # A task's request is blocked by its own holds, and by a blocking hold of
            # its thread: that thread runs the loop, so it cannot release meanwhile.
            if (
                h.thread == thread
                if task is None
                else h.task is task or (h.task is None and h.thread == thread)
            )
            and h.handle() is not None
            and _blocks(h, name, kind, mode)
        ]
    if not mine:
        return None
    if kind in _MODE_KINDS:
        return mine[0]
    used = sum(h.quantity for h in mine) if kind == ResourceType.NUMERIC else len(mine)
    return mine[0] if used + quantity > _capacity(name, kind) else None


def _forget_all() -> None:
    """A child process does not hold its parent's locks (its threads are others)."""
    LOCKS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_all)
