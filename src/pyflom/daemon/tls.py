"""The daemon's TLS policy: its context (reloaded when the files change or on SIGHUP),
the peer-id check of level 3, and what it logs about each client's TLS."""

from __future__ import annotations

import ssl

from .. import codec
from ..tls import identity
from ..tls.contexts import ContextCache, TlsSetupError, trace_of
from ..tls.diagnosis import Diagnosis, diagnose
from ..tls.files import TlsFiles
from ..tls.identity import remember_peer_certificate
from .log import DaemonLog

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .connection import ClientConnection
    from .tlsconnection import TlsClientConnection


_CHECKED = (codec.LockRequest, codec.ShutdownRequest, codec.StatusRequest)  # carry a peer id


class DaemonTls:
    """TLS of one daemon: built once at start (raises :class:`TlsSetupError` for files it
    cannot use), rebuilt only when its files change."""

    def __init__(self, files: TlsFiles, log: DaemonLog) -> None:
        self.files = files
        self.log = log
        self._cache = ContextCache(server_side=True)
        self._context = self._cache.get(files)
        self._broken_stamp: object = None  # files that failed to load (logged once)
        self._handshaking = 0  # connections in their handshake

    def handshake_started(self) -> None:
        """A connection begins its handshake: capture the certificates peers send (to
        name a refused one), which costs a Python call per record while it lasts."""
        self._handshaking += 1
        if self._handshaking == 1 and trace_of(self._context) is None:
            setattr(self._context, "_msg_callback", remember_peer_certificate)  # noqa: B010

    def handshake_ended(self) -> None:
        """A connection's handshake is over (established, failed or abandoned)."""
        self._handshaking -= 1
        if self._handshaking == 0 and trace_of(self._context) is None:
            setattr(self._context, "_msg_callback", None)  # noqa: B010

    def context(self) -> ssl.SSLContext:
        """The context new connections use."""
        return self._context

    def reload_if_changed(self) -> None:
        """Pick up rewritten certificate, key or CA files (checked about once a second)."""
        stamp = self.files.stamp()
        if stamp == self._broken_stamp:
            return
        try:
            context = self._cache.get(self.files)
        except TlsSetupError as exc:
            self._broken_stamp = stamp
            self.log.error(f"FLM018E keeping the previous TLS files: {exc}")
            return
        if context is not self._context:
            self._context = context
            self._handshaking = 0  # connections in flight keep the callback of the old one
            self.log.notice("FLM026N TLS files changed: new connections use them")

    def reload(self) -> None:
        """SIGHUP: rebuild the context now."""
        try:
            self._context = self._cache.reload(self.files)
            self._handshaking = 0
        except TlsSetupError as exc:
            self.log.error(f"FLM018E keeping the previous TLS files: {exc}")
            return
        self.log.notice("FLM026N TLS files reloaded (SIGHUP)")

    def admits(self, conn: ClientConnection, message: codec.Message) -> bool:
        """Level 3: a request's announced unique id must equal the client cert's CN.

        A refused lock request gets no answer (as FLoM); a refused management or status
        request gets its answer with the reason code, so that ``-x``/``-X`` and
        ``--status`` can say so.
        """
        if not self.files.check_peer_id:
            return True
        protocol = conn.protocol
        why = protocol.check_peer_id(message, conn.peer_common_name)
        peer = getattr(conn, "peer", "?")
        if why is None:
            if not protocol.authenticated and isinstance(
                message, codec.LockRequest | codec.ShutdownRequest | codec.StatusRequest
            ):
                protocol.authenticated = True
                self.log.info(
                    f"FLM014I peer '{peer}' with unique ID '{message.peer_id}' was "
                    "authenticated using the CN field of its X.509 certificate"
                )
            return True
        self.log.error(
            f"FLM013E peer '{peer}' refused: {why} (check with 'flom --unique-id' on that "
            "host; its certificate's CN must be exactly that id) [TLS-PEER-ID-MISMATCH]"
        )
        refusal = protocol.refusal(message)
        if refusal:
            conn.write(refusal)
            conn.write_eof()
        conn.close()
        return False

    def log_peer(self, conn: TlsClientConnection) -> None:
        """FLM011I/FLM012I: the client's certificate issuer and subject."""
        for line in identity.log_lines(conn.tls.peer_cert):
            self.log.info(line)
        tracer = trace_of(self._context)
        if tracer is not None:
            check = "on" if self.files.check_peer_id else "off"
            tracer.log_session(
                conn.tls.ssl_object, check=f"{check}, peer CN '{conn.peer_common_name}'"
            )
        self.log.trace(f"TLS with '{conn.peer}': {conn.tls.describe()}")

    def log_failure(self, conn: TlsClientConnection, exc: Exception) -> Diagnosis:
        """Name why a client's TLS failed (FLM017E for a refused certificate); returns
        the diagnosis (its class counts in the metrics)."""
        ident = "FLM017E" if isinstance(exc, ssl.SSLCertVerificationError) else "FLM027W"
        diagnosis = diagnose(exc, "daemon", self.files, conn.tls.ssl_object)
        self.log.warning(f"{ident} TLS with client '{conn.peer}' failed: {diagnosis}")
        return diagnosis
