"""Sans-IO knowledge of TLS records, for annotated traces and ``flom-tls decode``.

Reads bytes the way a troubleshooting guide reads a trace: the 5-byte record header
(content type, version, length), then, for plaintext handshake records, each handshake
message (type, 3-byte length, body), and alerts (level, description).  Nothing here
imports :mod:`ssl`; :mod:`pyflom.tls.trace` feeds it live data, :mod:`pyflom.tls.dump`
feeds it hex dumps pasted by users.

Two TLS 1.3 facts drive the interpretation of encrypted records:

* after the ServerHello everything is an ``application_data(23)`` record, so without
  keys a record's real type is hidden; during the handshake such a record is an
  encrypted handshake message, except that one of **19 bytes** (2 alert bytes + 1 inner
  content type + 16-byte AEAD tag) is very likely an encrypted alert;
* ``change_cipher_spec(20)`` records are sent for middlebox compatibility only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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

HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
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
HTTP_START = re.compile(rb"^(GET|POST|PUT|HEAD|DELETE|OPTIONS|PATCH|CONNECT|HTTP/)\b")


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
        elif HTTP_START.match(data):
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
    if random == HRR_RANDOM:
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
    return f"client certificate requested; {len(names)} acceptable CA name(s) sent"


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


def record_note(
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


def record_line(record: TlsRecord, note: str) -> str:
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
    note = record_note(
        record,
        handshake_done=handshake_done,
        tls13=tls13,
        encrypted=encrypted,
        handshake_text=None,
    )
    return record_line(record, note)


# -- X.509 names --------------------------------------------------------------------------


def certificate_names(der: bytes) -> tuple[str, str]:
    """``(subject, issuer)`` of a DER certificate as ``O=...,CN=...`` strings, in the
    certificate's own order.  Raises ValueError for anything that is not a certificate."""
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)

    def text(name: x509.Name) -> str:
        return ",".join(f"{attr.rfc4514_attribute_name}={attr.value!s}" for attr in name)

    return text(cert.subject), text(cert.issuer)


def _quote(text: str) -> str:
    return f'"{text}"' if (" " in text or not text) else text
