"""Live annotated TLS traces, through CPython's private ``SSLContext._msg_callback``.

OpenSSL reports every record header (5 bytes) and every handshake, alert and
ChangeCipherSpec message, decrypted, in both directions; :class:`TlsTrace` turns each
report into one line of a text file::

    2025-01-01T10:00:00.123+00:00 client#1 -> daemon record handshake(22) TLS 1.0 len=512 ...
    2025-01-01T10:00:00.125+00:00 client#1 <- daemon   handshake certificate_request(13) ...

``->`` is sent by this side, ``<-`` received; ``#1`` numbers the connections sharing
the trace (a daemon traces all its clients into one file).  The attribute is private
and undocumented: :meth:`TlsTrace.install` checks that it exists and returns False
otherwise, so the caller can say that tracing is unavailable.

OpenSSL quirk handled here: for TLS 1.3 the decrypted *inner content type* of a record
(``INNER_CONTENT_TYPE``) is passed through :mod:`ssl`'s handshake-type enum, so it shows
as CERTIFICATE_STATUS (22), SUPPLEMENTAL_DATA (23) or CERTIFICATE_URL (21); it is decoded
here as what it is, a content type (handshake, application_data, alert).
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from . import records

HEADER = 0x100
"""``content_type`` of a record-header report (data: the 5 header bytes)."""
INNER_CONTENT_TYPE = 0x101
"""``content_type`` of a TLS 1.3 inner-content-type report (data: 1 byte)."""

_SHORT_NAMES = {
    "commonName": "CN",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "emailAddress": "emailAddress",
    "domainComponent": "DC",
}


def available() -> bool:
    """Whether this Python's :mod:`ssl` has the private ``SSLContext._msg_callback``."""
    return hasattr(ssl.SSLContext, "_msg_callback")


def keylog(context: ssl.SSLContext, path: str | os.PathLike[str]) -> None:
    """Append the session secrets of ``context``'s connections to ``path`` in the NSS
    key log format (``SSLKEYLOGFILE``), so that Wireshark can decrypt a capture, TLS 1.3
    included.  Anyone holding the file can decrypt the traffic: debugging only."""
    context.keylog_filename = os.fspath(path)


def _quote(text: str) -> str:
    return f'"{text}"' if (" " in text or not text) else text


def _names_from_dict(rdns: Any) -> str:
    fields = []
    for rdn in rdns or ():
        for key, value in rdn:
            fields.append(f"{_SHORT_NAMES.get(key, key)}={value}")
    return ",".join(fields)


def _peer_names(conn: Any) -> tuple[str, str] | None:
    """Subject and issuer of the peer's certificate; None when it sent none."""
    info = conn.getpeercert()
    if info:
        return _names_from_dict(info.get("subject")), _names_from_dict(info.get("issuer"))
    der = conn.getpeercert(binary_form=True)
    if not der:
        return None
    try:
        return records.certificate_names(der)
    except ValueError:
        return "(unreadable)", "(unreadable)"


def session_line(conn: Any, *, check: str, we_presented_cert: bool = False) -> str:
    """``established TLSv1.3 TLS_AES_256_GCM_SHA384 AUTH=BOTH peer subject=... issuer=...
    peer-id check: <check>`` for the established ``SSLSocket``/``SSLObject`` ``conn``.

    AUTH=BOTH when both sides presented certificates, AUTH=SERVER when only the server
    did: a server knows from the peer certificate, a client says ``we_presented_cert``.
    """
    cipher = conn.cipher()
    # a server knows whether the client sent a certificate; a client knows what it sent
    both = bool(conn.getpeercert(binary_form=True)) if conn.server_side else we_presented_cert
    names = _peer_names(conn)
    if names is None:
        peer = "peer subject=(none) issuer=(none)"
    else:
        peer = f"peer subject={_quote(names[0])} issuer={_quote(names[1])}"
    auth = "BOTH" if both else "SERVER"
    suite = cipher[0] if cipher else "?"
    return f"established {conn.version()} {suite} AUTH={auth} {peer} peer-id check: {check}"


