"""Sans-IO knowledge of TLS records, for annotated traces and ``flom-tls decode``.

Reads bytes the way a troubleshooting guide reads a trace: the 5-byte record header
(content type, version, length), then, for plaintext handshake records, each handshake
message (type, 3-byte length, body), and alerts (level, description).  Nothing here
imports :mod:`ssl`; :mod:`pyflom.tls.trace` feeds it live data, :func:`decode_dump` feeds
it hex dumps pasted by users.

Two TLS 1.3 facts drive the interpretation of encrypted records:

* after the ServerHello everything is an ``application_data(23)`` record, so without
  keys a record's real type is hidden; during the handshake such a record is an
  encrypted handshake message, except that one of **19 bytes** (2 alert bytes + 1 inner
  content type + 16-byte AEAD tag) is very likely an encrypted alert;
* ``change_cipher_spec(20)`` records are sent for middlebox compatibility only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

CHANGE_CIPHER_SPEC = 20
ALERT = 21
HANDSHAKE = 22
APPLICATION_DATA = 23
HEARTBEAT = 24

CONTENT_TYPES: dict[int, str] = {
    CHANGE_CIPHER_SPEC: "change_cipher_spec",
    ALERT: "alert",
    HANDSHAKE: "handshake",
    APPLICATION_DATA: "application_data",
    HEARTBEAT: "heartbeat",
}
"""Record content types (RFC 8446 §5.1, RFC 6520)."""

SSL3, TLS10, TLS11, TLS12, TLS13 = 0x0300, 0x0301, 0x0302, 0x0303, 0x0304

VERSIONS: dict[int, str] = {
    SSL3: "SSL 3.0",
    TLS10: "TLS 1.0",
    TLS11: "TLS 1.1",
    TLS12: "TLS 1.2",
    TLS13: "TLS 1.3",
}
"""Protocol versions as they appear on the wire (record headers, hellos)."""

CLIENT_HELLO = 1
SERVER_HELLO = 2
NEW_SESSION_TICKET = 4
CERTIFICATE = 11
CERTIFICATE_REQUEST = 13
FINISHED = 20
KEY_UPDATE = 24

HANDSHAKE_TYPES: dict[int, str] = {
    0: "hello_request",
    CLIENT_HELLO: "client_hello",
    SERVER_HELLO: "server_hello",
    3: "hello_verify_request",
    NEW_SESSION_TICKET: "new_session_ticket",
    5: "end_of_early_data",
    8: "encrypted_extensions",
    CERTIFICATE: "certificate",
    12: "server_key_exchange",
    CERTIFICATE_REQUEST: "certificate_request",
    14: "server_hello_done",
    15: "certificate_verify",
    16: "client_key_exchange",
    FINISHED: "finished",
    21: "certificate_url",
    22: "certificate_status",
    23: "supplemental_data",
    KEY_UPDATE: "key_update",
    254: "message_hash",
}
"""Handshake message types (RFC 8446 §4, RFC 5246 §7.4, RFC 6066)."""

ALERT_LEVELS: dict[int, str] = {1: "warning", 2: "fatal"}

ALERT_DESCRIPTIONS: dict[int, str] = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    21: "decryption_failed",
    22: "record_overflow",
    30: "decompression_failure",
    40: "handshake_failure",
    41: "no_certificate",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    49: "access_denied",
    50: "decode_error",
    51: "decrypt_error",
    60: "export_restriction",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    100: "no_renegotiation",
    109: "missing_extension",
    110: "unsupported_extension",
    111: "certificate_unobtainable",
    112: "unrecognized_name",
    113: "bad_certificate_status_response",
    114: "bad_certificate_hash_value",
    115: "unknown_psk_identity",
    116: "certificate_required",
    120: "no_application_protocol",
}
"""Alert descriptions (RFC 8446 §6 plus the older RFC 5246/6066 values)."""

ALERT_HINTS: dict[int, str] = {
    40: "no acceptable parameters (TLS 1.2: also a client that sent no certificate)",
    42: "the sender rejected the certificate it received",
    45: "the sender found the certificate it received expired",
    46: "the sender rejected the certificate it received",
    48: "the sender does not trust the CA of the certificate it received",
    70: "the sender does not support the offered protocol version",
    71: "no cipher suite both sides accept",
    116: "the server requires a client certificate and got none",
}
"""What the sender of an alert means, for the alerts users meet most."""

CIPHER_SUITES: dict[int, str] = {
    0x002F: "TLS_RSA_WITH_AES_128_CBC_SHA",
    0x0035: "TLS_RSA_WITH_AES_256_CBC_SHA",
    0x009C: "TLS_RSA_WITH_AES_128_GCM_SHA256",
    0x009D: "TLS_RSA_WITH_AES_256_GCM_SHA384",
    0x1301: "TLS_AES_128_GCM_SHA256",
    0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0xC02B: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    0xC02C: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    0xC02F: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    0xC030: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    0xCCA8: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCA9: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
}
"""Names of the cipher suites most often negotiated (others are shown in hex)."""

HEADER_LENGTH = 5
MAX_RECORD_LENGTH = 2**14 + 2048
"""Largest record payload allowed on the wire (TLS 1.2 ciphertext limit)."""
AEAD_TAG_LENGTH = 16
ENCRYPTED_ALERT_LENGTH = 2 + 1 + AEAD_TAG_LENGTH
"""19: a TLS 1.3 alert once encrypted (alert bytes + inner content type + tag)."""

_HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
_EXT_SERVER_NAME = 0
_EXT_SUPPORTED_VERSIONS = 43
_EXT_CERTIFICATE_AUTHORITIES = 47


def _name(table: dict[int, str], value: int) -> str:
    return f"{table.get(value, 'unknown')}({value})"


def content_type_name(value: int) -> str:
    """``handshake(22)``; ``unknown(99)`` for values outside :data:`CONTENT_TYPES`."""
    return _name(CONTENT_TYPES, value)


def handshake_type_name(value: int) -> str:
    """``client_hello(1)``; ``unknown(99)`` for unknown types."""
    return _name(HANDSHAKE_TYPES, value)


def alert_level_name(value: int) -> str:
    """``fatal(2)``."""
    return _name(ALERT_LEVELS, value)


def alert_description_name(value: int) -> str:
    """``unknown_ca(48)``."""
    return _name(ALERT_DESCRIPTIONS, value)


def version_name(value: int) -> str:
    """``TLS 1.2`` for 0x0303; hex for versions not in :data:`VERSIONS`."""
    known = VERSIONS.get(value)
    if known is not None:
        return known
    if value >> 8 == 0x7F:
        return f"TLS 1.3 draft {value & 0xFF}"
    return f"0x{value:04x}"


def cipher_suite_name(value: int) -> str:
    """IANA name of a cipher suite with its code, e.g. ``TLS_AES_256_GCM_SHA384 (0x1302)``."""
    known = CIPHER_SUITES.get(value)
    return f"{known} (0x{value:04x})" if known else f"cipher suite 0x{value:04x}"


def hex_bytes(data: bytes, limit: int = 16) -> str:
    """``16 03 01 02 00`` for the first ``limit`` bytes of ``data``."""
    return data[:limit].hex(" ")


# -- what non-TLS data looks like ----------------------------------------------------------

_PRINTABLE = frozenset(range(0x20, 0x7F)) | {0x09, 0x0A, 0x0D}
_HTTP = re.compile(rb"^(GET|POST|PUT|HEAD|DELETE|OPTIONS|PATCH|CONNECT|HTTP/)\b")


def looks_like(data: bytes) -> str:
    """What ``data`` (which is not a TLS record) looks like: ``plain text: '<?xml ve...'``,
    ``an SSL 2.0 ClientHello``, ``binary data: 00 01 ...``; with a hint where one helps."""
    if not data:
        return "no data"
    head = data[:16]
    if all(b in _PRINTABLE for b in head):
        text = data[:8].decode("ascii").encode("unicode_escape").decode("ascii")
        shown = "'" + text.replace("'", "\\'") + ("...'" if len(data) > 8 else "'")
        if data.lstrip().startswith(b"<"):
            hint = " (XML: FLoM's protocol without TLS? then the peer is not configured for TLS)"
        elif _HTTP.match(data):
            hint = " (HTTP)"
        elif data.startswith(b"SSH-"):
            hint = " (SSH)"
        else:
            hint = ""
        return f"plain text: {shown}{hint}"
    if len(data) >= 3 and data[0] & 0x80 and data[2] == CLIENT_HELLO:
        return "an SSL 2.0-format ClientHello (obsolete protocol)"
    more = " ..." if len(data) > 8 else ""
    return f"binary data: {hex_bytes(data, 8)}{more}"


def header_problem(data: bytes) -> str | None:
    """Why ``data`` cannot start a TLS record, as :func:`looks_like` words it; None while
    it still can (known content type, version 3.x, length within the maximum)."""
    if not data:
        return None
    if data[0] not in CONTENT_TYPES:
        return looks_like(data)
    if len(data) >= 2 and data[1] != 3:
        return f"{looks_like(data)} (byte 0x{data[0]:02x} would be a content type, but the "
        "version does not start with 03)"
    if len(data) >= 3 and data[2] > 4:
        return f"{looks_like(data)} (unknown version 0x{data[1]:02x}{data[2]:02x})"
    if len(data) >= HEADER_LENGTH:
        length = int.from_bytes(data[3:5], "big")
        if length > MAX_RECORD_LENGTH:
            return (
                f"{looks_like(data)} (record length {length} exceeds the TLS maximum "
                f"{MAX_RECORD_LENGTH})"
            )
    return None


@dataclass(frozen=True)
class TlsRecord:
    """One TLS record: the header fields and the payload (may be shorter than ``length``
    when only the header, or only the start of the record, is known)."""

    content_type: int
    version: int
    length: int
    payload: bytes = b""

    @classmethod
    def from_header(cls, header: bytes, payload: bytes = b"") -> TlsRecord:
        """The record whose 5-byte header is ``header``."""
        if len(header) < HEADER_LENGTH:
            raise ValueError(f"a TLS record header has 5 bytes, got {len(header)}")
        version = int.from_bytes(header[1:3], "big")
        return cls(header[0], version, int.from_bytes(header[3:5], "big"), payload)

    @property
    def header(self) -> bytes:
        """The 5 header bytes."""
        return (
            bytes([self.content_type])
            + self.version.to_bytes(2, "big")
            + self.length.to_bytes(2, "big")
        )

    @property
    def complete(self) -> bool:
        """Whether the whole payload is known."""
        return len(self.payload) == self.length


class NotTls(ValueError):
    """Data that cannot be TLS records: says what it looks like and where it starts."""

    def __init__(
        self,
        data: bytes,
        offset: int = 0,
        *,
        what: str | None = None,
        records: list[TlsRecord] | None = None,
        context: str = "",
        decoded: list[str] | None = None,
    ) -> None:
        self.offset = offset
        self.what = what if what is not None else looks_like(data)
        self.records: list[TlsRecord] = list(records or ())
        self.decoded: list[str] = list(decoded or ())
        """Annotated lines of what could be decoded before the problem."""
        where = ""
        if offset or self.records:
            where = f" at byte {offset} (after {len(self.records)} record(s))"
        super().__init__(f"{context}not TLS{where}: {self.what}")


def parse_records(data: bytes) -> tuple[list[TlsRecord], bytes]:
    """Split ``data`` into complete records; return them and the unconsumed tail.

    Raises :class:`NotTls` as soon as a record header is impossible (unknown content
    type, version not 3.x, length above :data:`MAX_RECORD_LENGTH`); the records read
    before it are in the exception's ``records``.
    """
    records: list[TlsRecord] = []
    pos = 0
    while True:
        rest = data[pos:]
        problem = header_problem(rest)
        if problem is not None:
            raise NotTls(rest, pos, what=problem, records=records)
        if len(rest) < HEADER_LENGTH:
            return records, rest
        length = int.from_bytes(rest[3:5], "big")
        if len(rest) < HEADER_LENGTH + length:
            return records, rest
        records.append(TlsRecord.from_header(rest[:HEADER_LENGTH], rest[5 : 5 + length]))
        pos += HEADER_LENGTH + length


# -- handshake messages ------------------------------------------------------------------


@dataclass(frozen=True)
class HandshakeMessage:
    """A handshake message: type, declared body length and the body bytes known (fewer
    than ``length`` when the message continues beyond the data)."""

    msg_type: int
    length: int
    body: bytes

    @property
    def complete(self) -> bool:
        """Whether the whole body is known."""
        return len(self.body) >= self.length


def parse_handshake_messages(data: bytes) -> tuple[list[HandshakeMessage], bytes]:
    """The handshake messages in ``data`` (the last one possibly incomplete) and the
    leftover bytes of an incomplete 4-byte message header."""
    messages: list[HandshakeMessage] = []
    pos = 0
    while len(data) - pos >= 4:
        length = int.from_bytes(data[pos + 1 : pos + 4], "big")
        body = data[pos + 4 : pos + 4 + length]
        messages.append(HandshakeMessage(data[pos], length, body))
        pos += 4 + length
    return messages, data[pos:] if pos <= len(data) else b""


class _Short(Exception):
    """A structure ends before its declared size."""


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise _Short
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def vector(self, length_bytes: int) -> bytes:
        return self.take(self.uint(length_bytes))


def _extensions(data: bytes) -> dict[int, bytes]:
    reader = _Reader(data)
    found: dict[int, bytes] = {}
    while reader.remaining >= 4:
        ext_type = reader.uint(2)
        found[ext_type] = reader.vector(2)
    return found


def selected_version(server_hello_body: bytes) -> int | None:
    """The version a ServerHello selects: its supported_versions extension (TLS 1.3) or
    its legacy version; None if the body is malformed."""
    try:
        reader = _Reader(server_hello_body)
        legacy = reader.uint(2)
        reader.take(32)
        reader.vector(1)
        reader.take(3)
        if reader.remaining == 0:
            return legacy
        chosen = _extensions(reader.vector(2)).get(_EXT_SUPPORTED_VERSIONS)
        return int.from_bytes(chosen, "big") if chosen and len(chosen) == 2 else legacy
    except _Short:
        return None


def _client_hello(body: bytes) -> str:
    reader = _Reader(body)
    legacy = reader.uint(2)
    reader.take(32)
    reader.vector(1)
    suites = len(reader.vector(2)) // 2
    reader.vector(1)
    extensions = _extensions(reader.vector(2)) if reader.remaining else {}
    parts = []
    versions = extensions.get(_EXT_SUPPORTED_VERSIONS)
    if versions:
        offered = [int.from_bytes(versions[i : i + 2]) for i in range(1, len(versions) - 1, 2)]
        parts.append(
            "offers " + ", ".join(version_name(v) for v in offered if v & 0x0F0F != 0x0A0A)
        )
    else:
        parts.append(f"offers up to {version_name(legacy)}")
    parts.append(f"{suites} cipher suites")
    sni = extensions.get(_EXT_SERVER_NAME)
    if sni and len(sni) > 5:
        parts.append(f"server name '{sni[5:].decode('ascii', 'replace')}'")
    return "; ".join(parts)


def _server_hello(body: bytes) -> str:
    reader = _Reader(body)
    reader.take(2)
    random = reader.take(32)
    reader.vector(1)
    suite = reader.uint(2)
    version = selected_version(body)
    chosen = version_name(version) if version is not None else "?"
    if random == _HRR_RANDOM:
        return f"hello_retry_request: {chosen}, {cipher_suite_name(suite)}"
    return f"selects {chosen}, {cipher_suite_name(suite)}"


def _certificate_list(body: bytes, tls13: bool) -> list[bytes]:
    reader = _Reader(body)
    if tls13:
        reader.vector(1)  # certificate_request_context
    entries = _Reader(reader.vector(3))
    if reader.remaining:
        raise _Short
    certificates = []
    while entries.remaining:
        certificates.append(entries.vector(3))
        if tls13:
            entries.vector(2)  # per-certificate extensions
    return certificates


def certificates(body: bytes, tls13: bool) -> list[bytes]:
    """The DER certificates of a Certificate message body (TLS 1.3 or 1.2 layout, the
    other one tried if ``tls13`` guesses wrong); ``[]`` for an empty message.  Raises
    ValueError when neither layout fits."""
    for layout in (tls13, not tls13):
        try:
            return _certificate_list(body, layout)
        except _Short:
            continue
    raise ValueError("malformed certificate message")


def _certificate(body: bytes, tls13: bool) -> str:
    certificates_ = certificates(body, tls13)
    if not certificates_:
        return "EMPTY: no certificate sent (the sender has none to offer)"
    count = f"{len(certificates_)} certificate{'s' if len(certificates_) > 1 else ''}"
    try:
        subject, issuer = certificate_names(certificates_[0])
    except ValueError:
        return count
    return f"{count}, subject={_quote(subject)} issuer={_quote(issuer)}"


def _certificate_request(body: bytes, tls13: bool) -> str:
    reader = _Reader(body)
    names: list[bytes] = []
    if tls13:
        reader.vector(1)
        authorities = _extensions(reader.vector(2)).get(_EXT_CERTIFICATE_AUTHORITIES)
        if authorities is not None:
            names = _distinguished_names(_Reader(authorities).vector(2))
    else:
        reader.vector(1)  # certificate types
        reader.vector(2)  # signature algorithms
        names = _distinguished_names(reader.vector(2))
    if not names:
        return "client certificate requested; no CA names sent (any CA the server trusts)"
    shown = []
    for der in names[:3]:
        try:
            shown.append(_quote(_name_text(_Reader(_der_content(der, 0x30)))))
        except ValueError:
            shown.append("?")
    more = ", ..." if len(names) > 3 else ""
    return f"client certificate requested; {len(names)} CA name(s): {', '.join(shown)}{more}"


def _distinguished_names(data: bytes) -> list[bytes]:
    reader = _Reader(data)
    names = []
    while reader.remaining:
        names.append(reader.vector(2))
    return names


def _new_session_ticket(body: bytes) -> str:
    return f"ticket lifetime {_Reader(body).uint(4)} s"


def _key_update(body: bytes) -> str:
    return {0: "update_not_requested", 1: "update_requested"}.get(body[0], "?") if body else "?"


def describe_handshake(message: HandshakeMessage, *, tls13: bool) -> str:
    """``certificate(11) len=530: 1 certificate, subject=... issuer=...``.

    Details are given for hellos (versions, cipher suite), certificates (count, subject
    and issuer of the first, or EMPTY), certificate requests (CA names sent or not),
    tickets and key updates; ``tls13`` selects the message layouts that differ.
    """
    text = f"{handshake_type_name(message.msg_type)} len={message.length}"
    body = message.body
    detail: str | None = None
    try:
        if message.msg_type == CLIENT_HELLO:
            detail = _client_hello(body)
        elif message.msg_type == SERVER_HELLO:
            detail = _server_hello(body)
        elif message.msg_type == CERTIFICATE:
            detail = _certificate(body, tls13)
        elif message.msg_type == CERTIFICATE_REQUEST:
            detail = _certificate_request(body, tls13)
        elif message.msg_type == NEW_SESSION_TICKET and tls13:
            detail = _new_session_ticket(body)
        elif message.msg_type == KEY_UPDATE:
            detail = _key_update(body)
    except (_Short, IndexError, ValueError, UnicodeDecodeError):
        detail = None
    if detail:
        text += f": {detail}"
    if not message.complete:
        text += f" (only {len(message.body)} bytes of it here)"
    return text


def describe_alert(payload: bytes) -> str:
    """``fatal(2) unknown_ca(48) - the sender does not trust ...`` for a 2-byte alert."""
    if len(payload) != 2:
        return f"encrypted alert ({len(payload)} bytes: level and description hidden)"
    text = f"{alert_level_name(payload[0])} {alert_description_name(payload[1])}"
    hint = ALERT_HINTS.get(payload[1])
    return f"{text} - {hint}" if hint else text


# -- records -------------------------------------------------------------------------------


def _application_data(length: int, *, handshake_done: bool, tls13: bool) -> str:
    if not tls13:
        return "encrypted application data"
    alert = "2 alert bytes + content type + 16-byte tag"
    if not handshake_done:
        if length == ENCRYPTED_ALERT_LENGTH:
            return f"probably an encrypted alert ({length} bytes = {alert})"
        return "encrypted handshake"
    if length == ENCRYPTED_ALERT_LENGTH:
        return f"probably an encrypted alert, e.g. close_notify ({length} bytes = {alert})"
    return "encrypted application data (or a post-handshake message)"


def _record_note(
    record: TlsRecord,
    *,
    handshake_done: bool,
    tls13: bool,
    encrypted: bool,
    handshake_text: str | None,
) -> str:
    kind = record.content_type
    if kind == CHANGE_CIPHER_SPEC:
        if tls13:
            return "middlebox compatibility (TLS 1.3 ignores it)"
        return "the sender switches to encrypted records"
    if kind == ALERT:
        if record.length != 2:
            return f"encrypted alert ({record.length} bytes: level and description hidden)"
        return describe_alert(record.payload) if len(record.payload) == 2 else ""
    if kind == HANDSHAKE:
        if encrypted:
            return "encrypted handshake message (finished, if first after change_cipher_spec)"
        if handshake_text is not None:
            return handshake_text
        messages, _ = parse_handshake_messages(record.payload)
        return _message_list(messages)
    if kind == APPLICATION_DATA:
        return _application_data(record.length, handshake_done=handshake_done, tls13=tls13)
    if kind == HEARTBEAT:
        return "heartbeat (RFC 6520)"
    return ""


def _message_list(messages: list[HandshakeMessage]) -> str:
    parts = []
    for message in messages:
        part = f"{handshake_type_name(message.msg_type)} len={message.length}"
        if not message.complete:
            part += " (continues)"
        parts.append(part)
    return ", ".join(parts)


def _record_line(record: TlsRecord, note: str) -> str:
    head = f"{content_type_name(record.content_type)} {version_name(record.version)}"
    head += f" len={record.length}"
    if note:
        head += f" {note}"
    return f"{head} | {hex_bytes(record.header + record.payload)}"


def describe_record(
    record: TlsRecord, *, handshake_done: bool, tls13: bool, encrypted: bool = False
) -> str:
    """One annotated line for ``record``, ending with the hex of its first 16 bytes.

    ``handshake(22) TLS 1.0 len=512 client_hello(1) len=508 | 16 03 01 02 00 ...``;
    ``alert(21) TLS 1.2 len=2 fatal(2) unknown_ca(48) - ... | 15 03 03 00 02 02 30``.
    ``tls13`` and ``handshake_done`` decide how an ``application_data`` record is read
    (encrypted handshake, probable encrypted alert, data); ``encrypted`` says a TLS 1.2
    handshake or alert record follows the sender's ChangeCipherSpec.  A record with an
    empty payload (a header alone, as :mod:`ssl` reports it) is described by its header.
    """
    note = _record_note(
        record,
        handshake_done=handshake_done,
        tls13=tls13,
        encrypted=encrypted,
        handshake_text=None,
    )
    return _record_line(record, note)


# -- X.509 names (minimal DER reader) ------------------------------------------------------

_NAME_ATTRIBUTES = {
    "2.5.4.3": "CN",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "1.2.840.113549.1.9.1": "emailAddress",
    "0.9.2342.19200300.100.1.25": "DC",
}
_STRING_CODECS = {12: "utf-8", 19: "ascii", 22: "ascii", 20: "latin-1", 30: "utf-16-be"}


def _der_item(reader: _Reader) -> tuple[int, bytes]:
    tag = reader.uint(1)
    size = reader.uint(1)
    if size & 0x80:
        count = size & 0x7F
        if not 1 <= count <= 3:
            raise ValueError("unsupported DER length")
        size = reader.uint(count)
    return tag, reader.take(size)


def _der_content(data: bytes, tag: int) -> bytes:
    try:
        found, content = _der_item(_Reader(data))
    except _Short as exc:
        raise ValueError("truncated DER") from exc
    if found != tag:
        raise ValueError(f"DER tag 0x{found:02x} where 0x{tag:02x} was expected")
    return content


def _oid(data: bytes) -> str:
    if not data:
        raise ValueError("empty OID")
    parts = [min(data[0] // 40, 2), data[0] - 40 * min(data[0] // 40, 2)]
    value = 0
    for byte in data[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(str(p) for p in parts)


def _name_text(reader: _Reader) -> str:
    """``O=...,CN=...`` from the content of a DER Name, in certificate order."""
    fields = []
    try:
        while reader.remaining:
            _, rdn = _der_item(reader)
            attributes = _Reader(rdn)
            while attributes.remaining:
                _, pair = _der_item(attributes)
                inner = _Reader(pair)
                _, oid = _der_item(inner)
                string_tag, value = _der_item(inner)
                dotted = _oid(oid)
                codec = _STRING_CODECS.get(string_tag, "latin-1")
                text = value.decode(codec, "replace")
                fields.append(f"{_NAME_ATTRIBUTES.get(dotted, dotted)}={text}")
    except _Short as exc:
        raise ValueError("truncated DER name") from exc
    return ",".join(fields)


def certificate_names(der: bytes) -> tuple[str, str]:
    """``(subject, issuer)`` of a DER certificate as ``O=...,CN=...`` strings.

    A minimal reader (no dependency); raises ValueError on anything unexpected.
    """
    tbs = _Reader(_der_content(_der_content(der, 0x30), 0x30))
    try:
        tag, _ = _der_item(tbs)
        if tag == 0xA0:  # explicit version
            _der_item(tbs)  # serial number
        _der_item(tbs)  # signature algorithm
        issuer = _der_item(tbs)[1]
        _der_item(tbs)  # validity
        subject = _der_item(tbs)[1]
    except _Short as exc:
        raise ValueError("truncated certificate") from exc
    return _name_text(_Reader(subject)), _name_text(_Reader(issuer))


def _quote(text: str) -> str:
    return f'"{text}"' if (" " in text or not text) else text


# -- hex dumps ----------------------------------------------------------------------------

_DIRECTION = re.compile(r"^\s*(?P<dir>[CcSs]>|>|<)(?=[\s0-9A-Fa-f]|$)\s*(?P<rest>.*)$")
_OPENSSL_MSG = re.compile(r"^\s*(<<<|>>>) ")
_HEXDUMP_C = re.compile(
    r"^(?P<off>[0-9A-Fa-f]{4,16})\s{2,}(?P<hex>(?:[0-9A-Fa-f]{2}\s{1,2}){1,16})\s*\|.*\|$"
)
_XXD = re.compile(r"^(?P<off>[0-9A-Fa-f]{4,16}):\s?(?P<rest>.*)$")
_OFFSET = re.compile(r"^(?P<off>[0-9A-Fa-f]{4,16})(?P<sep>\s{2,}|\s*$)(?P<rest>.*)$")
_HEX_PAIR = re.compile(r"[0-9A-Fa-f]{2}")
_PLAIN_SEPARATORS = re.compile(r"0[xX](?=[0-9A-Fa-f])|[\s,:]")
_HEX_ONLY = re.compile(r"^[0-9A-Fa-f]*$")


@dataclass
class _DumpLine:
    number: int
    offset: int | None  # None for plain hex
    data: bytes
    repeat: bool = False  # a '*' line: the previous line repeats up to the next offset
    end: bool = False  # hexdump's final line holding the total length only


@dataclass
class _Block:
    direction: str
    first_line: int
    lines: list[_DumpLine] = field(default_factory=list)
    plain_digits: list[str] = field(default_factory=list)


def _hex_tokens(text: str, number: int) -> bytes:
    """The bytes of hex area ``text`` (pairs or groups, spaces allowed)."""
    digits = "".join(text.split())
    if not _HEX_ONLY.match(digits) or len(digits) % 2:
        raise ValueError(f"line {number}: cannot read hex bytes from {text.strip()!r}")
    return bytes.fromhex(digits)


def _offset_columns(rest: str, number: int, limit: int) -> bytes:
    """Bytes of an ``offset  hex  ascii`` line (Wireshark, od-like dumps), ``rest`` being
    the text after the offset.  The ASCII column is told apart from the hex by its
    length: it has one character per byte."""
    tokens = list(re.finditer(r"\S+", rest))
    count = 0
    while count < min(limit, len(tokens)) and re.fullmatch(
        r"[0-9A-Fa-f]{2}", tokens[count].group()
    ):
        count += 1
    if count == 0:
        raise ValueError(f"line {number}: no hex bytes after the offset in {rest.strip()!r}")
    chosen = count  # no recognisable ASCII column: every leading pair is a byte
    for n in range(count, 0, -1):
        after = rest[tokens[n - 1].end() :]
        gap = len(after) - len(after.lstrip(" \t"))
        width = len(after.strip(" \t\r\n"))
        if gap >= 2 and (width == n or (n > 8 and width == n + 1)):  # n+1: a middle space
            chosen = n
            break
    return bytes.fromhex("".join(t.group() for t in tokens[:chosen]))


def _read_dump_line(text: str, number: int, offset_mode: bool | None) -> _DumpLine:
    stripped = text.strip()
    if stripped == "*":
        return _DumpLine(number, -1, b"", repeat=True)
    if (match := _HEXDUMP_C.match(stripped)) is not None:
        return _DumpLine(number, int(match["off"], 16), _hex_tokens(match["hex"], number))
    if (match := _XXD.match(stripped)) is not None and offset_mode is not False:
        hex_area = re.split(r"\s{2,}", match["rest"].strip(), maxsplit=1)[0]
        return _DumpLine(number, int(match["off"], 16), _hex_tokens(hex_area, number))
    match = _OFFSET.match(stripped)
    if match is not None and offset_mode is not False:
        offset = int(match["off"], 16)
        if not match["rest"]:
            if offset_mode:
                return _DumpLine(number, offset, b"", end=True)
        elif _HEX_PAIR.match(match["rest"]) and match["sep"]:
            return _DumpLine(number, offset, _offset_columns(match["rest"], number, 16))
    if offset_mode:
        raise ValueError(f"line {number}: expected an offset and hex bytes, got {stripped!r}")
    digits = _PLAIN_SEPARATORS.sub("", stripped)
    if not _HEX_ONLY.match(digits):
        bad = next(c for c in digits if c not in "0123456789abcdefABCDEF")
        raise ValueError(
            f"line {number}: {bad!r} is not a hex digit in {stripped[:40]!r} (expected hex "
            "bytes: plain, xxd, hexdump -C or Wireshark hex dump)"
        )
    return _DumpLine(number, None, digits.encode("ascii"))


def _block_bytes(block: _Block) -> bytes:
    """The bytes of one direction block, checking offsets and expanding ``*`` lines."""
    lines = block.lines
    if all(line.offset is None for line in lines):
        digits = b"".join(line.data for line in lines).decode("ascii")
        if len(digits) % 2:
            raise ValueError(
                f"odd number of hex digits ({len(digits)}) in the dump starting at line "
                f"{block.first_line}: a digit is missing or extra"
            )
        return bytes.fromhex(digits)
    if any(line.offset is None for line in lines):
        raise ValueError(f"lines {block.first_line}-{lines[-1].number} mix offset and plain hex")
    out = bytearray()
    start: int | None = None
    previous = b""
    pending_repeat = False
    for line in lines:
        if line.repeat:
            pending_repeat = True
            continue
        assert line.offset is not None
        if start is None:
            start = line.offset
        position = start + len(out)
        if pending_repeat and previous and line.offset > position:
            gap = line.offset - position
            out += (previous * (gap // len(previous) + 1))[:gap]
            position = line.offset
        pending_repeat = False
        if line.offset != position:
            raise ValueError(
                f"line {line.number}: offset 0x{line.offset:x} where 0x{position:x} was "
                "expected (lines missing or reordered?)"
            )
        out += line.data
        previous = line.data
    return bytes(out)


def _split_blocks(text: str) -> list[_Block]:
    blocks: list[_Block] = []
    offset_mode: bool | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        if _OPENSSL_MSG.match(raw):
            raise ValueError(
                f"line {number}: this looks like 'openssl s_client -msg' output, which shows "
                "handshake messages without their record headers; paste the raw bytes "
                "(a capture, xxd or hexdump -C) instead"
            )
        direction = ""
        body = raw
        match = _DIRECTION.match(raw)
        if match is not None:
            direction, body = match["dir"].upper(), match["rest"]
            if not body.strip():
                continue
        if not blocks or blocks[-1].direction != direction:
            blocks.append(_Block(direction, number))
            offset_mode = None
        line = _read_dump_line(body, number, offset_mode)
        if offset_mode is None and not line.repeat:
            offset_mode = line.offset is not None
        blocks[-1].lines.append(line)
    return blocks


def _text_input_problem(text: str) -> NotTls | None:
    """A NotTls when ``text`` is plainly not a hex dump but the data itself (XML...)."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    if first.startswith(("<?", "<msg", "<!")) or _HTTP.match(first.encode("utf-8", "replace")):
        return NotTls(
            text.strip().encode("utf-8", "replace"),
            context="the input is text, not a hex dump; if these are the bytes received, they are ",
        )
    return None


