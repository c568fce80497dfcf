"""The blocking client library: :class:`Handle` (like libflom's handle) and :func:`lock`.

Example::

    import pyflom

    with pyflom.lock("printer", mode="EX", timeout=2.0):
        ...  # only one process at a time gets here

A handle speaks FLoM's protocol to the daemon on the configured socket and, as the
``flom`` command does, starts one when nobody answers (``start_daemon=False``: never).
Durations given as arguments are in seconds (:mod:`pyflom.durations`); libflom's handle
properties (``resource_timeout``...) keep FLoM's milliseconds.

A handle may be used from any thread, one call at a time: a call made while another
thread is inside ``lock()``, ``unlock()`` or ``close()`` of the same handle raises
:class:`~pyflom.errors.InvalidSequence` at once (give each thread its own handle to
wait in parallel).
"""

from __future__ import annotations

import _thread
import os
import time
from enum import Enum, IntEnum

from . import codec, held, logs
from . import rc as _rc
from .errors import (
    ConnectionFailed,
    FlomError,
    InvalidResourceName,
    InvalidSequence,
    LockBusy,
    LockCantWait,
    LockImpossible,
    LockLost,
    LockTimeout,
    LockUnavailable,
    NotAllowed,
    ProtocolError,
    SelfDeadlock,
)
from .lockmodes import LockMode, invalid_lock_mode, parse_lock_mode
from .names import (
    RESERVED_NAME,
    ResourceType,
    check_kind,
    kind_mismatch,
    resource_type,
    simple_spelling,
    uses_lock_mode,
)
from .settings import Settings
from .transport import Channel, daemon_address, encode_message, open_channel
from .uniqueid import peer_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Generator
    from typing import Any, TypeVar, Unpack

    from .durations import Seconds
    from .losswatch import LossWatch
    from .typed import HolderStatus, LockOptions, LossCallback, ModeName, ResourceKind

    _Unavailable = TypeVar("_Unavailable", bound=LockUnavailable)

HOLDERS_TIMEOUT_S = 1.0  # the status query that says who holds a refused resource
# Frames from HandleCore._hold up to the caller of Handle.lock() (a shortcut for
# held.caller_site: _hold, _locked, _lock_steps, StepRun.next, _lock, lock).
_CALLER_DEPTH = 6
_CONNECT_ATTEMPTS = 3  # a daemon leaving at the very moment we connect: try again
# A stopping daemon (it waits for its holders' commands to end) is asked again this
# often, at first more often, until it is gone and a new one can start.
_STOPPING_PAUSES_S = (0.02, 0.05, 0.1, 0.2)


class _Default(Enum):
    FROM_SETTINGS = "from the settings"  # an argument not given: the settings' value


_FROM_SETTINGS = _Default.FROM_SETTINGS


class Step(Enum):
    """What :meth:`HandleCore._lock_steps` asks its driver to do."""

    CONNECT = "connect"
    SEND = "send"
    RECEIVE = "receive"
    PAUSE = "pause"  # sleep the given seconds (the daemon is stopping)


CONNECT, SEND, RECEIVE, PAUSE = Step.CONNECT, Step.SEND, Step.RECEIVE, Step.PAUSE


class StepRun:
    """Runs :meth:`HandleCore._lock_steps` for a driver: :meth:`next` gives the next step
    (None when done: see :attr:`result`); the driver sets :attr:`reply` or :attr:`error`."""

    def __init__(self, steps: Generator[tuple[Step, Any], Any, str | None]) -> None:
        self.steps = steps
        self.reply: Any = None
        self.error: BaseException | None = None
        self.result: str | None = None

    def next(self) -> tuple[Step, Any] | None:
        """The next step; raises what the steps raise."""
        reply, error = self.reply, self.error
        self.reply = self.error = None
        try:
            return self.steps.send(reply) if error is None else self.steps.throw(error)
        except StopIteration as done:
            self.result = done.value
            return None


def _to_ms(value: Seconds, what: str) -> int:
    """:func:`pyflom.durations.to_ms`, imported only when a duration is given (the
    ``flom`` command never gives one: it passes milliseconds in its settings)."""
    from .durations import to_ms

    return to_ms(value, what)


class HandleState(IntEnum):
    """Handle states, with libflom's numbers."""

    INIT = 22
    CONNECTED = 23
    LOCKED = 24
    DISCONNECTED = 25
    CLEANED = 26


_REFUSALS: dict[int, type[FlomError]] = {
    _rc.LOCK_BUSY: LockBusy,
    _rc.LOCK_CANT_WAIT: LockCantWait,
    _rc.LOCK_IMPOSSIBLE: LockImpossible,
    _rc.INVALID_RESOURCE_NAME: InvalidResourceName,
}


NO_ROOM = (
    "the daemon has no room for another connection: it is at its limit of open files "
    "and its connections hold or wait for locks. Raise the daemon's limit of open files "
    "('ulimit -n' in the shell that starts it, LimitNOFILE= in a systemd unit; a daemon "
    "started by flom inherits the limit of that flom), or retry when locks are released"
)


def _default_settings() -> Settings:
    """Built-in defaults overlaid with the system and user config files (as libflom)."""
    from .cmdline import configured_settings

    settings, _ = configured_settings()
    return settings


class _TransportSetting:
    """A handle property that names where the daemon is: changing it drops the connection."""

    def __init__(self, doc: str) -> None:
        self.__doc__ = doc
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, handle: Handle | None, owner: type) -> object:
        if handle is None:
            return self
        return getattr(handle._settings, self.name)

    def __set__(self, handle: Handle, value: object) -> None:
        handle._mutable()
        handle._disconnect()
        setattr(handle._settings, self.name, value)


