"""One client connection of the daemon: a non-blocking socket on the asyncio loop.

Plain ``loop.add_reader``/``add_writer`` callbacks rather than asyncio transports: a
FLoM client opens a connection for every lock, and the transport machinery cost more
than the lock itself.  This module only pumps bytes: what they mean (framing, decoding,
step numbers, when to half-close) is :class:`.protocol.ServerConnection`'s.  A
connection that breaks the protocol is closed on its own.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import struct
from typing import Protocol

from .. import codec
from .protocol import MANAGEMENT_LINGER_S, ProtocolError, ServerConnection

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..core import Answer
    from .access import Grants, Peer

_UCRED = struct.Struct("3i")  # SO_PEERCRED: pid, uid, gid
RECV_BYTES = 65536
MAX_PENDING_OUTPUT = 65536  # a client that does not read its answers is cut off

# One daemon-wide counter numbers connections and resources alike (as FLoM's VFS does).
new_uid = itertools.count(1).__next__


def peer_key(sock: socket.socket) -> str:
    """Who is behind ``sock``, for limiting repeated log lines: the user (``uid N``) on a
    UNIX socket, the IP address (not the port) over TCP."""
    try:
        if sock.family == socket.AF_UNIX:
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
            return f"uid {_UCRED.unpack(creds)[1]}"
        return str(sock.getpeername()[0])
    except OSError:
        return "an unknown peer"


class ConnectionOwner(Protocol):
    """The daemon as a connection calls it (the server implements it; connections never
    import the server)."""

    loop: asyncio.AbstractEventLoop
    peer_id: str  # the daemon's unique id, sent with its answers

    def handle(self, conn: ClientConnection, message: codec.Message) -> None:
        """Act on one decoded message from ``conn``."""
        ...

    def reject(self, conn: ClientConnection, reason: str) -> None:
        """Close ``conn``, which broke the protocol, and log why."""
        ...

    def lost(self, conn: ClientConnection) -> None:
        """``conn`` ended."""
        ...

    def internal_error(self, conn: ClientConnection, exc: BaseException) -> None:
        """A bug met while serving ``conn``."""
        ...


class ClientConnection:
    """A client's stream: reads bytes for its :class:`ServerConnection`, writes answers."""

    handshaking = False  # a TLS handshake in progress (TlsClientConnection)
    # What its peer may do and who it is, by the daemon's access rules: set at its first
    # request, only when the daemon has rules (LockDaemon.grants); never set otherwise,
    # so that a daemon without rules pays nothing for them.
    access: Grants | None
    access_peer: Peer

    __slots__ = (
        "_eof_pending",
        "_out",
        "access",
        "access_peer",
        "closed",
        "daemon",
        "described",
        "fd",
        "gone",
        "id",
        "lingering",
        "log_name",
        "message_since",
        "out_limit",
        "peer_common_name",
        "protocol",
        "sock",
    )

    def __init__(self, daemon: ConnectionOwner, sock: socket.socket) -> None:
        self.daemon = daemon
        self.sock = sock
        self.fd = sock.fileno()
        self.id = new_uid()
        self.protocol = ServerConnection()
        # When (loop time) the message in progress began, or between messages the last
        # one (or the connection): the stall timeout counts from there, so a message
        # sent a byte at a time is not kept alive by each byte (nor a TLS handshake:
        # only message bytes count).
        self.message_since = daemon.loop.time()
        self.closed = False
        self._out = bytearray()
        self.out_limit = MAX_PENDING_OUTPUT
        self._eof_pending = False
        self.peer_common_name: str | None = None  # CN of the client's certificate (TLS)
        self.log_name: str | None = None  # who it is, as the daemon's log says it
        self.described: str | None = None  # who it is, as the status document says it
        self.lingering = False  # a management request came: kept until the client closes
        self.gone: asyncio.Future[None] | None = None  # done once closed (lingering only)
        daemon.loop.add_reader(self.fd, self.on_readable)

    def on_readable(self) -> None:
        """Read what arrived; end of stream: the client is gone.  After an unlock, read
        once more at once: a FLoM client half-closes right after it, so the end of
        stream is usually there already and costs no further wake-up.  An unexpected
        failure closes this connection only."""
        try:
            self._read()
        except Exception as exc:
            self.daemon.internal_error(self, exc)

    def _read(self) -> None:
        again = True
        while again and not self.closed:
            try:
                data = self.sock.recv(RECV_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.close()
                return
            if not data:
                self.close()  # the client is done: what it held is released
                return
            plain = self.incoming(data)
            if not plain or self.lingering:
                return  # a TLS record in progress, the connection closed, or lingering
            again = False
            daemon = self.daemon
            protocol = self.protocol
            if not protocol.pending:  # a new message begins
                self.message_since = daemon.loop.time()
            for event in protocol.receive(plain):
                if self.closed:
                    return
                if type(event) is ProtocolError:
                    daemon.reject(self, event.reason)
                    return
                daemon.handle(self, event)  # type: ignore[arg-type]
                again = type(event) is codec.UnlockRequest

    def peer_key(self) -> str:
        """Who is behind the connection (see :func:`peer_key`)."""
        return peer_key(self.sock)

    def incoming(self, data: bytes) -> bytes | None:
        """The message bytes in what the socket delivered (TLS: the decrypted ones)."""
        return data

    def send_answer(self, answer: Answer) -> None:
        """Send a lock answer (the protocol numbers its step); half-close after it when
        nothing more will come on this request."""
        if self.closed:
            return
        payload, half_close = self.protocol.answer(
            answer.rc, answer.element, answer.generation, self.daemon.peer_id
        )
        self.write(payload)
        if half_close:
            self.write_eof()

    def linger(self, seconds: float = MANAGEMENT_LINGER_S) -> None:
        """End our sending side (no answer: just the end of stream), but keep the
        connection until the client closes it or ``seconds`` pass.  FLoM's client reads
        until then and ends its side after: over TLS it writes a close_notify, which a
        closed connection would answer with SIGPIPE."""
        if self.closed or self.lingering:
            return
        self.lingering = True
        self.gone = self.daemon.loop.create_future()
        self.write_eof()
        self.daemon.loop.call_later(seconds, self.close)

    def write(self, payload: bytes) -> None:
        """Send message bytes (TLS: encrypted first)."""
        self.send_raw(payload)

    def send_raw(self, payload: bytes) -> None:
        """Send ``payload`` now, or queue what the socket does not take yet."""
        if self.closed:
            return
        if self._out:
            self._out += payload
        else:
            try:
                sent = self.sock.send(payload)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self.close()
                return
            if sent == len(payload):
                return
            self._out += payload[sent:]
            self.daemon.loop.add_writer(self.fd, self._on_writable)
        if len(self._out) > self.out_limit:
            self.daemon.reject(self, "the client does not read its answers")

    def allow_output(self, size: int) -> None:
        """Let ``size`` more bytes wait for a slow reader (a large status answer)."""
        self.out_limit = MAX_PENDING_OUTPUT + size

    def _on_writable(self) -> None:
        try:
            sent = self.sock.send(self._out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        del self._out[:sent]
        if not self._out:
            self.daemon.loop.remove_writer(self.fd)
            if self._eof_pending:
                self.write_eof()

    def write_eof(self) -> None:
        """Half-close once everything queued has been sent."""
        if self._out:
            self._eof_pending = True
            return
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        """Close the connection; the daemon then releases what it held."""
        if self.closed:
            return
        self.closed = True
        self.protocol.close()
        loop = self.daemon.loop
        loop.remove_reader(self.fd)
        if self._out:
            loop.remove_writer(self.fd)
        try:
            self.daemon.lost(self)  # the socket is still open: the log can name the peer
        finally:
            self.sock.close()
            if self.gone is not None and not self.gone.done():
                self.gone.set_result(None)