@dataclass
class _Stream:
    """Decoding state of one direction."""

    label: str
    buffer: bytes = b""
    consumed: int = 0
    records: int = 0
    ccs_seen: bool = False
    since_ccs: int = 0  # records sent since the last change_cipher_spec
    handshake_pending: bytes = b""
    pending_type: int | None = None


@dataclass
class _Conversation:
    streams: dict[str, _Stream] = field(default_factory=dict)
    tls13: bool = False
    last_direction: str | None = None
    flight: int = 0
    server_hello_flight: int | None = None

    def handshake_done(self) -> bool:
        """TLS 1.3 seen from the wire: flights ClientHello / ServerHello... / client
        Finished... / the server's answer (tickets, or an alert); done after those."""
        if self.server_hello_flight is None or len(self.streams) < 2:
            return False
        return self.flight >= self.server_hello_flight + 3


def _handshake_lines(stream: _Stream, record: TlsRecord) -> tuple[str, list[HandshakeMessage]]:
    """Reassemble plaintext handshake messages across records: the text for the record
    line and the messages completed by this record."""
    data = stream.handshake_pending + record.payload
    parts = []
    if stream.handshake_pending and stream.pending_type is not None:
        parts.append(f"continuation of {handshake_type_name(stream.pending_type)}")
    done: list[HandshakeMessage] = []
    pos = 0
    stream.pending_type = None
    while len(data) - pos >= 4:
        length = int.from_bytes(data[pos + 1 : pos + 4], "big")
        message = HandshakeMessage(data[pos], length, data[pos + 4 : pos + 4 + length])
        started_here = pos >= len(stream.handshake_pending)
        if started_here:
            part = f"{handshake_type_name(message.msg_type)} len={length}"
            parts.append(part if message.complete else part + " (continues)")
        if not message.complete:
            stream.pending_type = message.msg_type
            break
        done.append(message)
        pos += 4 + length
    stream.handshake_pending = data[pos:]
    return ", ".join(parts), done


