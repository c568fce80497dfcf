"""Blocking, message-framed connections from a client to a daemon.

Imported by the CLI on every run: only ``socket``, ``time`` and the codec; discovery
(``-A``) is loaded only when it is used.
"""

from __future__ import annotations

import os
import select
import socket
import stat
import sys
import time

from . import codec, trace
from . import rc as _rc
from .errors import ConnectionFailed, FlomError, LockTimeout, ProtocolError
from .settings import Settings, default_socket_name, user_label

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .tls.files import TlsFiles

START_TIMEOUT_S = 15.0  # how long a client keeps trying to reach a daemon it starts
NOT_TLS_HINT = (
    "the daemon probably uses TLS (it ends a client without TLS this way): give this "
    "client the same --tls-* files as the daemon's other clients (--tls-certificate, "
    "--tls-private-key and --tls-ca-certificate, or TlsCertificate, TlsPrivateKey and "
    "TlsCaCertificate in the [TLS] group of a configuration file) [TLS-PEER-NOT-TLS]"
)
"""Why a daemon ends a plain client's connection before answering, and what to give."""


class Frames:
    """The receiving half shared by the blocking and the asyncio channels: bytes in,
    whole FLoM messages out."""

    daemon_started = False  # True when open_channel started the daemon it reached
    local = False  # a UNIX socket: a send fails once the daemon has gone (TCP: may not)

    def __init__(self) -> None:
        self._framer = codec.Framer()
        self._ready: list[bytes] = []
        self._answered = False  # has the daemon sent anything yet?

    def _feed(self, data: bytes) -> None:
        """Take bytes read from the daemon (raises :class:`ProtocolError` when garbled)."""
        try:
            self._ready.extend(self._framer.feed(data))
        except codec.CodecError as exc:
            raise ProtocolError(str(exc), rc=exc.rc) from exc

    def _received(self, data: bytes) -> None:
        """Take what a read returned (``b""``: the daemon closed the connection)."""
        if not data:
            raise self._failure(ProtocolError, None, self._closed_message(), _rc.RECV_ERROR)
        self._feed(data)

    def _receive_failed(self, exc: OSError) -> FlomError:
        if isinstance(exc, TimeoutError):
            return LockTimeout()
        message = f"receive failed: {exc}"
        if isinstance(exc, ConnectionResetError) and not self._answered:
            message = f"the daemon reset the connection without answering: {NOT_TLS_HINT}"
        return self._failure(ProtocolError, exc, message, _rc.RECV_ERROR)

    def _send_failed(self, exc: OSError) -> FlomError:
        return self._failure(FlomError, exc, f"send failed: {exc}", _rc.SEND_ERROR)

    def _closed_message(self) -> str:
        """What to say when the daemon closes the connection."""
        message = "the daemon closed the connection"
        if not self._answered:
            message += f" without answering: {NOT_TLS_HINT}"
        return message

    def describe_failure(self, exc: BaseException | None) -> str | None:
        """A named explanation of an I/O failure (``None``: the daemon closed the
        connection), when the channel has one to give (TLS)."""
        return None

    def _failure(
        self, kind: type[FlomError], exc: BaseException | None, message: str, rc: int
    ) -> FlomError:
        """The error for a failed send or receive, named by the channel when it can."""
        reason = self.describe_failure(exc)
        error = kind(reason or message, rc=rc)
        error.refused = reason is not None
        return error

    def _next_message(self) -> codec.Message:
        """Decode the first complete message (there must be one)."""
        frame = self._ready.pop(0)
        self._answered = True
        if trace.enabled():
            trace.trace(f"received message {frame!r}")
        try:
            return codec.decode(frame)
        except codec.CodecError as exc:
            raise ProtocolError(str(exc), rc=exc.rc) from exc


# poll() events that say a connection has ended: the peer closed it (POLLRDHUP, Linux)
# or it broke.  0 where POLLRDHUP is missing: :func:`connection_ended` peeks instead.
_RDHUP: int = getattr(select, "POLLRDHUP", 0)
CONNECTION_ENDED = _RDHUP | select.POLLHUP | select.POLLERR | select.POLLNVAL if _RDHUP else 0


def connection_ended(fd: int) -> bool:
    """Without waiting or reading anything: has the connection on socket ``fd`` ended
    (the peer closed or reset it)?  Works under TLS too: it looks at the socket itself,
    not at the records it carries."""
    if fd < 0:
        return True
    if CONNECTION_ENDED:
        poller = select.poll()
        poller.register(fd, CONNECTION_ENDED)
        return bool(poller.poll(0))
    sock = socket.socket(fileno=fd)  # borrowed: detached below, never closed here
    try:
        return not sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True
    finally:
        sock.detach()


def time_left(deadline: float | None) -> float | None:
    """Seconds until ``deadline`` (``time.monotonic()``; None: no deadline); raises
    :class:`LockTimeout` once it has passed."""
    if deadline is None:
        return None
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise LockTimeout()
    return remaining


