"""The asyncio client library: :class:`Handle` and :func:`lock`, as in :mod:`pyflom.client`,
with ``await`` where the blocking ones wait.

Example::

    import pyflom.aio

    async with pyflom.aio.lock("printer", mode="EX", timeout=2.0):
        ...  # only one process (or task) at a time gets here

The same story as the blocking library: the same arguments (durations in seconds,
``timeout=None`` waits forever, ``0`` does not wait), the same properties, exceptions
and fencing token (``lock_generation``); a daemon is started when nobody answers
(``start_daemon=False``: never).  Everything runs on the event loop, without threads:
a task waiting for a lock costs the loop nothing.  Cancelling a task waiting in
``await handle.lock()`` (``task.cancel()``, ``asyncio.wait_for``, ``asyncio.timeout``)
closes the request's connection at once, so the daemon withdraws the request and grants
the next waiter; the handle stays usable (state ``DISCONNECTED``).

A handle serves one task at a time: a call made while another task is inside
``lock()``, ``unlock()`` or ``close()`` of the same handle raises
:class:`~pyflom.errors.InvalidSequence` at once (give each task its own handle).

Works on asyncio's own loop and on uvloop, with every transport of the blocking
library: UNIX socket, TCP, multicast discovery (without ``-v``'s chatter) and TLS.
Host names (not numeric addresses) are resolved by the loop's ``getaddrinfo``, which
runs in the loop's default executor.
"""

from __future__ import annotations

import asyncio
import os
import socket

from . import codec, discovery, netaddr, spawn, trace
from . import rc as _rc
from .client import (
    _RELEASED_INSIDE,
    CONNECT,
    PAUSE,
    SEND,
    HandleCore,
    HandleState,
    LockArguments,
    Step,
    StepRun,
    semaphore_name,
    sequence_name,
    set_name,
    timestamp_name,
)
from .errors import FlomError, InvalidSequence, LockLost, LockTimeout
from .lockmodes import LockMode
from .names import RESERVED_NAME
from .settings import Settings
from .transport import (
    DaemonStarts,
    Frames,
    connection_ended,
    peer_pid_of,
    time_left,
    tls_files,
    trace_sending,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Unpack

    from .tls.files import TlsFiles
    from .typed import AsyncLockOptions, LockKeywords, ModeName

__all__ = [
    "AsyncChannel",
    "Handle",
    "HandleState",
    "lock",
    "one_of",
    "open_channel",
    "semaphore",
    "sequence",
    "timestamp",
]

_READ_BYTES = 4096


class AsyncChannel(Frames):
    """One asyncio connection to a daemon, sending and receiving whole FLoM messages."""

    tls = False
    peer_common_name: str | None = None  # CN of the daemon's certificate (TLS)

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        files: TlsFiles | None = None,
    ) -> None:
        super().__init__()
        self.reader = reader
        self.writer = writer
        self.files = files
        if files is not None:
            from .tls import identity

            self.tls = True
            self.peer_common_name = identity.common_name(writer.get_extra_info("peercert"))

    def describe_failure(self, exc: BaseException | None) -> str | None:
        """A named explanation of an I/O failure on a TLS connection."""
        if self.files is None:
            return None
        from .tls.client import describe_failure

        return describe_failure(exc, self.files, self.writer.get_extra_info("ssl_object"))

    async def send_bytes(self, payload: bytes) -> None:
        """Send an already encoded message; raises :class:`FlomError` (rc -130) when the
        daemon is gone."""
        trace_sending(payload)
        try:
            self.writer.write(payload)
            await self.writer.drain()
        except OSError as exc:
            raise self._send_failed(exc) from exc

    async def receive(self, deadline: float | None = None) -> codec.Message:
        """Wait for the next message until ``deadline`` (``time.monotonic()``, None:
        forever); raises as :meth:`pyflom.transport.Channel.receive` does."""
        while not self._ready:
            remaining = time_left(deadline)
            try:
                async with asyncio.timeout(remaining):
                    data = await self.reader.read(_READ_BYTES)
            except OSError as exc:  # TimeoutError: the deadline
                raise self._receive_failed(exc) from exc
            self._received(data)
        return self._next_message()

    def peer_pid(self) -> int | None:
        """The daemon's process id, when the connection is a local (UNIX) socket."""
        return peer_pid_of(self.writer.get_extra_info("socket"))

    def peer_gone(self) -> bool:
        """Without waiting: has the connection ended (the daemon closed or reset it)?"""
        reader = self.reader
        if reader.at_eof() or reader.exception() is not None or self.writer.is_closing():
            return True
        sock = self.writer.get_extra_info("socket")
        return sock is not None and connection_ended(sock.fileno())

    def drop(self, graceful: bool = True) -> None:
        """Disconnect without waiting: gracefully (FIN, or TLS close_notify, after what is
        buffered) or at once."""
        if graceful:
            self.writer.close()
        else:
            self.writer.transport.abort()

    async def close(self, graceful: bool = True, timeout: float = 2.0) -> None:
        """Disconnect.  Gracefully: half-close and wait for the daemon to close too, so
        everything sent before (an unlock) has been processed when this returns."""
        if not graceful:
            self.drop(False)
            return
        writer = self.writer
        try:
            async with asyncio.timeout(timeout):
                if writer.can_write_eof():
                    writer.write_eof()
                    while await self.reader.read(_READ_BYTES):
                        pass
                writer.close()  # TLS: close_notify, then the daemon's
                await writer.wait_closed()
        except Exception:  # best effort: the daemon may be gone already
            pass
        finally:
            writer.transport.abort()  # a no-op once closed; at once when cancelled


