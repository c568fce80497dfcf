"""A client connection over TLS: the same framing and messages, encrypted underneath."""

from __future__ import annotations

import socket
import ssl
from typing import Protocol

from ..tls.serverside import ServerTlsLayer
from .connection import ClientConnection, ConnectionOwner
from .protocol import no_room_answer


def peer_address(sock: socket.socket) -> str:
    """``IP/port`` of a TCP peer, ``localhost/<path>`` for a UNIX socket (FLoM's form)."""
    try:
        if sock.family == socket.AF_UNIX:
            return f"localhost/{sock.getsockname()}"
        host, port = sock.getpeername()[:2]
        return f"{host}/{port}"
    except OSError:
        return "?"


FAILED_GRACE_S = 1.0  # how long a refused client is given to read our alert


class TlsConnectionOwner(ConnectionOwner, Protocol):
    """The daemon as a TLS connection calls it."""

    def tls_handshake(self, started: bool) -> None:
        """A client's TLS handshake starts or ends."""
        ...

    def tls_established(self, conn: TlsClientConnection) -> None:
        """A client finished its TLS handshake."""
        ...

    def tls_failed(self, conn: TlsClientConnection, exc: Exception) -> None:
        """A client's TLS failed."""
        ...


class TlsClientConnection(ClientConnection):
    """Decrypts what arrives, encrypts what leaves; the handshake happens on the way."""

    __slots__ = ("failed", "handshaking", "peer", "tls")
    daemon: TlsConnectionOwner

    def __init__(
        self, daemon: TlsConnectionOwner, sock: socket.socket, context: ssl.SSLContext
    ) -> None:
        # Started first: OpenSSL copies the context's message callback into each new
        # connection, so the capture must be on before the layer is made.
        self.handshaking = True
        daemon.tls_handshake(started=True)
        self.tls = ServerTlsLayer(context)
        self.peer = peer_address(sock)
        self.failed = False
        super().__init__(daemon, sock)

    def _handshake_over(self) -> None:
        if self.handshaking:
            self.handshaking = False
            self.daemon.tls_handshake(started=False)

    def incoming(self, data: bytes) -> bytes | None:
        if self.failed:
            return None  # discarded until the client closes or the grace period ends
        handshaking = not self.tls.established
        try:
            plain = self.tls.receive(data)
        except ssl.SSLError as exc:
            # Send the alert that tells the client why, end our side, and keep reading
            # for a moment: closing now would answer the client's next bytes with a
            # reset, which can destroy the alert before the client reads it.
            self.send_raw(self.tls.output())
            ClientConnection.write_eof(self)
            self.failed = True
            self._handshake_over()
            self.daemon.tls_failed(self, exc)
            self.daemon.loop.call_later(FAILED_GRACE_S, self.close)
            return None
        out = self.tls.output()
        if out:
            self.send_raw(out)
        if handshaking and self.tls.established:
            self._handshake_over()
            self.peer_common_name = self.tls.peer_common_name
            self.daemon.tls_established(self)
        if self.tls.finished:
            # The client ended the session: handle what came with it, then close.
            self.daemon.loop.call_soon(self.close)
        return plain

    def write(self, payload: bytes) -> None:
        if not self.closed:
            self.send_raw(self.tls.send(payload))

    def write_eof(self) -> None:
        if not self.closed:
            self.send_raw(self.tls.close_notify())
        super().write_eof()

    def close(self) -> None:
        self._handshake_over()
        super().close()


class RefusedTlsConnection(TlsClientConnection):
    """A TLS client the daemon has no room for: once the handshake is done, its first
    request gets the rc CONNECTION_REFUSED answer, and the connection lingers until the
    client closes it.  Nothing it sends reaches the daemon."""

    __slots__ = ()

    def incoming(self, data: bytes) -> bytes | None:
        plain = super().incoming(data)
        if plain and not self.lingering and not self.closed:
            self.write(no_room_answer(plain, self.daemon.peer_id))
            self.linger()
        return None