def encode_message(message: codec.Message) -> bytes:
    """``message``'s bytes; raises :class:`FlomError` with the codec's rc."""
    try:
        return codec.encode(message)
    except codec.CodecError as exc:
        raise FlomError(str(exc), rc=exc.rc) from exc


def trace_sending(payload: bytes) -> None:
    """Trace a message about to be sent (when tracing is on)."""
    if trace.enabled():
        trace.trace(f"sending message {payload!r}")


class Channel(Frames):
    """One connection to a daemon, sending and receiving whole FLoM messages."""

    tls = False
    peer_common_name: str | None = None  # CN of the daemon's certificate (TLS)

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock
        self._recv_bytes = 4096
        self._timeout: float | None = None  # the socket's current timeout

    def send(self, message: codec.Message) -> None:
        """Send one message; raises :class:`FlomError` (rc -130) when the daemon is gone."""
        self.send_bytes(encode_message(message))

    def send_bytes(self, payload: bytes) -> None:
        """Send an already encoded message."""
        trace_sending(payload)
        try:
            self.sock.sendall(payload)
        except OSError as exc:
            raise self._send_failed(exc) from exc

    def receive(self, deadline: float | None = None) -> codec.Message:
        """Wait for the next message until ``deadline`` (``time.monotonic()``, None: forever).

        Raises :class:`LockTimeout` at the deadline, :class:`ProtocolError` with rc -126
        when the daemon closes or resets the connection, or the codec's rc for a
        malformed message.
        """
        while not self._ready:
            remaining = time_left(deadline)
            if remaining is not None or self._timeout is not None:
                self.sock.settimeout(remaining)
                self._timeout = remaining
            try:
                data = self.sock.recv(self._recv_bytes)
            except OSError as exc:  # TimeoutError: the deadline
                raise self._receive_failed(exc) from exc
            self._received(data)
        return self._next_message()

    def accept_large_messages(self, max_bytes: int) -> None:
        """Take messages up to ``max_bytes`` from now on (a status answer), read in big
        chunks; lock answers stay small."""
        self._framer = codec.Framer(max_bytes)
        self._recv_bytes = 1 << 18

    # What a non-blocking read raises when nothing has arrived (TLS adds its own).
    _NOTHING_YET: tuple[type[BaseException], ...] = (BlockingIOError, InterruptedError)

    def fileno(self) -> int:
        """The connection's descriptor."""
        return self.sock.fileno()

    def peer_pid(self) -> int | None:
        """The daemon's process id, when the connection is a local (UNIX) socket."""
        return peer_pid_of(self.sock)

    def peer_gone(self) -> bool:
        """Without waiting or reading: has the connection ended (the daemon closed or
        reset it)?  Safe from any thread while the connection is open."""
        return connection_ended(self.sock.fileno())

    def peer_closed(self) -> bool:
        """Without waiting: has the daemon closed or broken the connection?  A message
        that arrived meanwhile is kept for :meth:`receive`."""
        sock = self.sock
        sock.settimeout(0.0)
        try:
            data = sock.recv(4096)
        except self._NOTHING_YET:
            return False
        except OSError:
            return True
        finally:
            sock.settimeout(self._timeout)
        if not data:
            return True
        try:
            self._ready.extend(self._framer.feed(data))
        except codec.CodecError:
            return True  # garbled: the daemon will not be understood any more
        return False

    def close(self, graceful: bool = True, timeout: float = 2.0) -> None:
        """Disconnect.  Gracefully: half-close and wait for the daemon to close too, so
        everything sent before (an unlock) has been processed when this returns."""
        sock = self.sock
        try:
            if graceful:
                sock.shutdown(socket.SHUT_WR)
                sock.settimeout(timeout)
                while sock.recv(4096):
                    pass
        except OSError:
            pass
        finally:
            sock.close()


def peer_pid_of(sock: Any) -> int | None:
    """The process id at the other end of ``sock`` when it is a local (UNIX) socket."""
    try:
        if sock.family != socket.AF_UNIX:
            return None
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    except (OSError, AttributeError):
        return None
    return int.from_bytes(creds[:4], sys.byteorder, signed=True) or None


def connect_unix(path: str) -> socket.socket:
    """A stream connected to the UNIX socket ``path`` (raises ``OSError``)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    return sock


def check_private_socket(path: str) -> None:
    """Refuse the per-user default socket ``path`` (or its ``.lock``) when it is a
    symbolic link or belongs to another user than this one or root: such a file lets
    another user pose as this user's daemon.  Raises :class:`ConnectionFailed`."""
    uid = os.getuid()
    for name in (path, path + ".lock"):
        try:
            st = os.lstat(name)
        except OSError:
            continue  # absent: the daemon this client starts creates it
        if stat.S_ISLNK(st.st_mode):
            problem = "is a symbolic link"
        elif st.st_uid not in (uid, 0):
            problem = f"belongs to {user_label(st.st_uid)}, not to you"
        else:
            continue
        raise ConnectionFailed(
            f"refusing '{name}': it {problem}, so another user could pose as your daemon "
            "or take your locks. Remove it if it is stale, or give a socket of your own "
            "with -s PATH"
        )