class HandleCore:
    """What the blocking :class:`Handle` and :class:`pyflom.aio.Handle` share: the
    constructor's arguments, libflom's properties, the requests and the reading of the
    daemon's answers.  The subclasses do the I/O."""

    _channel: object | None = None
    _holding: held.Holding | None = None  # this handle's entry among the process's locks
    _address: str | None = None  # where the daemon is, as the settings name it
    _terms: tuple[str, str, int, int] | None = None  # name, kind, mode, quantity
    _lost_at: float | None = None  # time.time() the loss of the held lock was first known
    _in_with = False  # the lock was taken by ``with handle`` (it releases it)
    # Called once (from a watching thread; asyncio: on the loop) when the connection of
    # the held lock ends: the lock may be someone else's by then (opt-in: a watcher per lock).
    on_lost: LossCallback | None = None
    cancel_on_loss = False  # pyflom.aio: cancel the task holding a lock lost

    def __init__(
        self,
        resource_name: str | None = None,
        *,
        kind: ResourceKind | None = None,
        lock_mode: LockMode | ModeName | None = None,
        timeout: Seconds | _Default | None = _FROM_SETTINGS,
        quantity: int | None = None,
        create: bool | None = None,
        idle_lifespan: Seconds | None = None,
        socket_name: str | None = None,
        daemon_lifespan: Seconds | None = None,
        start_daemon: bool = True,
        keep_connection: bool = False,
        settings: Settings | None = None,
    ) -> None:
        """Arguments not given take their value from ``settings`` (default: FLoM's
        built-in defaults overlaid with ``flom.conf`` and ``~/.flom``, as libflom).

        ``timeout`` is in seconds: ``None`` waits forever, ``0`` does not wait.
        ``idle_lifespan`` (seconds) keeps the resource's state that long after its last
        use.  When no daemon answers, one is started (as ``flom`` does) that lives
        ``daemon_lifespan`` seconds without clients (default: the settings', 5 s;
        ``math.inf``: forever); ``start_daemon=False`` never starts one.

        ``kind`` is the kind of resource the name must denote: None (default) a simple
        (``'printer'``) or hierarchical (``'/orders/123'``) one, where lock modes apply;
        ``'set'``, ``'numeric'``, ``'sequence'`` or ``'timestamp'`` for the others.  A
        name of another kind raises :class:`InvalidResourceName` saying what it would
        have meant (``'app.lock'`` is a set: a lock on ONE of ``app`` and ``lock``).
        """
        check_kind(kind)
        self._kind = kind
        base = settings if settings is not None else _default_settings()
        self._settings = base.copy()
        self._init_io()
        self.state = HandleState.INIT
        self.keep_connection = keep_connection
        self._locked_name: str | None = None
        self._encoded: tuple[bytes, bytes] | None = None  # (lock request, unlock request)
        self.locked_element: str | None = None
        self.lock_generation: int | None = None  # fencing token of the current lock
        self._answered = False  # the daemon answered the current lock request (step 16)
        if resource_name is not None:
            self.resource_name = resource_name
        else:
            self._check_name(self._settings.resource_name)
        if lock_mode is not None:
            self.lock_mode = lock_mode
            self._check_mode()
        elif not isinstance(self._settings.lock_mode, LockMode):
            self.lock_mode = self._settings.lock_mode  # Settings(lock_mode="PR"): parsed
        if timeout is None:
            self.resource_timeout = -1
        elif not isinstance(timeout, _Default):
            self.resource_timeout = _to_ms(timeout, "timeout")
        if quantity is not None:
            self.resource_quantity = quantity
            self._check_quantity()
        if create is not None:
            self.resource_create = create
        if idle_lifespan is not None:
            self.resource_idle_lifespan = _to_ms(idle_lifespan, "idle_lifespan")
        if socket_name is not None:
            self.socket_name = socket_name
        if not start_daemon:
            self._settings.daemon_lifespan = 0
        elif daemon_lifespan is not None:
            forever = isinstance(daemon_lifespan, (int, float)) and daemon_lifespan == float("inf")
            lifespan = -1 if forever else _to_ms(daemon_lifespan, "daemon_lifespan")
            if lifespan == 0:
                raise ValueError(
                    "daemon_lifespan=0 would never start a daemon: pass start_daemon=False"
                )
            self._settings.daemon_lifespan = lifespan

    def __getstate__(self) -> object:
        raise TypeError(_NOT_SENT.format(what=f"handle on '{self.resource_name}'"))

    # -- properties ---------------------------------------------------------------------
    def _init_io(self) -> None:
        """Set up the subclass's connection state (first thing in the constructor)."""
        raise NotImplementedError

    def _in_call(self) -> bool:
        """Is a call (``lock``, ``unlock``, ``close``) working on the handle?"""
        raise NotImplementedError

    def _disconnect(self, graceful: bool = True) -> None:
        raise NotImplementedError

    def _mutable(self) -> None:
        if self._in_call():
            raise self._in_use("change a property of")
        if self.state == HandleState.LOCKED:
            raise FlomError("the handle is locked: unlock first", rc=_rc.API_IMMUTABLE_HANDLE)
        self._encoded = None  # the request changes with the property
        self._address = self._terms = None

    @property
    def resource_name(self) -> str:
        """Name of the resource to lock (its shape decides its type)."""
        return self._settings.resource_name

    @resource_name.setter
    def resource_name(self, name: str) -> None:
        self._mutable()
        self._check_name(name)
        self._settings.resource_name = name

    def _check_name(self, name: str) -> None:
        """Raise :class:`InvalidResourceName` unless ``name`` is of the handle's kind."""
        if not isinstance(name, str):
            raise TypeError(f"a resource name must be a str, not {type(name).__name__}")
        why = kind_mismatch(name, self._kind)
        if why is not None:
            raise InvalidResourceName(why)

    @property
    def kind(self) -> ResourceKind | None:
        """The kind of resource asked for (None: simple or hierarchical): a name of
        another kind is refused.  Set it before a name of the new kind."""
        return self._kind

    @kind.setter
    def kind(self, kind: ResourceKind | None) -> None:
        self._mutable()
        check_kind(kind)
        self._kind = kind

    @property
    def lock_mode(self) -> LockMode:
        """Lock mode (simple and hierarchical resources; others always lock EX)."""
        return self._settings.lock_mode

    @lock_mode.setter
    def lock_mode(self, mode: LockMode | ModeName | int) -> None:
        self._mutable()
        try:
            self._settings.lock_mode = (
                parse_lock_mode(mode) if isinstance(mode, str) else LockMode(mode)
            )
        except ValueError:
            raise ValueError(invalid_lock_mode(mode)) from None

    def _check_mode(self) -> None:
        """A mode other than EX given for a kind where modes do not apply: refused."""
        kind = resource_type(self._settings.resource_name)
        if kind is not None and not uses_lock_mode(kind) and self.lock_mode != LockMode.EX:
            raise ValueError(
                f"mode={self.lock_mode.name!r} does not apply to '{self.resource_name}', a "
                f"{kind} resource: it is always locked exclusively (EX); leave the mode out"
            )

    def _check_quantity(self) -> None:
        """A quantity other than 1 given for a kind without units: refused."""
        name = self._settings.resource_name
        kind = resource_type(name)
        if kind not in (None, ResourceType.NUMERIC) and self.resource_quantity != 1:
            raise ValueError(
                f"quantity={self.resource_quantity} does not apply to '{name}', a {kind} "
                "resource: only a numeric one has units (pyflom.semaphore(name, units, "
                "quantity=...)); leave the quantity out"
            )
        if kind == ResourceType.NUMERIC:
            units = int(name[name.rindex("[") + 1 : -1])
            if self.resource_quantity > units:  # what the daemon would answer, at once
                raise LockImpossible(
                    f"'{name}' can never grant {self.resource_quantity} units: it has "
                    f"{units} (ask for {units} at most)"
                )

    @property
    def generation(self) -> int:
        """The fencing token of the lock held: a number the daemon makes larger at each
        grant of the resource (pass it to what the lock protects, which refuses a smaller
        one).  Raises :class:`InvalidSequence` when no lock is held, and
        :class:`FlomError` when the daemon gives none (FLoM's C daemon);
        :attr:`lock_generation` is None then instead."""
        generation = self.lock_generation
        if generation is None:
            if self.state != HandleState.LOCKED:
                raise InvalidSequence(f"no lock is held (handle state {self.state.name})")
            raise FlomError(
                f"the daemon gave no generation (fencing token) with the lock on "
                f"'{self._locked_name}': FLoM's C daemon has none, a pyflom daemon does"
            )
        return generation

    @property
    def resource_timeout(self) -> int:
        """Milliseconds (libflom's unit) to wait for the lock: 0 don't wait, < 0 wait
        forever.  The ``timeout`` argument of the constructor is in seconds."""
        return self._settings.resource_timeout

    @resource_timeout.setter
    def resource_timeout(self, ms: int) -> None:
        self._mutable()
        self._settings.resource_timeout = int(ms)

    @property
    def resource_quantity(self) -> int:
        """Units to lock on a numeric resource."""
        return self._settings.resource_quantity

    @resource_quantity.setter
    def resource_quantity(self, quantity: int) -> None:
        self._mutable()
        if quantity < 1:
            raise ValueError(f"quantity must be a positive number, not {quantity}")
        self._settings.resource_quantity = int(quantity)

    @property
    def resource_create(self) -> bool:
        """May this request create the resource?  (False: wait for someone who may.)"""
        return self._settings.resource_create

    @resource_create.setter
    def resource_create(self, create: bool) -> None:
        self._mutable()
        self._settings.resource_create = bool(create)

    @property
    def resource_idle_lifespan(self) -> int:
        """Milliseconds the daemon keeps the resource's state after its last use."""
        return self._settings.resource_idle_lifespan

    @resource_idle_lifespan.setter
    def resource_idle_lifespan(self, ms: int) -> None:
        self._mutable()
        self._settings.resource_idle_lifespan = abs(int(ms))

    @property
    def socket_name(self) -> str | None:
        """UNIX socket of the daemon (default ``/tmp/flom-<login>``)."""
        return self._settings.effective_socket_name()

    @socket_name.setter
    def socket_name(self, path: str) -> None:
        self._mutable()
        self._disconnect()
        self._settings.socket_name = path

    unicast_address = _TransportSetting("TCP address (name, IPv4 or IPv6) of the daemon.")
    unicast_port = _TransportSetting("TCP port of the daemon (default 28015).")
    multicast_address = _TransportSetting("Multicast group that finds the daemon.")
    multicast_port = _TransportSetting("UDP port of the discovery (default 28015).")

    @property
    def daemon_lifespan(self) -> int:
        """Lifespan (ms, libflom's unit) of a daemon this handle starts: < 0 forever,
        0 never start one."""
        return self._settings.daemon_lifespan

    @daemon_lifespan.setter
    def daemon_lifespan(self, ms: int) -> None:
        self._settings.daemon_lifespan = int(ms)

    # -- shared by both clients ---------------------------------------------------------
    _CALLER = "thread"  # who calls a handle: a thread (blocking) or a task (asyncio)

    def _in_use(self, doing: str) -> InvalidSequence:
        who = self._CALLER
        return InvalidSequence(
            f"cannot {doing} this handle: another {who} is inside one of its calls "
            f"(one call at a time per handle; give each {who} its own handle)"
        )

    def _lock_request(self) -> bytes:
        """The encoded lock request; checks that the handle may lock."""
        if self.state == HandleState.LOCKED:
            self._raise_if_lost()
            raise InvalidSequence(self._locked_already())
        if self.state == HandleState.CLEANED:
            raise InvalidSequence(f"lock() on a handle in state {self.state.name}")
        if self._encoded is None:
            self._encoded = self._encode_requests()
        if held.LOCKS and self._settings.resource_timeout != 0:
            self._refuse_self_deadlock()
        return self._encoded[0]

    def _locked_already(self) -> str:
        """Why ``lock()`` on a locked handle is refused, and where it was locked."""
        where = self._holding.site if self._holding is not None else None
        at = f" at {where}" if where else ""
        name = self._locked_name
        if self._in_with:
            return (
                f"lock() inside a with statement on this handle ({at.strip() or 'above'}): "
                f"the with statement holds the lock on '{name}' already and releases it at "
                "the end of its block (to lock and unlock by hand, don't use the handle in a "
                "with statement; contextlib.closing(handle) closes it at the end)"
            )
        return (
            f"lock() on a handle that holds the lock on '{name}' already (taken{at}): unlock first"
        )

    # -- the locks of this process ------------------------------------------------------
    def _holder_task(self) -> object | None:
        """The asyncio task that locks (None: a thread locks)."""
        return None

    def _daemon_address(self) -> str:
        address = self._address
        if address is None:
            address = self._address = daemon_address(self._settings)
        return address

    def _request_terms(self) -> tuple[str, str, int, int]:
        """The request's name, kind, mode and quantity, as :mod:`pyflom.held` counts them."""
        if self._terms is not None:
            return self._terms
        settings = self._settings
        name = settings.resource_name
        kind = resource_type(name) or ResourceType.SIMPLE
        mode = int(settings.lock_mode) if uses_lock_mode(kind) else int(LockMode.EX)
        quantity = settings.resource_quantity if kind == ResourceType.NUMERIC else 1
        self._terms = name, kind, mode, quantity
        return self._terms

    def _refuse_self_deadlock(self) -> None:
        """Raise :class:`SelfDeadlock` when the request would wait for a lock its own
        thread (task) holds: it would wait on itself until its timeout."""
        name, kind, mode, quantity = self._request_terms()
        task = self._holder_task()
        address = self._daemon_address()
        while True:
            holding = held.self_deadlock(address, name, kind, mode, quantity, task)
            if holding is None:
                return
            holder = holding.handle()
            if holder is not None and holder._connection_gone():
                holder._note_lost()  # that lock is lost, not held: it blocks nothing
                continue
            who = self._CALLER
            asked = f"'{name}'" + (f" ({LockMode(mode).name})" if uses_lock_mode(kind) else "")
            ms = self._settings.resource_timeout
            until = "for ever" if ms < 0 else f"until its timeout ({ms / 1000:g} s) expires"
            raise SelfDeadlock(
                f"{asked} would wait {until} on its own {who}: this {who} holds "
                f"{holding.where()}, which it cannot release while it waits. Release that "
                f"lock first{', ask for a compatible mode' if uses_lock_mode(kind) else ''}"
                f", or take this lock in another {who}"
            )

    def _hold(self) -> None:
        """Note the granted lock among the process's locks."""
        self._holding = held.note(
            self,
            self._address or self._daemon_address(),
            self._terms or self._request_terms(),
            self._holder_task(),
            held.caller_site(_CALLER_DEPTH),
        )

    def _unhold(self) -> None:
        """The lock is released (or lost): forget it."""
        holding = self._holding
        if holding is not None:
            self._holding = None
            held.forget(holding)

    # -- lost locks -----------------------------------------------------------------------
    def _connection_gone(self) -> bool:
        """Without waiting: has the connection that holds the lock ended?"""
        channel: Any = self._channel
        return channel is None or bool(channel.peer_gone())

    @property
    def held(self) -> bool:
        """Does the handle hold its lock?  False when unlocked, or when the connection
        that holds it has ended (the daemon stopped or died, or the network failed: the
        lock may be someone else's; the next ``unlock()`` raises :class:`LockLost`).
        Costs one non-blocking look at the socket."""
        if self.state != HandleState.LOCKED or self._lost_at is not None:
            return False
        if self._connection_gone():
            self._note_lost()
            return False
        return True

    def _note_lost(self) -> bool:
        """The held lock is lost: note when, forget it, log it (True the first time)."""
        if self._lost_at is not None:
            return False
        self._lost_at = time.time()
        self._unhold()
        log = logs.logger(logs.WARNING)
        if log is not None:
            log.warning("%s", self._lost_error())
        return True

    def _lost_error(self) -> LockLost:
        name = self._locked_name or self._settings.resource_name
        lost_at = self._lost_at
        when = ""
        if lost_at is not None:
            clock = time.strftime("%H:%M:%S", time.localtime(lost_at))
            when = f" (known since {clock}, {max(0.0, time.time() - lost_at):.1f} s ago)"
        error = LockLost(
            f"the lock on '{name}' was lost{when}: the connection to the daemon on "
            f"{self._daemon_address()} ended while it was held (the daemon stopped or died, "
            "or the network failed), so another client may have held it since; what ran "
            "after that was not protected by the lock"
        )
        error.resource = name
        error.lost_at = lost_at
        return error

    def _raise_if_lost(self) -> None:
        """Raise :class:`LockLost` when the held lock is lost; the handle is then
        unlocked (disconnected) and may lock again."""
        if self._lost_at is None and not self._connection_gone():
            return
        self._note_lost()
        error = self._lost_error()
        self.abandon()
        raise error

    def _lost_on_unlock(self, exc: FlomError) -> FlomError:
        """The error for an unlock that could not be sent: the lock was lost."""
        if exc.rc != _rc.SEND_ERROR:
            return exc
        self._note_lost()
        error = self._lost_error()
        self.abandon()
        return error

    def abandon(self) -> None:
        """Drop the connection without unlocking: the lock is gone already (the daemon
        went away), or is given up by leaving.  The handle may lock again."""
        self.locked_element = None
        self.lock_generation = None
        self._disconnect(graceful=False)

    def _copy(self) -> Any:
        """A handle like this one, not connected (for lock objects used by several
        threads or tasks at once)."""
        twin: Any = object.__new__(type(self))
        twin.__dict__.update(self.__dict__)
        twin._settings = self._settings.copy()
        twin._init_io()
        twin.on_wait = getattr(self, "on_wait", None)
        twin.state = HandleState.INIT
        twin._locked_name = twin.locked_element = twin.lock_generation = None
        twin._holding = twin._lost_at = None
        twin._in_with = False
        return twin

    def _waits(self, channel: Any, answer: codec.LockAnswer) -> None:
        """The request waits (queued or incubated): a hook for the subclass."""

    def _watch_loss(self) -> None:
        """Watch the held lock's connection and call :attr:`on_lost` when it ends."""
        raise NotImplementedError

    def _log_wait(self, answer: codec.LockAnswer, who: str | None) -> None:
        """Log (INFO) that the request waits, and for whom when known."""
        log = logs.logger(logs.INFO)
        if log is None:
            return
        if answer.rc == _rc.DAEMON_STOPPING:
            from .status import stopping_report

            log.info("%s", stopping_report(self._settings))
            return
        where = self._daemon_address()
        if who:  # "waiting for 'R': held by ..."
            log.info("%s (daemon on %s)", who, where)
            return
        why = "queued" if answer.rc == _rc.LOCK_ENQUEUED else "it does not exist yet"
        log.info("waiting for '%s' (%s; daemon on %s)", self._settings.resource_name, why, where)

    def _log_connect(self, channel: Any) -> None:
        """Log where the handle connected (DEBUG) and a daemon it started (INFO)."""
        log = logs.logger(logs.INFO)
        if log is None:
            return
        where = self._daemon_address()
        tls = " over TLS" if channel.tls else ""
        pid = channel.peer_pid() if hasattr(channel, "peer_pid") else None
        if channel.daemon_started:
            log.info(
                "started a daemon%s on %s (it lives %s without clients)",
                f" (pid {pid})" if pid else "",
                where,
                "for ever"
                if self._settings.daemon_lifespan < 0
                else f"{self._settings.daemon_lifespan / 1000:g} s",
            )
        log.debug("connected to the daemon on %s%s%s", where, f" (pid {pid})" if pid else "", tls)

    def _lock_steps(self) -> Generator[tuple[Step, Any], Any, str | None]:
        """The whole of a ``lock()``, independent of the kind of I/O: yields the steps
        ``(CONNECT, None)`` (send back the channel), ``(SEND, bytes)``, ``(RECEIVE,
        deadline)`` (send back the message) and ``(PAUSE, seconds)``; the driver throws
        the I/O's errors in."""
        request = self._lock_request()
        deadline: float | None = None
        attempt = 1
        stopping = 0  # answers "the daemon is stopping" so far
        self._answered = False
        while True:
            channel = yield CONNECT, None
            if deadline is None:
                deadline = self._deadline()
            try:
                yield SEND, request
                answer = first_answer((yield RECEIVE, deadline))
            except FlomError as exc:
                self._disconnect(graceful=False)
                if not self._may_retry(exc, attempt):
                    raise
                attempt += 1
                continue
            except BaseException:
                self._disconnect()
                raise
            if answer.rc != _rc.DAEMON_STOPPING:
                break
            # The daemon waits for its holders' commands to end: this request waits for
            # it to go (as for a held lock: within the timeout), then starts a new one.
            self._disconnect(graceful=False)
            if stopping == 0:
                self._waits(channel, answer)
            if self._settings.resource_timeout == 0:
                busy = LockBusy(self._stopping_text("this request may not wait (-o 0)"))
                raise self._about_holders(busy)
            pause = _STOPPING_PAUSES_S[min(stopping, len(_STOPPING_PAUSES_S) - 1)]
            stopping += 1
            if deadline is not None and time.monotonic() + pause >= deadline:
                raise LockTimeout(self._stopping_text("the timeout expired"))
            yield PAUSE, pause
        self._answered = True
        if answer.rc == _rc.NOT_ALLOWED:
            error = self._not_allowed(channel)  # while the connection says who we are
            self._disconnect(graceful=False)
            raise error
        self._check_answer(answer, channel.tls, channel.peer_common_name)
        if waiting(answer):
            self._waits(channel, answer)
        try:
            while waiting(answer):
                answer = later_answer((yield RECEIVE, deadline))
            return self._locked(granted(answer, self._refusal_text))
        except LockUnavailable as exc:
            self._disconnect()
            raise self._about_holders(exc) from None
        except ProtocolError as exc:
            self._disconnect(graceful=False)
            if exc.rc != _rc.RECV_ERROR or exc.refused:
                raise
            raise ProtocolError(
                f"the daemon on {self._daemon_address()} closed the connection while "
                f"'{self._settings.resource_name}' waited (it stopped or died): nothing "
                "is held; lock again (a new daemon is started on demand)",
                rc=exc.rc,
            ) from exc
        except BaseException:
            self._disconnect()  # the daemon forgets the request with the connection
            raise

    def _not_allowed(self, channel: Any) -> NotAllowed:
        from .notallowed import refusal

        return NotAllowed(
            refusal(f"lock '{self._settings.resource_name}'", channel, self._settings)
        )

    def _stopping_text(self, why: str) -> str:
        return (
            f"'{self._settings.resource_name}' was not granted: the daemon is stopping and "
            f"waits for its holders' commands to end; {why} (try again once it has gone)"
        )

    def _deadline(self) -> float | None:
        """When the lock request times out (``time.monotonic()``; None: never).  The
        timeout counts from the request: starting a daemon is not waiting."""
        timeout = self._settings.resource_timeout
        return time.monotonic() + timeout / 1000 if timeout > 0 else None

    @staticmethod
    def _may_retry(exc: FlomError, attempt: int) -> bool:
        """The daemon went away before answering (it was leaving as we came, or closed a
        kept connection): may the request start over on a new connection?"""
        retry = exc.rc in (_rc.RECV_ERROR, _rc.SEND_ERROR) and not exc.refused
        return retry and attempt < _CONNECT_ATTEMPTS

    def _timed_out(self) -> LockTimeout:
        """The :class:`LockTimeout` of this handle's request, said plainly."""
        ms = self._settings.resource_timeout
        name = self._settings.resource_name
        if not self._answered:
            error = LockTimeout(
                f"'{name}' was not granted within {ms / 1000:g} s: the daemon did not "
                "answer the request at all (it may be out of descriptors, see its log "
                "for FLM019E, or overloaded)"
            )
            error.unanswered = True
            return error
        return self._about_holders(
            LockTimeout(
                f"'{name}' was not granted within {ms / 1000:g} s (timeout; someone else holds it)"
            )
        )

    def _about_holders(self, error: _Unavailable) -> _Unavailable:
        """``error`` with its resource, and who holds it when asked (``holders``)."""
        settings = self._settings.copy()
        error.resource = settings.resource_name
        error._ask_holders = lambda: holders_of(settings)
        error._say_holders = _say_holders
        error._query_in_str = self._CALLER == "thread"  # asyncio: never block the loop
        return error

    def _refusal_text(self, rc: int) -> str | None:
        """What the daemon's refusal ``rc`` of this request means, naming the resource."""
        settings = self._settings
        name = settings.resource_name
        if rc == _rc.LOCK_BUSY:
            return f"'{name}' is held by someone else and this request may not wait (timeout 0)"
        if rc == _rc.LOCK_CANT_WAIT:
            return (
                f"'{name}' does not exist and this request may neither create it "
                "(create=False) nor wait for someone who may (timeout 0)"
            )
        if rc == _rc.LOCK_IMPOSSIBLE:
            asked = ""
            if resource_type(name) == ResourceType.NUMERIC:
                asked = f" ({settings.resource_quantity} units asked for)"
            return f"'{name}' can never grant this request{asked}: it has fewer units or holders"
        if rc == _rc.INVALID_RESOURCE_NAME:
            return f"the daemon refused '{name}' as an invalid resource name"
        return None

    def _check_answer(self, answer: codec.LockAnswer, tls: bool, peer_cn: str | None) -> None:
        """Level 3: the unique id the daemon announced must be its certificate's CN."""
        if not (self._settings.tls_check_peer_id and tls):
            return
        from .tls.identity import mismatch

        why = mismatch(answer.peer_id or "", peer_cn)
        if why is not None:
            self._disconnect(graceful=False)  # whatever it granted is released
            raise FlomError(
                f"FLM013E the daemon failed the peer-id check: {why} (its certificate's CN "
                "must be exactly what 'flom --unique-id' prints on the daemon's host) "
                "[TLS-PEER-ID-MISMATCH]",
                rc=_rc.UNIQUE_ID_DOES_NOT_MATCH,
            )

    def _locked(self, granted: codec.LockAnswer) -> str | None:
        """Record a granted lock; return its element."""
        self.state = HandleState.LOCKED
        self._locked_name = self._settings.resource_name
        self.locked_element = granted.element
        self.lock_generation = granted.generation
        self._lost_at = None
        self._hold()
        if self.on_lost is not None or self.cancel_on_loss:
            self._watch_loss()
        log = logs.logger(logs.DEBUG)
        if log is not None:
            log.debug(
                "granted '%s'%s%s, generation %s",
                self._locked_name,
                f" ({self._settings.lock_mode.name})"
                if uses_lock_mode(resource_type(self._locked_name) or "")
                else "",
                f", element '{granted.element}'" if granted.element is not None else "",
                granted.generation,
            )
        return granted.element

    def _unlock_request(self, rollback: bool) -> bytes:
        """The encoded unlock request; the handle counts as unlocked from here."""
        if self.state != HandleState.LOCKED or self._channel is None:
            raise InvalidSequence(f"unlock() on a handle in state {self.state.name}")
        # A send on a UNIX socket fails once the daemon is gone (LockLost then); over
        # TCP it may not: look at the connection first.
        if self._lost_at is not None or not self._channel.local:  # type: ignore[attr-defined]
            self._raise_if_lost()
        assert self._locked_name is not None and self._encoded is not None
        self._unhold()
        self.locked_element = None
        self.lock_generation = None
        self.state = HandleState.CONNECTED
        if rollback:
            return encode_message(codec.UnlockRequest(self._locked_name, True))
        return self._encoded[1]

    def _encode_requests(self) -> tuple[bytes, bytes]:
        settings = self._settings
        self._check_name(settings.resource_name)  # the kind may have changed since
        kind = resource_type(settings.resource_name)
        request = codec.LockRequest(
            peer_id=peer_id(),
            name=settings.resource_name,
            wait=settings.resource_timeout != 0,
            create=settings.resource_create,
            lifespan=settings.resource_idle_lifespan,
            mode=int(settings.lock_mode) if kind and uses_lock_mode(kind) else None,
            quantity=settings.resource_quantity if kind == ResourceType.NUMERIC else None,
        )
        unlock = codec.UnlockRequest(settings.resource_name, False)
        encoded = codec.encode(request)
        if len(encoded) > codec.MAX_MESSAGE_BYTES:  # the daemon would close the connection
            name = settings.resource_name
            overhead = len(encoded) - 4 * -(-len(name.encode()) // 3)  # the name is base64

            def room(cap: int) -> int:
                return (cap - overhead) // 4 * 3

            raise InvalidResourceName(
                f"the resource name '{name[:40]}...' is too long ({len(name)} characters): "
                f"a daemon takes names of at most {room(codec.MAX_MESSAGE_BYTES)} "
                f"(FLoM's C daemon: {room(511)}); use a shorter name, e.g. a hash of this one"
            )
        return encoded, codec.encode(unlock)


def first_answer(message: codec.Message) -> codec.LockAnswer:
    """The daemon's first answer to a lock request (raises :class:`ProtocolError`)."""
    if not isinstance(message, codec.LockAnswer) or message.step != codec.STEP_FIRST_ANSWER:
        raise ProtocolError(f"expected a lock answer (step 16), got {message!r}")
    return message


def later_answer(message: codec.Message) -> codec.LockAnswer:
    """A later answer to a waiting lock request (raises :class:`ProtocolError`)."""
    if not isinstance(message, codec.LockAnswer) or message.step not in (
        codec.STEP_FIRST_ANSWER,
        codec.STEP_LATER_ANSWER,
    ):
        raise ProtocolError(f"expected a lock answer, got {message!r}")
    return message


def waiting(answer: codec.LockAnswer) -> bool:
    """Does ``answer`` say the request waits (queued, or the resource incubates)?"""
    return answer.rc in (_rc.LOCK_ENQUEUED, _rc.LOCK_WAIT_RESOURCE)


def granted(
    answer: codec.LockAnswer, explain: Callable[[int], str | None] = lambda rc: None
) -> codec.LockAnswer:
    """``answer`` when it grants the lock; raise its refusal otherwise (its message by
    ``explain(rc)``, or FLoM's text for the rc).

    Any rc but OK is the final word, even after a wait (FLoM's client would take a late
    refusal for a grant, quirk Q25)."""
    if answer.rc == _rc.OK:
        return answer
    if answer.rc == _rc.CONNECTION_REFUSED:
        error = ConnectionFailed(NO_ROOM, rc=_rc.CONNECTION_REFUSED)
        error.refused = True
        raise error
    raise _REFUSALS.get(answer.rc, FlomError)(explain(answer.rc), rc=answer.rc)


def _say_holders(holders: list[HolderStatus]) -> str:
    """``peer pid 4250 (EX, for 9.1s)``...: who holds a resource, for messages."""
    from .status import describe_holders

    return describe_holders(holders)


def holders_of(settings: Settings) -> list[HolderStatus] | None:
    """Who holds the resource ``settings`` name, asked of the daemon in one status query
    (:data:`HOLDERS_TIMEOUT_S` at most); None when it does not answer (FLoM's C daemon)."""
    from .status import query_status

    try:
        document = query_status(settings, settings.resource_name, HOLDERS_TIMEOUT_S)
    except FlomError:
        return None
    return [holder for res in document["resources"] for holder in res["holders"]]


_NOT_SENT = (
    "a pyflom {what} cannot be pickled (sent to another process): its lock lives with "
    "this process's connection to the daemon. Make the lock in the other process, with "
    "the same arguments"
)
_RELEASED_INSIDE = (
    "the lock taken by the with statement was released inside its block (unlock() or "
    "close()): let the with statement release it, or lock and unlock by hand without it"
)


class Handle(HandleCore):
    """One lock at a time on one resource, with libflom's properties.

    Properties may be changed between locks (not while locked).  ``lock()`` returns the
    locked element (set, sequence and timestamp resources) or None.  Errors raise
    :class:`pyflom.FlomError` subclasses carrying FLoM's reason code.

    ``keep_connection=True`` (pyflom extension) keeps the connection to the daemon
    between locks, so a lock/unlock pair costs two messages instead of a connection.
    """

    _channel: Channel | None

    def _init_io(self) -> None:
        self._busy = _thread.allocate_lock()  # held while a call works on the handle
        self._channel = None
        self._pid = 0  # the process that opened the connection (a forked child did not)
        self._watch: LossWatch | None = None  # watches the held lock (on_lost)
        # Called once when a lock request has to wait (queued or incubated), with the
        # waiting connection and the daemon's answer (``flom -V`` says what it waits for).
        self.on_wait: Callable[[Channel, codec.LockAnswer], None] | None = None

    def _in_call(self) -> bool:
        return self._busy.locked()

    def lock(self) -> str | None:
        """Lock the resource; return the locked element (or None).

        Raises :class:`LockBusy`, :class:`LockTimeout`, :class:`LockCantWait`,
        :class:`LockImpossible`, :class:`InvalidResourceName`,
        :class:`ConnectionFailed` or another :class:`FlomError`.
        """
        if not self._busy.acquire(False):
            raise self._in_use("lock")
        try:
            return self._lock()
        except LockTimeout:
            raise self._timed_out() from None
        finally:
            self._busy.release()

    def _lock(self) -> str | None:
        run = StepRun(self._lock_steps())
        while (step := run.next()) is not None:
            try:
                run.reply = self._perform(*step)
            except BaseException as exc:
                run.error = exc
        return run.result

    def _perform(self, step: Step, arg: Any) -> Any:
        if step is CONNECT:
            return self._connect()
        if step is PAUSE:
            return time.sleep(arg)
        assert self._channel is not None
        return (self._channel.send_bytes if step is SEND else self._channel.receive)(arg)

    def _waits(self, channel: Any, answer: codec.LockAnswer) -> None:
        if self.on_wait is not None:
            self.on_wait(channel, answer)
        if logs.logger(logs.INFO) is not None:
            who = None
            if answer.rc != _rc.DAEMON_STOPPING:
                from .status import wait_report

                who = wait_report(self._settings, channel)
            self._log_wait(answer, who)

    def _watch_loss(self) -> None:
        from .losswatch import LossWatch

        assert self._channel is not None
        self._watch = LossWatch(
            self._channel.fileno(), self, f"pyflom-loss-watch {self._locked_name}"
        )

    def _lost_seen(self) -> None:
        """The watch saw the lock's connection end (in its thread)."""
        callback = self.on_lost
        if self._note_lost() and callback is not None:
            callback(self._lost_error())

    def _stop_watch(self) -> None:
        watch = self._watch
        if watch is not None:
            self._watch = None
            watch.stop()

    def unlock(self, rollback: bool = False) -> None:
        """Release the lock (``rollback=True``: give a transactional sequence value back)."""
        if not self._busy.acquire(False):
            raise self._in_use("unlock")
        try:
            self._unlock(rollback)
        finally:
            self._busy.release()

    def _unlock(self, rollback: bool) -> None:
        if self._channel is not None and self._pid != os.getpid():
            raise self._forked_unlock()
        request = self._unlock_request(rollback)
        assert self._channel is not None
        try:
            self._channel.send_bytes(request)
        except FlomError as exc:
            raise self._lost_on_unlock(exc) from exc
        finally:
            if not self.keep_connection:
                self._disconnect()

    def _forked_unlock(self) -> InvalidSequence:
        """An unlock in a process forked while the handle was connected: the parent's
        connection (and lock) is left alone; this process drops its copy of it."""
        parent, name = self._pid, self._locked_name or self.resource_name
        self._disconnect()
        return InvalidSequence(
            f"the lock on '{name}' belongs to process {parent}, from which this process "
            f"(pid {os.getpid()}) was forked: only that process may release it, so this "
            "one only closed its copy of the connection. Take locks in the child itself "
            "(after the fork), or leave the with block in the parent only"
        )

    @property
    def connection(self) -> Channel | None:
        """The connection to the daemon (while connected): the lock lives with it."""
        return self._channel

    def close(self) -> None:
        """Unlock if locked, then disconnect; the handle cannot be used afterwards.  In a
        process forked while the handle held its lock, only disconnect (the parent holds it)."""
        if not self._busy.acquire(False):
            raise self._in_use("close")
        try:
            # A forked child closes its copy of the connection only (the lock is its parent's).
            if self.state == HandleState.LOCKED and self._pid == os.getpid():
                self._unlock(False)
        finally:
            self._disconnect()
            self.state = HandleState.CLEANED
            self._busy.release()

    def __enter__(self) -> Handle:
        """Lock (as ``threading.Lock``); the end of the block unlocks, with rollback
        when it raised.  The handle stays usable (``close()`` it, or use
        ``contextlib.closing(handle)``, to disconnect for good)."""
        self.lock()
        self._in_with = True
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._in_with = False
        if self.state != HandleState.LOCKED:
            raise InvalidSequence(_RELEASED_INSIDE)
        self.unlock(rollback=exc_type is not None)

    def _connect(self) -> Channel:
        if self._channel is None:
            self._channel = open_channel(
                self._settings, may_start_daemon=self._settings.daemon_lifespan != 0
            )
            self._pid = os.getpid()
            self.state = HandleState.CONNECTED
            self._log_connect(self._channel)
        return self._channel

    def _disconnect(self, graceful: bool = True) -> None:
        if self._channel is not None:
            self._stop_watch()
            self._unhold()
            channel, self._channel = self._channel, None
            # A forked child shares the socket: a half-close would end the parent's too.
            channel.close(graceful and self._pid == os.getpid())
            self.state = HandleState.DISCONNECTED


class LockArguments:
    """The arguments of :class:`lock` and :class:`pyflom.aio.lock`: their handle."""

    handle: HandleCore
    _handle_class: Callable[..., Any] = Handle

    def __init__(
        self,
        resource: str = RESERVED_NAME,
        mode: LockMode | ModeName | None = None,
        *,
        kind: ResourceKind | None = None,
        timeout: Seconds | None = None,
        quantity: int = 1,
        create: bool = True,
        idle_lifespan: Seconds = 0,
        socket_name: str | None = None,
        daemon_lifespan: Seconds | None = None,
        start_daemon: bool = True,
        settings: Settings | None = None,
        on_lost: LossCallback | None = None,
    ) -> None:
        self.handle = self._handle_class(
            resource,
            kind=kind,
            lock_mode=LockMode.EX if mode is None else mode,
            timeout=timeout,
            quantity=quantity,
            create=create,
            idle_lifespan=idle_lifespan,
            socket_name=socket_name,
            daemon_lifespan=daemon_lifespan,
            start_daemon=start_daemon,
            settings=settings,
        )
        self.handle.on_lost = on_lost
        self._guard = _thread.allocate_lock()
        self._idle: list[Any] = [self.handle]  # handles free for the next holder
        self._taken: dict[object, Any] = {}  # holder (thread, task) -> its handle
        self._pid = os.getpid()  # the process whose blocks _taken counts

    def _forked(self) -> None:
        """In a process forked from the one that made the object: its parent's blocks
        (and their handles, connections and guard) are not this process's."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._guard = _thread.allocate_lock()  # another thread may have held it
            self._idle, self._taken = [], {}

    def __getstate__(self) -> object:
        raise TypeError(_NOT_SENT.format(what=f"lock on '{self.handle.resource_name}'"))

    @staticmethod
    def _holder() -> object:
        """Who enters the block: this thread (asyncio: this task)."""
        return _thread.get_ident()

    def _take(self) -> Any:
        """A handle of the entering thread (task) alone; refuses a nested ``with``."""
        self._forked()
        holder = self._holder()
        with self._guard:
            inner = self._taken.get(holder)
            if inner is not None:
                raise InvalidSequence(self._nested(inner))
            handle = self._idle.pop() if self._idle else self.handle._copy()
            self._taken[holder] = handle
        return handle

    def _give_back(self, holder: object = None) -> Any:
        """The handle of the leaving thread (task), free again for the next one."""
        with self._guard:
            handle = self._taken.pop(self._holder() if holder is None else holder)
            self._idle.append(handle)
        return handle

    def _leaving(self) -> object:
        """Whose block ends: this thread (task), or, when it did not enter one (an
        ``ExitStack`` handed over to it), the only one that holds the lock through
        this object (as ``threading.Lock`` may be released by another thread)."""
        holder = self._holder()
        with self._guard:
            if holder in self._taken:
                return holder
            holding = [
                key
                for key, handle in self._taken.items()
                if handle.state == HandleState.LOCKED and not handle._in_call()
            ]
        if len(holding) == 1:
            return holding[0]
        who = self.handle._CALLER
        raise InvalidSequence(
            f"a 'with' block on the lock object of '{self.handle.resource_name}' ends in a "
            f"{who} that did not enter it, and {len(holding)} {who}s hold the lock through "
            f"this object: nothing was released. End each block in the {who} that entered it"
        )

    def _nested(self, outer: HandleCore) -> str:
        site = outer._holding.site if outer._holding is not None else None
        who = outer._CALLER
        return (
            f"'with' on a lock object that this {who} holds already"
            f"{f' (taken at {site})' if site else ''}: it would wait for itself. A lock "
            f"object is held by one block per {who} at a time; nest another "
            "pyflom.lock(...) if a second lock is really meant"
        )


class lock(LockArguments):
    """Hold a lock for the duration of a ``with`` block; ``as`` gives the locked
    :class:`Handle` (its ``generation``, the fencing token, and its ``locked_element``
    for set, sequence and timestamp resources).

    ``resource`` is a simple (``'printer'``) or hierarchical (``'/orders/123'``) name,
    locked in ``mode`` (default EX); another kind of resource is asked for by ``kind=``
    or by :func:`semaphore`, :func:`sequence`, :func:`one_of` and :func:`timestamp`.
    Durations are in seconds: ``timeout=None`` (default) waits forever, ``0`` does not
    wait.  A daemon is started when none answers, as ``flom`` does (it lives
    ``daemon_lifespan`` seconds without clients, default 5; ``start_daemon=False``:
    never start one).  An exception inside the block unlocks with rollback, so a
    transactional sequence value is given back.  ``settings`` gives everything else
    (e.g. ``Settings(unicast_address="10.0.0.1")`` for a daemon on the network).

    Like ``threading.Lock``, one object serves many ``with`` blocks, one after the
    other and in several threads at once (each thread locks through a handle of its
    own, so they take turns through the daemon); a ``with`` on the object nested in
    another one of the same thread raises :class:`InvalidSequence` at once.
    ``on_lost(error)`` is called (from a watching thread) if the connection that holds
    the lock ends while it is held; the end of the block then raises :class:`LockLost`.
    """

    handle: Handle

    def __enter__(self) -> Handle:
        handle = self._take()
        try:
            handle.lock()
        except BaseException:
            self._give_back()
            raise
        return handle  # type: ignore[no-any-return]

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        holder = self._leaving()
        handle = self._taken[holder]
        try:
            if handle.state != HandleState.LOCKED:
                raise InvalidSequence(_RELEASED_INSIDE)
            handle.unlock(rollback=exc_type is not None)
        finally:
            try:
                handle._disconnect()
            finally:
                self._give_back(holder)


def _part(name: str, what: str) -> str:
    """``name`` when it is a simple name (a part of a composed name), else raise."""
    if resource_type(name) != ResourceType.SIMPLE or name == RESERVED_NAME:
        fix = simple_spelling(name)
        raise InvalidResourceName(
            f"{what} must be ASCII letters and digits starting with a letter, not {name!r}"
            + (f" (write '{fix}')" if fix and fix != RESERVED_NAME else "")
        )
    return name


def _count(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a whole number >= 1, not {value!r}")
    return value


def semaphore_name(name: str, units: int) -> str:
    """``name[units]``: the numeric resource of :func:`semaphore`."""
    return f"{_part(name, 'the semaphore name')}[{_count(units, 'units')}]"


def sequence_name(name: str, holders: int, transactional: bool) -> str:
    """``_s_name[holders]`` (``_S_`` when transactional): the resource of :func:`sequence`."""
    prefix = "_S_" if transactional else "_s_"
    return f"{prefix}{_part(name, 'the sequence name')}[{_count(holders, 'holders')}]"


def set_name(elements: tuple[str, ...]) -> str:
    """``a.b.c``: the set resource of :func:`one_of`."""
    if len(elements) < 2:
        raise ValueError(
            f"one_of() needs two elements or more, not {len(elements)} (one resource: "
            "pyflom.lock(name))"
        )
    repeated = sorted({e for e in elements if elements.count(e) > 1})
    if repeated:
        raise ValueError(
            f"one_of() got {', '.join(map(repr, repeated))} more than once: each element is "
            "one holder's place, give each once"
        )
    return ".".join(_part(element, "an element of one_of()") for element in elements)


def timestamp_name(format: str, holders: int) -> str:
    """``_t_FORMAT[holders]``: the timestamp resource of :func:`timestamp`."""
    name = f"_t_{format}[{_count(holders, 'holders')}]"
    if resource_type(name) != ResourceType.TIMESTAMP:
        raise InvalidResourceName(
            f"{format!r} is not a timestamp format a daemon takes: it starts with a letter, "
            "'%' or '#', and has only letters, digits and the characters % # . : \\ "
            "(e.g. '%H:%M:%S#fff', '%Y%m%d'; no spaces, '-' or '/')"
        )
    return name


def semaphore(name: str, units: int, quantity: int = 1, **options: Unpack[LockOptions]) -> lock:
    """Hold ``quantity`` of the ``units`` units of the numeric resource ``name[units]``
    (a counting semaphore): ``with pyflom.semaphore("pool", 3): ...`` lets three holders
    in at a time.  ``options``: those of :class:`lock`."""
    return lock(semaphore_name(name, units), kind="numeric", quantity=quantity, **options)


def sequence(
    name: str, holders: int = 1, *, transactional: bool = False, **options: Unpack[LockOptions]
) -> lock:
    """Take the next number of the sequence resource ``_s_name[holders]``: the handle's
    ``locked_element`` is ``'1'``, then ``'2'``... (at most ``holders`` holders at a
    time).  ``transactional=True`` (``_S_``): a number released by an exception in the
    block is handed out again.  The count restarts when the resource expires: give it
    an ``idle_lifespan`` (seconds), or a daemon with a state file."""
    resource = sequence_name(name, holders, transactional)
    return lock(resource, kind="sequence", **options)


def one_of(*elements: str, **options: Unpack[LockOptions]) -> lock:
    """Hold ONE of ``elements`` (a set resource ``a.b.c``), whichever is free: the
    handle's ``locked_element`` says which."""
    return lock(set_name(elements), kind="set", **options)


def timestamp(format: str, holders: int = 1, **options: Unpack[LockOptions]) -> lock:
    """Take a unique timestamp of the timestamp resource ``_t_FORMAT[holders]``: the
    handle's ``locked_element`` is the local time in ``format`` (``strftime``, plus
    ``#f``... ``#ffffff`` for fractions of a second), never the same twice."""
    return lock(timestamp_name(format, holders), kind="timestamp", **options)