async def _readable(fd: int, timeout: float | None) -> bool:
    """Wait until ``fd`` is readable (False: ``timeout`` seconds passed first)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        async with asyncio.timeout(timeout):
            await ready
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)


async def _read_fd(fd: int, size: int) -> bytes:
    """Up to ``size`` bytes from the non-blocking pipe ``fd``, until its end or
    :data:`pyflom.spawn.READY_TIMEOUT_S` of silence."""
    data = b""
    while len(data) < size:
        try:
            chunk = os.read(fd, size - len(data))
        except BlockingIOError:
            if not await _readable(fd, spawn.READY_TIMEOUT_S):
                break
            continue
        if not chunk:
            break
        data += chunk
    return data


async def _reap(pid: int) -> None:
    """Wait for child ``pid`` to exit and reap it (a pidfd on the loop: no thread)."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = -1
    try:
        if pidfd >= 0:
            await _readable(pidfd, None)
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            await asyncio.sleep(0.002)  # no pidfd (old kernel): poll
    except ChildProcessError:
        pass  # reaped elsewhere
    finally:
        if pidfd >= 0:
            os.close(pidfd)


async def start_daemon(settings: Settings) -> int:
    """:func:`pyflom.spawn.start_daemon` without blocking the loop: the same starter, the
    same status and the same :class:`FlomError` with the daemon's reason."""
    try:
        pid, read_end = spawn.spawn_daemon(settings)
    except OSError:
        return _rc.DAEMON_NOT_STARTED
    try:
        os.set_blocking(read_end, False)
        await _reap(pid)
        code = spawn.status_code(await _read_fd(read_end, 4))
        reason = await _read_fd(read_end, spawn.REASON_MAX) if spawn.may_explain(code) else b""
    except OSError:
        return _rc.DAEMON_NOT_STARTED
    finally:
        os.close(read_end)
    return spawn.start_result(code, reason)


async def _resolve(host: str, port: int, kind: int, interface: str | None) -> list[tuple[int, Any]]:
    """:func:`pyflom.netaddr.resolve` on the loop: numeric addresses at once, names by
    the loop's ``getaddrinfo``."""
    name, port, family, kind, proto, flags = netaddr.address_query(host, port, kind, interface)
    try:
        try:
            infos = socket.getaddrinfo(
                name, port, family, kind, proto, flags | socket.AI_NUMERICHOST
            )
        except socket.gaierror:
            infos = await asyncio.get_running_loop().getaddrinfo(
                name, port, family=family, type=kind, proto=proto, flags=flags
            )
    except (socket.gaierror, UnicodeError) as exc:
        raise netaddr.unresolved(host, exc) from None
    return netaddr.resolved(infos, interface)


async def _connect_first(
    candidates: list[tuple[int, Any]], keepalive_s: tuple[int, int, int] | None
) -> socket.socket:
    """:func:`pyflom.netaddr.connect_first` on the loop: the first address that accepts."""
    loop = asyncio.get_running_loop()
    error: OSError = ConnectionRefusedError(_rc.CONNECTION_REFUSED, "no address to connect to")
    for family, sockaddr in candidates:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, sockaddr)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        netaddr.tune_tcp(sock, keepalive_s)
        return sock
    raise error