def _say(text: str) -> None:
    print(text, flush=True)


def _connect_once(settings: Settings) -> socket.socket:
    """One connection attempt by the settings' transport; ``OSError`` when nobody answers.

    Local: the UNIX socket.  Unicast (``-a``, also when ``-A`` is set too): TCP to the
    first address that accepts.  Multicast only: a discovery round, then TCP.
    """
    path = settings.effective_socket_name()
    if path is not None:
        return connect_unix(path)
    keepalive = settings.keepalive_s()
    if settings.unicast_address:
        from . import netaddr

        return netaddr.connect_tcp(
            settings.unicast_address,
            settings.unicast_port,
            settings.network_interface,
            keepalive,
        )
    from .discovery import discover

    candidates = discover(settings, _say if settings.verbose else None)
    if candidates is None:
        raise ConnectionRefusedError(_rc.CONNECTION_REFUSED, "no daemon answered the discovery")
    from . import netaddr

    return netaddr.connect_first(candidates, keepalive)


def daemon_address(settings: Settings) -> str:
    """Where the settings look for the daemon, for messages."""
    path = settings.effective_socket_name()
    if path is not None:
        return path
    if settings.unicast_address:
        return f"{settings.unicast_address} port {settings.unicast_port}"
    return f"multicast group {settings.multicast_address} port {settings.multicast_port}"


def tls_files(settings: Settings) -> TlsFiles | None:
    """The client's TLS files when the settings configure TLS, their context built (so
    unusable files fail here, named, before any daemon is started with them)."""
    if not (settings.tls_certificate and settings.tls_private_key and settings.tls_ca_certificate):
        return None
    # ssl is loaded only when TLS is configured.
    from .tls.client import CLIENT_CONTEXTS
    from .tls.files import tls_files as files_of

    files = files_of(settings)
    assert files is not None
    CLIENT_CONTEXTS.get(files)
    return files


class DaemonStarts:
    """When a client connecting to the daemon starts one, and when it gives up.

    A daemon is started only when nobody answers, ``may_start_daemon`` is true and the
    daemon lifespan is not 0.  Concurrent starters are fine: exactly one daemon wins the
    socket's lock file (or the TCP address) and every client connects to it.  The
    channel's ``daemon_started`` says whether this call started the daemon it reached
    (when not, the daemon-only settings were not this call's to choose).
    """

    def __init__(self, settings: Settings, may_start_daemon: bool) -> None:
        path = settings.effective_socket_name()
        # (the prefix test first: default_socket_name() reads the passwd database)
        if path is not None and path.startswith("/tmp/flom-") and path == default_socket_name():
            check_private_socket(path)
        self.settings = settings
        self.local = path is not None
        self.may_start = may_start_daemon and settings.daemon_lifespan != 0
        self.deadline: float | None = None
        self.pause = 0.002
        self.started_daemon = False  # a daemon started by this call answered

    def failed(self, exc: OSError) -> None:
        """A connection attempt failed with ``exc``: return when a daemon must be started,
        raise :class:`ConnectionFailed` (or ``DAEMON_NOT_STARTED`` after trying for
        :data:`START_TIMEOUT_S`) otherwise."""
        nobody_listens = not self.local or isinstance(
            exc, (FileNotFoundError, ConnectionRefusedError)
        )
        if not (nobody_listens and self.may_start):
            raise ConnectionFailed(
                f"cannot connect to {daemon_address(self.settings)}: {exc.strerror or exc}"
            ) from exc
        now = time.monotonic()
        if self.deadline is None:
            self.deadline = now + START_TIMEOUT_S
        elif now > self.deadline:
            raise ConnectionFailed(rc=_rc.DAEMON_NOT_STARTED)

    def started(self, status: int) -> float:
        """The start of a daemon returned ``status``: the seconds to pause before trying
        to connect again (raises when the daemon could not start)."""
        if status == _rc.FLOCK_ERROR:
            # Another daemon owns the socket or the address: it is starting, or leaving.
            pause = self.pause
            self.pause = min(pause * 2, 0.05)
            return pause
        if status != _rc.OK:
            raise ConnectionFailed(rc=_rc.DAEMON_NOT_STARTED)
        self.started_daemon = True
        return 0.0


def open_channel(settings: Settings, *, may_start_daemon: bool) -> Channel:
    """Connect to the daemon the settings name, starting one when allowed
    (:class:`DaemonStarts`)."""
    files = tls_files(settings)
    starts = DaemonStarts(settings, may_start_daemon)
    while True:
        try:
            sock = _connect_once(settings)
        except OSError as exc:
            starts.failed(exc)
        else:
            if files is None:
                channel = Channel(sock)
            else:
                from .tls.client import open_tls

                channel = open_tls(sock, files)
            channel.daemon_started = starts.started_daemon
            channel.local = starts.local
            return channel
        from .spawn import start_daemon

        pause = starts.started(start_daemon(settings))  # raises with the daemon's reason
        if pause:
            time.sleep(pause)