def _decode_record(conv: _Conversation, stream: _Stream, record: TlsRecord) -> list[str]:
    prefix = f"{stream.label} " if stream.label else ""
    if stream.label != conv.last_direction:
        conv.flight += 1
        conv.last_direction = stream.label
    stream.records += 1
    stream.since_ccs += 1
    first_after_ccs = stream.ccs_seen and stream.since_ccs == 1
    if record.content_type == APPLICATION_DATA and first_after_ccs:
        conv.tls13 = True  # TLS 1.2 follows ChangeCipherSpec with an encrypted handshake(22)
    encrypted = stream.ccs_seen and not conv.tls13
    done: list[HandshakeMessage] = []
    text: str | None = None
    if record.content_type == HANDSHAKE and not encrypted:
        text, done = _handshake_lines(stream, record)
        for message in done:
            if message.msg_type == SERVER_HELLO and selected_version(message.body) == TLS13:
                conv.tls13 = True
                if message.body[2:34] != _HRR_RANDOM:
                    conv.server_hello_flight = conv.flight
    note = _record_note(
        record,
        handshake_done=conv.handshake_done(),
        tls13=conv.tls13,
        encrypted=encrypted,
        handshake_text=text,
    )
    if record.content_type == CHANGE_CIPHER_SPEC:
        stream.ccs_seen = True
        stream.since_ccs = 0
    lines = [prefix + _record_line(record, note)]
    lines += [f"{prefix}    {describe_handshake(m, tls13=conv.tls13)}" for m in done]
    return lines


