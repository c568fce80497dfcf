"""The client side: TLS from the first byte of a connection, then FLoM's messages.

Contexts are cached per process and sessions are resumed per daemon address, so a
library that opens a connection per lock pays for a full handshake only once.
"""

from __future__ import annotations

import socket
import ssl

from .. import rc as _rc
from .. import trace
from ..errors import ConnectionFailed
from ..transport import Channel
from . import identity
from .contexts import CLIENT_CONTEXTS as CLIENT_CONTEXTS
from .contexts import trace_of
from .diagnosis import Diagnosis, diagnose
from .files import TlsFiles

HANDSHAKE_TIMEOUT_S = 10.0
_sessions: dict[object, ssl.SSLSession] = {}  # daemon address -> last session


class TlsChannel(Channel):
    """A :class:`Channel` over TLS; knows the daemon's certificate."""

    tls = True
    _NOTHING_YET = (*Channel._NOTHING_YET, ssl.SSLWantReadError, ssl.SSLWantWriteError)

    def __init__(self, sock: ssl.SSLSocket, files: TlsFiles, address: object) -> None:
        super().__init__(sock)
        self.files = files
        self.address = address
        self.peer_cert = sock.getpeercert() or {}
        self.peer_common_name = identity.common_name(self.peer_cert)

    def describe_failure(self, exc: BaseException | None) -> str | None:
        """Name a failure after the handshake.  TLS 1.3 reports a refused client
        certificate only on the first read: read the daemon's alert if it is there."""
        if not isinstance(exc, ssl.SSLError):
            try:
                self.sock.settimeout(1.0)
                self.sock.recv(1)
            except ssl.SSLError as alert:
                exc = alert
            except OSError:
                pass
        return describe_failure(exc, self.files, self.sock)

    def close(self, graceful: bool = True, timeout: float = 2.0) -> None:
        sock = self.sock
        assert isinstance(sock, ssl.SSLSocket)
        if graceful and not sock.session_reused:
            # A resumed session stays usable: fetching it again costs a copy of it.
            session = sock.session
            if session is not None:
                _sessions[self.address] = session
        if graceful:
            try:
                # close_notify, then wait for the daemon's end: the unlock has been read.
                sock.settimeout(timeout)
                sock.unwrap().close()
                return
            except (OSError, ValueError):
                pass
        sock.close()


def describe_failure(exc: BaseException | None, files: TlsFiles, conn: object) -> str:
    """Name a failure after the handshake on ``conn`` (an ``SSLSocket`` or ``SSLObject``):
    the TLS error, or the daemon closing without a word."""
    if isinstance(exc, ssl.SSLError):
        return str(diagnose(exc, "client", files, conn))
    return str(
        Diagnosis(
            "TLS-CLOSED-BY-DAEMON",
            "the daemon closed the TLS connection without answering",
            "it refused this client: its certificate (TLS 1.3 tells only after the "
            "handshake) or, with --tls-check-peer-id on the daemon, the unique id this "
            "client announced does not equal its certificate's CN",
            "read the daemon's log (FLM013E, FLM017E) for its reason",
        )
    )


def handshake_failure(exc: BaseException, files: TlsFiles, conn: object) -> ConnectionFailed:
    """The :class:`ConnectionFailed` for a failed client handshake, named."""
    call = (
        "SSL_get_verify_result" if isinstance(exc, ssl.SSLCertVerificationError) else "SSL_connect"
    )
    return ConnectionFailed(str(diagnose(exc, "client", files, conn)), rc=_rc.OPENSSL_ERRORS[call])


def open_tls(sock: socket.socket, files: TlsFiles) -> TlsChannel:
    """Do the client handshake on a connected ``sock``; raises ConnectionFailed named."""
    try:
        address: object = sock.getpeername()
    except OSError:
        address = None
    try:
        context = CLIENT_CONTEXTS.get(files)
        # The certificate capture (to name a refused certificate) costs a Python call per
        # record: on for the handshake only, unless the whole session is traced.  It must
        # be on before wrapping: OpenSSL copies it into each new connection.
        capture = trace_of(context) is None and hasattr(context, "_msg_callback")
        if capture:
            setattr(context, "_msg_callback", identity.remember_peer_certificate)  # noqa: B010
        sock.settimeout(HANDSHAKE_TIMEOUT_S)
        tls = context.wrap_socket(
            sock, do_handshake_on_connect=False, session=_sessions.get(address)
        )
    except BaseException:
        sock.close()
        raise
    try:
        tls.do_handshake()
    except (OSError, ValueError) as exc:
        tls.close()
        _sessions.pop(address, None)
        raise handshake_failure(exc, files, tls) from exc
    finally:
        if capture:
            setattr(context, "_msg_callback", None)  # noqa: B010
    tls.settimeout(None)
    channel = TlsChannel(tls, files, address)
    tracer = trace_of(context)
    if tracer is not None:
        check = (
            f"on: the daemon's announced id must be '{channel.peer_common_name}'"
            if files.check_peer_id
            else "off"
        )
        tracer.log_session(tls, check=check, we_presented_cert=True)
    if trace.enabled():
        for line in identity.log_lines(channel.peer_cert):
            trace.trace(line)
        trace.trace(f"TLS established: {identity.describe_session(tls)}")
    return channel
