"""``flom-tls decode``: read a hex dump pasted by a user and annotate its TLS records.

Accepts plain hex, ``xxd``, ``hexdump -C`` and Wireshark-style dumps; lines starting
with ``>``/``<`` (or ``C>``/``S>``) mark the direction, each direction being a stream of
its own.  The annotation itself is :mod:`pyflom.tls.records`'.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .records import (
    APPLICATION_DATA,
    CHANGE_CIPHER_SPEC,
    HANDSHAKE,
    HEADER_LENGTH,
    HRR_RANDOM,
    HTTP_START,
    SERVER_HELLO,
    TLS13,
    HandshakeMessage,
    NotTls,
    TlsRecord,
    describe_handshake,
    handshake_type_name,
    hex_bytes,
    parse_handshake_messages,
    parse_records,
    record_line,
    record_note,
    selected_version,
)

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
    if first.startswith(("<?", "<msg", "<!")) or HTTP_START.match(first.encode("utf-8", "replace")):
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
                if message.body[2:34] != HRR_RANDOM:
                    conv.server_hello_flight = conv.flight
    note = record_note(
        record,
        handshake_done=conv.handshake_done(),
        tls13=conv.tls13,
        encrypted=encrypted,
        handshake_text=text,
    )
    if record.content_type == CHANGE_CIPHER_SPEC:
        stream.ccs_seen = True
        stream.since_ccs = 0
    lines = [prefix + record_line(record, note)]
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