def _stream_end(conv: _Conversation, stream: _Stream) -> list[str]:
    prefix = f"{stream.label} " if stream.label else ""
    tail = stream.buffer
    lines = []
    if len(tail) >= HEADER_LENGTH:
        record = TlsRecord.from_header(tail[:5], tail[5:])
        lines += _decode_record(conv, stream, record)
        lines.append(
            f"{prefix}    (the dump ends inside this record: {len(record.payload)} of "
            f"{record.length} payload bytes present)"
        )
        if stream.handshake_pending:
            messages, _ = parse_handshake_messages(stream.handshake_pending)
            lines += [f"{prefix}    {describe_handshake(m, tls13=conv.tls13)}" for m in messages]
    elif tail:
        lines.append(f"{prefix}incomplete record header: {hex_bytes(tail)}")
    return lines


def decode_dump(text: str) -> list[str]:
    """Annotate a hex dump pasted by a user: one line per record, one per handshake message.

    Accepted forms: plain hex (with or without spaces, newlines, ``0x``, commas), ``xxd``
    output, ``hexdump -C`` output (``*`` repeat lines included), Wireshark "copy as hex
    dump" (offset, hex, ASCII).  Lines may start with ``>``/``<`` or ``C>``/``S>`` to mark
    the direction: each direction is its own byte stream, decoded in the order given.
    Raises ValueError (with the line number) for text that is not a hex dump, and
    :class:`NotTls` when the bytes are not TLS records.
    """
    problem = _text_input_problem(text)
    if problem is not None:
        raise problem
    blocks = _split_blocks(text)
    if not blocks:
        raise ValueError("no hex bytes found in the input")
    conv = _Conversation()
    lines: list[str] = []
    for block in blocks:
        stream = conv.streams.setdefault(block.direction, _Stream(block.direction))
        stream.buffer += _block_bytes(block)
        try:
            records, tail = parse_records(stream.buffer)
        except NotTls as exc:
            for record in exc.records:
                lines += _decode_record(conv, stream, record)
            where = f"{stream.label}: " if stream.label else ""
            raise NotTls(
                stream.buffer[exc.offset :],
                stream.consumed + exc.offset,
                what=exc.what,
                records=exc.records,
                context=where,
                decoded=lines,
            ) from None
        for record in records:
            lines += _decode_record(conv, stream, record)
        stream.consumed += len(stream.buffer) - len(tail)
        stream.buffer = tail
    for stream in conv.streams.values():
        lines += _stream_end(conv, stream)
    return lines