class _Replies(asyncio.DatagramProtocol):
    """The datagrams a discovery socket receives, in a queue."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Any]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait((data, addr))


async def _first_reply(
    replies: _Replies, timeout_s: float
) -> tuple[codec.DiscoverAnswer, Any] | None:
    """The first well-formed discover answer within ``timeout_s`` (others are ignored)."""
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                raw, source = await replies.queue.get()
                answer = discovery.valid_reply(raw)
                if answer is not None:
                    return answer, source
    except TimeoutError:
        return None


async def discover(settings: Settings) -> list[tuple[int, Any]] | None:
    """:func:`pyflom.discovery.discover` on the loop (without the verbose chatter)."""
    loop = asyncio.get_running_loop()
    interface = settings.network_interface
    group = settings.multicast_address or ""
    for family, sockaddr in await _resolve(
        group, settings.multicast_port, socket.SOCK_DGRAM, interface
    ):
        sock = discovery.query_socket(family, settings)
        try:
            sock.setblocking(False)
            transport, replies = await loop.create_datagram_endpoint(_Replies, sock=sock)
        except BaseException:
            sock.close()
            raise
        try:
            for _ in range(settings.discovery_attempts):
                try:
                    sock.sendto(discovery.REQUEST, sockaddr)
                except OSError:
                    break  # this address is unusable (no route): try the next one
                reply = await _first_reply(replies, settings.discovery_timeout / 1000)
                if reply is None:
                    continue
                answer, source = reply
                found = discovery.source_candidates(answer, source)
                if found is None:
                    scope = discovery.scope_of(source)
                    resolved = await _resolve(
                        answer.address or "", answer.port, socket.SOCK_STREAM, interface
                    )
                    found = [(f, netaddr.with_scope(a, scope)) for f, a in resolved]
                return found
        finally:
            transport.close()
    return None


async def _connect_once(
    settings: Settings,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """One connection attempt by the settings' transport; ``OSError`` when nobody answers.

    Local: the UNIX socket.  Unicast (``-a``, also when ``-A`` is set too): TCP to the
    first address that accepts.  Multicast only: a discovery round, then TCP.
    """
    path = settings.effective_socket_name()
    if path is not None:
        return await asyncio.open_unix_connection(path)
    if settings.unicast_address:
        candidates = await _resolve(
            settings.unicast_address,
            settings.unicast_port,
            socket.SOCK_STREAM,
            settings.network_interface,
        )
    else:
        found = await discover(settings)
        if found is None:
            raise ConnectionRefusedError(_rc.CONNECTION_REFUSED, "no daemon answered the discovery")
        candidates = found
    sock = await _connect_first(candidates, settings.keepalive_s())
    return await asyncio.open_connection(sock=sock)


async def _secure(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, files: TlsFiles
) -> AsyncChannel:
    """The client handshake on a connected stream (no server name, as the blocking
    client: identity is the CA, plus the CN at level 3)."""
    import ssl

    from .tls.client import CLIENT_CONTEXTS, HANDSHAKE_TIMEOUT_S, handshake_failure

    try:
        async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
            await writer.start_tls(CLIENT_CONTEXTS.get(files))
    except (OSError, ValueError, TimeoutError, ssl.SSLError) as exc:
        writer.transport.abort()
        raise handshake_failure(exc, files, None) from exc
    except BaseException:
        writer.transport.abort()
        raise
    channel = AsyncChannel(reader, writer, files)
    if trace.enabled():
        from .tls import identity

        for line in identity.log_lines(writer.get_extra_info("peercert") or {}):
            trace.trace(line)
        ssl_object = writer.get_extra_info("ssl_object")
        trace.trace(f"TLS established: {identity.describe_session(ssl_object)}")
    return channel


async def open_channel(settings: Settings, *, may_start_daemon: bool) -> AsyncChannel:
    """:func:`pyflom.transport.open_channel` on the loop: connect to the daemon the
    settings name, starting one when allowed."""
    files = tls_files(settings)
    starts = DaemonStarts(settings, may_start_daemon)
    while True:
        try:
            reader, writer = await _connect_once(settings)
        except OSError as exc:
            starts.failed(exc)
        else:
            if files is None:
                channel = AsyncChannel(reader, writer)
            else:
                channel = await _secure(reader, writer, files)
            channel.daemon_started = starts.started_daemon
            return channel
        pause = starts.started(await start_daemon(settings))  # raises with the reason
        if pause:
            await asyncio.sleep(pause)


class Handle(HandleCore):
    """:class:`pyflom.Handle` for asyncio: the same constructor, properties and
    exceptions; ``await handle.lock()``, ``await handle.unlock()``, ``await
    handle.close()`` and ``async with handle``."""

    _channel: AsyncChannel | None
    _CALLER = "task"

    # ``cancel_on_loss``: cancel the task that holds the lock when its connection ends
    # (it then gets CancelledError where it waits; the end of ``async with`` raises
    # LockLost).

    def _init_io(self) -> None:
        self._busy = False  # a task is inside a call
        self._channel = None
        self._watch: asyncio.Task[None] | None = None  # watches the held lock
        self._cancelled: asyncio.Task[Any] | None = None  # the holder, cancelled for loss
        # Called once when a lock request has to wait (queued or incubated), with the
        # waiting connection and the daemon's answer.
        self.on_wait: Callable[[AsyncChannel, codec.LockAnswer], None] | None = None

    def _waits(self, channel: Any, answer: codec.LockAnswer) -> None:
        if self.on_wait is not None:
            self.on_wait(channel, answer)
        self._log_wait(answer, None)

    def _in_call(self) -> bool:
        return self._busy

    def _holder_task(self) -> object | None:
        return asyncio.current_task()

    # -- lost locks -----------------------------------------------------------------------
    def _watch_loss(self) -> None:
        assert self._channel is not None
        holder = asyncio.current_task()
        self._watch = asyncio.ensure_future(self._watch_connection(self._channel, holder))

    async def _watch_connection(
        self, channel: AsyncChannel, holder: asyncio.Task[Any] | None
    ) -> None:
        """Read the held lock's connection (nothing else reads it meanwhile) until it
        ends; then say so once, and cancel the holder when asked to."""
        try:
            while data := await channel.reader.read(_READ_BYTES):
                try:
                    channel._received(data)  # kept for the next receive()
                except FlomError:
                    pass
        except OSError:
            pass  # reset: the connection ended
        self._watch = None
        if not self._note_lost():
            return
        error = self._lost_error()
        if self.on_lost is not None:
            self.on_lost(error)
        if self.cancel_on_loss and holder is not None and not holder.done():
            self._cancelled = holder
            holder.cancel(str(error))

    def _stop_watch(self) -> asyncio.Task[None] | None:
        """Stop watching (the lock is released); the watcher, to await when the
        connection is read next."""
        watch = self._watch
        if watch is not None:
            self._watch = None
            watch.cancel()
        return watch

    def _uncancel(self) -> None:
        """LockLost is raised: a cancel of this task for the loss has done its work (the
        task learns LockLost instead of being cancelled)."""
        cancelled, self._cancelled = self._cancelled, None
        if cancelled is not None and cancelled is asyncio.current_task():
            cancelled.uncancel()

    def _enter(self, doing: str) -> None:
        if self._busy:
            raise self._in_use(doing)
        self._busy = True

    async def lock(self) -> str | None:
        """Lock the resource; return the locked element (or None).

        Raises what :meth:`pyflom.Handle.lock` raises.  Cancelled while waiting, it
        withdraws the request (its connection is closed) and leaves the handle usable.
        """
        self._enter("lock")
        try:
            return await self._lock()
        except LockLost:
            self._uncancel()
            raise
        except LockTimeout:
            raise self._timed_out() from None
        finally:
            self._busy = False

    async def _lock(self) -> str | None:
        run = StepRun(self._lock_steps())
        while (step := run.next()) is not None:
            try:
                run.reply = await self._perform(*step)
            except BaseException as exc:
                run.error = exc
        return run.result

    async def _perform(self, step: Step, arg: Any) -> Any:
        if step is CONNECT:
            return await self._connect()
        if step is PAUSE:
            return await asyncio.sleep(arg)
        assert self._channel is not None
        return await (self._channel.send_bytes if step is SEND else self._channel.receive)(arg)

    async def unlock(self, rollback: bool = False) -> None:
        """Release the lock (``rollback=True``: give a transactional sequence value back)."""
        self._enter("unlock")
        try:
            await self._unlock(rollback)
        finally:
            self._busy = False

    async def _unlock(self, rollback: bool) -> None:
        try:
            await self._send_unlock(rollback)
        except LockLost:
            self._uncancel()
            raise

    async def _send_unlock(self, rollback: bool) -> None:
        request = self._unlock_request(rollback)
        assert self._channel is not None
        watch = self._stop_watch()
        if watch is not None:
            await asyncio.wait([watch])  # it no longer reads the connection
        try:
            await self._channel.send_bytes(request)
        except FlomError as exc:
            raise self._lost_on_unlock(exc) from exc
        finally:
            if not self.keep_connection:
                await self._close_channel()

    @property
    def connection(self) -> AsyncChannel | None:
        """The connection to the daemon (while connected): the lock lives with it."""
        return self._channel

    async def close(self) -> None:
        """Unlock if locked, then disconnect; the handle cannot be used afterwards."""
        self._enter("close")
        try:
            if self.state == HandleState.LOCKED:
                await self._unlock(False)
        finally:
            try:
                await self._close_channel()
            finally:
                self.state = HandleState.CLEANED
                self._busy = False

    async def __aenter__(self) -> Handle:
        """Lock, as ``async with asyncio.Lock()``; the end of the block unlocks (with
        rollback when it raised).  The handle stays usable (``await close()`` it)."""
        await self.lock()
        self._in_with = True
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._in_with = False
        if self.state != HandleState.LOCKED:
            raise InvalidSequence(_RELEASED_INSIDE)
        await self.unlock(rollback=exc_type is not None)

    async def _connect(self) -> AsyncChannel:
        if self._channel is None:
            self._channel = await open_channel(
                self._settings, may_start_daemon=self._settings.daemon_lifespan != 0
            )
            self.state = HandleState.CONNECTED
            self._log_connect(self._channel)
        return self._channel

    async def _close_channel(self) -> None:
        if self._channel is not None:
            watch = self._stop_watch()
            if watch is not None:
                await asyncio.wait([watch])
            self._unhold()
            channel, self._channel = self._channel, None
            self.state = HandleState.DISCONNECTED
            await channel.close()

    def _disconnect(self, graceful: bool = True) -> None:
        if self._channel is not None:
            self._stop_watch()
            self._unhold()
            channel, self._channel = self._channel, None
            channel.drop(graceful)
            self.state = HandleState.DISCONNECTED


class lock(LockArguments):
    """Hold a lock for the duration of an ``async with`` block, as :func:`pyflom.lock`
    does for ``with`` (same arguments; ``as`` gives the locked :class:`Handle`; an
    exception inside the block unlocks with rollback).  A plain ``with`` is a type
    error, and a ``TypeError`` at run time.  One object serves many blocks, in several
    tasks at once (each through a handle of its own); a block nested in another one of
    the same task raises :class:`InvalidSequence` at once.

    ``cancel_on_loss=True``: when the connection that holds the lock ends while the
    block runs, the task is cancelled (``CancelledError`` where it waits) and the end of
    the block raises :class:`LockLost`; ``on_lost(error)`` is called on the loop."""

    handle: Handle
    _handle_class = Handle

    def __init__(
        self,
        resource: str = RESERVED_NAME,
        mode: LockMode | ModeName | None = None,
        *,
        cancel_on_loss: bool = False,
        **options: Unpack[LockKeywords],
    ) -> None:
        super().__init__(resource, mode, **options)
        self.handle.cancel_on_loss = cancel_on_loss

    @staticmethod
    def _holder() -> object:
        return asyncio.current_task()

    if not TYPE_CHECKING:  # type checkers see no __enter__: 'with' is refused by them

        def __enter__(self):
            raise TypeError("pyflom.aio.lock is used with 'async with', not 'with'")

        def __exit__(self, *exc_info):  # pragma: no cover - __enter__ raised
            return None

    async def __aenter__(self) -> Handle:
        handle = self._take()
        try:
            await handle.lock()
        except BaseException:
            self._give_back()
            raise
        return handle  # type: ignore[no-any-return]

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        holder = self._leaving()
        handle = self._taken[holder]
        try:
            if handle.state != HandleState.LOCKED:
                raise InvalidSequence(_RELEASED_INSIDE)
            await handle.unlock(rollback=exc_type is not None)
        finally:
            try:
                await handle._close_channel()
            finally:
                self._give_back(holder)


def semaphore(
    name: str, units: int, quantity: int = 1, **options: Unpack[AsyncLockOptions]
) -> lock:
    """:func:`pyflom.semaphore` for ``async with``."""
    return lock(semaphore_name(name, units), kind="numeric", quantity=quantity, **options)


def sequence(
    name: str, holders: int = 1, *, transactional: bool = False, **options: Unpack[AsyncLockOptions]
) -> lock:
    """:func:`pyflom.sequence` for ``async with``."""
    resource = sequence_name(name, holders, transactional)
    return lock(resource, kind="sequence", **options)


def one_of(*elements: str, **options: Unpack[AsyncLockOptions]) -> lock:
    """:func:`pyflom.one_of` for ``async with``."""
    return lock(set_name(elements), kind="set", **options)


def timestamp(format: str, holders: int = 1, **options: Unpack[AsyncLockOptions]) -> lock:
    """:func:`pyflom.timestamp` for ``async with``."""
    return lock(timestamp_name(format, holders), kind="timestamp", **options)
