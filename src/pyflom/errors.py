"""Exceptions raised by the client library.  Each carries a FLoM reason code (``rc``)."""

from __future__ import annotations

from . import rc as _rc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from .typed import HolderStatus


class FlomError(Exception):
    """A lock operation failed; ``rc`` is the FLoM reason code (see :mod:`pyflom.rc`)."""

    rc: int = _rc.INTERNAL_ERROR
    refused = False  # the daemon refused us on purpose (TLS): trying again will not help

    def __init__(self, message: str | None = None, *, rc: int | None = None) -> None:
        if rc is not None:
            self.rc = rc
        super().__init__(message or _rc.strerror(self.rc))


class LockUnavailable(FlomError, TimeoutError):
    """The lock was not granted because someone else holds the resource: at once
    (:class:`LockBusy`, the request may not wait) or within the timeout
    (:class:`LockTimeout`).  A :class:`TimeoutError`, as ``filelock``'s ``Timeout``.

    ``resource`` is the name asked for (None when unknown).  ``holders`` says who holds
    it, asked of the daemon when first read (one status query of at most a second):
    a list of holder entries of pyflom's status document (``peer``, ``pid``, ``mode``,
    ``held_s``...), or None when the daemon does not tell (FLoM's C daemon) or the
    error was not raised by a lock request.
    """

    resource: str | None = None
    _ask_holders: Callable[[], list[HolderStatus] | None] | None = None
    _holders: list[HolderStatus] | None = None
    # How the message says who holds the resource (set with _ask_holders), and whether
    # str() may ask the daemon for it (blocking library: yes; asyncio: only when known,
    # a query would block the loop).
    _say_holders: Callable[[list[HolderStatus]], str] | None = None
    _query_in_str = False

    def __str__(self) -> str:
        """The message, and who holds the resource when known (the blocking library
        asks the daemon on the first ``str()``: one status query of at most a second)."""
        text = super().__str__()
        say = self._say_holders
        if say is None or (self._ask_holders is not None and not self._query_in_str):
            return text
        holders = self.holders
        return f"{text}; now held by {say(holders)}" if holders else text

    @property
    def holders(self) -> list[HolderStatus] | None:
        """Who holds :attr:`resource` (asked of the daemon on first use), or None."""
        ask, self._ask_holders = self._ask_holders, None
        if ask is not None:
            self._holders = ask()
        return self._holders

    def __reduce__(self) -> tuple[object, ...]:
        # Picklable (to another process): without the query, which needs this one.
        state = {k: v for k, v in vars(self).items() if k != "_ask_holders"}
        return type(self), self.args, state


class LockBusy(LockUnavailable):
    """The resource is locked by someone else and the request may not wait."""

    rc = _rc.LOCK_BUSY


class LockTimeout(LockUnavailable):
    """The lock was not granted before the timeout expired."""

    rc = _rc.NETWORK_TIMEOUT
    unanswered = False  # the daemon did not even answer the request (not a busy resource)


class LockCantWait(FlomError):
    """The resource does not exist, may not be created and the request may not wait."""

    rc = _rc.LOCK_CANT_WAIT


class LockImpossible(FlomError):
    """The resource can never satisfy the request (e.g. more units than it has)."""

    rc = _rc.LOCK_IMPOSSIBLE


class InvalidResourceName(FlomError, ValueError):
    """The name is not a valid resource name, or names another kind of resource than
    the one asked for (a ``ValueError`` too)."""

    rc = _rc.INVALID_RESOURCE_NAME


class NotAllowed(FlomError):
    """The daemon's access rules do not allow this client the request (pyflom extension:
    a daemon started with ``--access-rules``)."""

    rc = _rc.NOT_ALLOWED
    refused = True


class ConnectionFailed(FlomError):
    """No daemon could be reached (and none could be started)."""

    rc = _rc.CONNECT_ERROR


class ProtocolError(FlomError):
    """The daemon closed the connection or sent something unexpected."""

    rc = _rc.PROTOCOL_ERROR


class InvalidSequence(FlomError):
    """The handle is not in a state where this call is allowed (e.g. unlock before lock)."""

    rc = _rc.API_INVALID_SEQUENCE


class LockLost(FlomError):
    """The connection that held the lock ended while it was held (the daemon stopped or
    died, or the network failed): the lock may already be someone else's.

    ``resource`` is the resource's name, ``lost_at`` the ``time.time()`` when the loss
    was first known (``None`` when unknown)."""

    rc = _rc.LOCK_LOST
    resource: str | None = None
    lost_at: float | None = None


class SelfDeadlock(InvalidSequence):
    """The request would wait for a lock that its own thread (asyncio: task) holds and
    that never lets it through: it would wait on itself until its timeout."""

    rc = _rc.SELF_DEADLOCK
