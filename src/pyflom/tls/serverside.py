"""The daemon side of TLS: a non-blocking layer over memory BIOs.

The daemon owns the raw bytes: it feeds what the socket delivered, sends what the
layer produced.  Nothing here blocks or touches a socket, so one slow or hostile
handshake never holds up the event loop, and the raw records stay visible (tracing).
"""

from __future__ import annotations

import ssl

from . import identity


class ServerTlsLayer:
    """One accepted connection's TLS state."""

    __slots__ = ("_in", "_obj", "_out", "established", "finished", "peer_cert", "peer_common_name")

    def __init__(self, context: ssl.SSLContext) -> None:
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = context.wrap_bio(self._in, self._out, server_side=True)
        self.established = False
        self.finished = False  # the client sent close_notify
        self.peer_cert: identity.PeerCert = {}
        self.peer_common_name: str | None = None

    def receive(self, raw: bytes) -> bytes:
        """Feed bytes from the socket; return the plaintext they complete.

        Raises :class:`ssl.SSLError` when the handshake or a record fails.  Handshake
        replies are left in :meth:`output`.
        """
        self._in.write(raw)
        if not self.established:
            try:
                self._obj.do_handshake()
            except ssl.SSLWantReadError:
                return b""
            self.established = True
            self.peer_cert = self._obj.getpeercert() or {}
            self.peer_common_name = identity.common_name(self.peer_cert)
        chunks = []
        while True:
            try:
                chunk = self._obj.read(65536)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                chunk = b""
            if not chunk:  # the client's close_notify
                self.finished = True
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def send(self, plaintext: bytes) -> bytes:
        """Encrypt ``plaintext``; return the records to write."""
        self._obj.write(plaintext)
        return self._out.read()

    def output(self) -> bytes:
        """Records produced by the layer itself (handshake, tickets, alerts)."""
        return self._out.read()

    def close_notify(self) -> bytes:
        """The records that end the TLS session cleanly."""
        try:
            self._obj.unwrap()
        except ssl.SSLError:
            pass
        return self._out.read()

    @property
    def ssl_object(self) -> ssl.SSLObject:
        """The underlying ``SSLObject`` (for diagnosis and tracing)."""
        return self._obj

    def describe(self) -> str:
        """Protocol version and cipher of the established session."""
        return identity.describe_session(self._obj)
