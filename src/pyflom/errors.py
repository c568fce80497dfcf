"""Exceptions raised by the client library.  Each carries a FLoM reason code (``rc``)."""

from __future__ import annotations

from . import rc as _rc


class FlomError(Exception):
    """A lock operation failed; ``rc`` is the FLoM reason code (see :mod:`pyflom.rc`)."""

    rc: int = _rc.INTERNAL_ERROR
    refused = False  # the daemon refused us on purpose (TLS): trying again will not help

    def __init__(self, message: str | None = None, *, rc: int | None = None) -> None:
        if rc is not None:
            self.rc = rc
        super().__init__(message or _rc.strerror(self.rc))


class LockBusy(FlomError):
    """The resource is locked by someone else and the request may not wait."""

    rc = _rc.LOCK_BUSY


class LockTimeout(FlomError):
    """The lock was not granted before the timeout expired."""

    rc = _rc.NETWORK_TIMEOUT
    unanswered = False  # the daemon did not even answer the request (not a busy resource)


class LockCantWait(FlomError):
    """The resource does not exist, may not be created and the request may not wait."""

    rc = _rc.LOCK_CANT_WAIT


class LockImpossible(FlomError):
    """The resource can never satisfy the request (e.g. more units than it has)."""

    rc = _rc.LOCK_IMPOSSIBLE


class InvalidResourceName(FlomError):
    """The name is not a valid resource name."""

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