@dataclass
class _Connection:
    """What the trace has seen of one connection."""

    number: int
    peer: str
    tls13: bool = False
    finished_sent: bool = False
    finished_received: bool = False
    ccs_sent: bool = False
    ccs_received: bool = False
    certificate_sent: bool | None = None  # None: this side sent no Certificate message
    certificate_requested: bool = False

    @property
    def handshake_done(self) -> bool:
        return self.finished_sent and self.finished_received


class _Chained:
    """The installed callback: the trace, then the callback that was there before."""

    def __init__(self, trace: TlsTrace, previous: Callable[..., Any] | None) -> None:
        self.trace = trace
        self.previous = previous

    def __call__(
        self, conn: Any, direction: str, version: Any, content_type: Any, msg_type: Any, data: bytes
    ) -> None:
        self.trace(conn, direction, version, content_type, msg_type, data)
        if self.previous is not None:
            self.previous(conn, direction, version, content_type, msg_type, data)


class TlsTrace:
    """Writes one line per TLS record header and per handshake/alert message.

    ``stream`` is a text stream opened by the caller (a file opened for append);
    ``side`` names this end (``client``, ``daemon``); ``peer`` names the other end, by
    default for every connection (:meth:`set_peer` overrides it per connection).
    Thread-safe; the callback never raises (an exception inside it would be re-raised
    by :mod:`ssl` at the end of the handshake).
    """

    def __init__(
        self,
        stream: TextIO,
        side: str,
        peer: str = "peer",
        *,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.stream = stream
        self.side = side
        self.peer = peer
        self._clock = clock if clock is not None else lambda: dt.datetime.now().astimezone()
        self._lock = threading.RLock()
        self._connections: weakref.WeakKeyDictionary[Any, _Connection] = weakref.WeakKeyDictionary()
        self._by_id: dict[int, _Connection] = {}  # objects that refuse weak references
        self._count = 0

    # -- installation -----------------------------------------------------------------------

    def install(self, context: ssl.SSLContext) -> bool:
        """Trace every connection of ``context``; False when ``_msg_callback`` is missing.

        A callback already installed (pyflom keeps the peer's certificate with one) keeps
        being called after the trace.
        """
        if not available():
            return False
        previous = context._msg_callback  # type: ignore[attr-defined]
        if isinstance(previous, _Chained) and previous.trace is self:
            return True
        context._msg_callback = _Chained(self, previous)  # type: ignore[attr-defined]
        return True

    def uninstall(self, context: ssl.SSLContext) -> None:
        """Stop tracing ``context``, restoring the callback found by :meth:`install`."""
        if not available():
            return
        current = context._msg_callback  # type: ignore[attr-defined]
        if isinstance(current, _Chained) and current.trace is self:
            context._msg_callback = current.previous  # type: ignore[attr-defined]

    # -- connections ------------------------------------------------------------------------

    def _state(self, conn: Any) -> _Connection:
        with self._lock:
            try:
                state = self._connections.get(conn)
            except TypeError:
                state = self._by_id.get(id(conn))
            if state is None:
                self._count += 1
                state = _Connection(self._count, self.peer)
                try:
                    self._connections[conn] = state
                except TypeError:
                    self._by_id[id(conn)] = state
            return state

    def connection_number(self, conn: Any) -> int:
        """The short number (``#n``) of ``conn`` in this trace."""
        return self._state(conn).number

    def set_peer(self, conn: Any, peer: str) -> None:
        """Name the other end of ``conn`` (e.g. ``127.0.0.1:41234``) in its lines."""
        self._state(conn).peer = peer

    def certificate_sent(self, conn: Any) -> bool:
        """Whether this side sent a non-empty Certificate message on ``conn``."""
        return bool(self._state(conn).certificate_sent)

    # -- output -----------------------------------------------------------------------------

    def _write(self, state: _Connection, arrow: str, text: str) -> None:
        stamp = self._clock().isoformat(timespec="milliseconds")
        line = f"{stamp} {self.side}#{state.number} {arrow} {state.peer} {text}\n"
        with self._lock:
            try:
                self.stream.write(line)
                self.stream.flush()
            except (OSError, ValueError):  # closed or failing trace file: never disturb TLS
                pass

    def note(self, conn: Any, text: str) -> None:
        """Write a free line about ``conn`` (arrow ``--``), e.g. the error that ended it."""
        self._write(self._state(conn), "--", text)

    def log_session(self, conn: Any, *, check: str, we_presented_cert: bool | None = None) -> str:
        """Write (and return) the :func:`session_line` of an established ``conn``;
        ``we_presented_cert`` defaults to what the trace saw this side send."""
        state = self._state(conn)
        presented = bool(state.certificate_sent) if we_presented_cert is None else we_presented_cert
        line = session_line(conn, check=check, we_presented_cert=presented)
        self._write(state, "--", line)
        return line

    # -- the callback -----------------------------------------------------------------------

    def __call__(
        self, conn: Any, direction: str, version: Any, content_type: Any, msg_type: Any, data: bytes
    ) -> None:
        """The ``_msg_callback``: annotate one report from OpenSSL."""
        try:
            self._report(conn, direction, int(content_type), msg_type, bytes(data))
        except Exception as exc:  # never let the trace break a handshake
            try:
                self._write(self._state(conn), "--", f"trace error: {exc!r}")
            except Exception:
                pass

    def _report(self, conn: Any, direction: str, kind: int, msg_type: Any, data: bytes) -> None:
        state = self._state(conn)
        sent = direction == "write"
        arrow = "->" if sent else "<-"
        if kind == HEADER:
            problem = records.header_problem(data)
            if problem is not None:  # e.g. a plain-text peer: OpenSSL reports its 5 bytes
                self._write(state, arrow, f"record not TLS: {problem}")
                return
            record = records.TlsRecord.from_header(data)
            ccs = state.ccs_sent if sent else state.ccs_received
            text = records.describe_record(
                record,
                handshake_done=state.handshake_done,
                tls13=state.tls13,
                encrypted=ccs and not state.tls13,
            )
            if record.content_type == records.CHANGE_CIPHER_SPEC:
                if sent:
                    state.ccs_sent = True
                else:
                    state.ccs_received = True
            self._write(state, arrow, f"record {text}")
        elif kind == INNER_CONTENT_TYPE:
            state.tls13 = True
            inner = data[0] if data else int(msg_type)  # a content type, not a message type
            name = records.content_type_name(inner)
            self._write(state, arrow, f"  inner content type {name} (decrypted TLS 1.3 record)")
        elif kind == records.HANDSHAKE:
            messages, _ = records.parse_handshake_messages(data)
            for message in messages:
                self._observe(state, message, sent)
                text = records.describe_handshake(message, tls13=state.tls13)
                self._write(state, arrow, f"  handshake {text}")
        elif kind == records.ALERT:
            self._write(state, arrow, f"  alert {records.describe_alert(data)}")
        elif kind != records.CHANGE_CIPHER_SPEC:  # a ChangeCipherSpec is its header line
            name = records.content_type_name(kind)
            self._write(state, arrow, f"  {name} message len={len(data)}")

    @staticmethod
    def _observe(state: _Connection, message: records.HandshakeMessage, sent: bool) -> None:
        kind = message.msg_type
        if kind == records.SERVER_HELLO:
            if records.selected_version(message.body) == records.TLS13:
                state.tls13 = True
        elif kind == records.FINISHED:
            if sent:
                state.finished_sent = True
            else:
                state.finished_received = True
        elif kind == records.CERTIFICATE and sent:
            try:
                state.certificate_sent = bool(records.certificates(message.body, state.tls13))
            except ValueError:
                state.certificate_sent = None
        elif kind == records.CERTIFICATE_REQUEST and not sent:
            state.certificate_requested = True
