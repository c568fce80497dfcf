"""FLoM 1.7.2 wire format: message classes, ``encode``, ``decode`` and a stream ``Framer``.

The only module that knows the XML.  Pure functions, no I/O.  Output is byte-identical to
FLoM for every captured message; input is parsed with expat, refusing any DTD, entity
declaration or external entity (nothing in FLoM's protocol needs them).

Imported by the command on every run, so it imports only ``pyexpat``, ``binascii``,
``enum`` and :mod:`pyflom.rc`.
"""

from __future__ import annotations

import binascii
import pyexpat

from . import rc as _rc
from .record import Record

TYPE_CHECKING = False  # no runtime import of ``typing`` on the command's path
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn

__all__ = [
    "MAX_MESSAGE_BYTES",
    "MESSAGE_END",
    "PROTOCOL_LEVEL",
    "STEP_FIRST_ANSWER",
    "STEP_LATER_ANSWER",
    "STEP_REQUEST",
    "STEP_RESERVED",
    "XML_HEADER",
    "CodecError",
    "DiscoverAnswer",
    "DiscoverRequest",
    "Framer",
    "LockAnswer",
    "LockRequest",
    "Message",
    "Ping",
    "ShutdownAnswer",
    "ShutdownRequest",
    "StatusAnswer",
    "StatusRequest",
    "UnlockRequest",
    "Verb",
    "decode",
    "encode",
]

PROTOCOL_LEVEL = 3
MESSAGE_END = b"</msg>"
MAX_MESSAGE_BYTES = 4096  # daemon inbound cap (FLoM: 511); larger buffered data = error
XML_HEADER = '<?xml version="1.0" encoding="UTF-8" ?>'


class Verb:
    """The ``verb`` attribute of ``<msg>`` (plain ints, no Enum: a hot import path)."""

    LOCK = 1
    UNLOCK = 2
    PING = 3
    DISCOVER = 4
    MANAGEMENT = 5
    STATUS = 6  # pyflom extension: FLoM's daemon closes the connection on it


STEP_REQUEST = 8
STEP_FIRST_ANSWER = 16
STEP_LATER_ANSWER = 24
STEP_RESERVED = 32

_MAX_LOCK_MODE = 5  # EX
_INT_LIMIT = 1 << 63  # integers must fit a signed 64-bit value


# -- messages ---------------------------------------------------------------------------


class LockRequest(Record):
    """Lock request, client → daemon (verb 1, step 8).

    ``mode`` is sent for simple/hierarchical resources, ``quantity`` for numeric ones;
    ``lifespan`` is the resource idle lifespan in ms.  When decoding, absent attributes
    take these defaults: ``mode``/``quantity`` None, ``wait`` False, ``create`` True,
    ``lifespan`` 0; a missing ``<session>`` or ``peerid`` gives ``peer_id == ""``.
    """

    __slots__ = ("create", "lifespan", "mode", "name", "peer_id", "quantity", "wait")
    peer_id: str
    name: str
    wait: bool
    create: bool
    lifespan: int
    mode: int | None
    quantity: int | None

    def __init__(
        self,
        peer_id: str,
        name: str,
        wait: bool,
        create: bool,
        lifespan: int,
        mode: int | None = None,
        quantity: int | None = None,
    ) -> None:
        self.peer_id = peer_id
        self.name = name
        self.wait = wait
        self.create = create
        self.lifespan = lifespan
        self.mode = mode
        self.quantity = quantity


class LockAnswer(Record):
    """Lock answer, daemon → client (verb 1, step 16, 24 or 32).

    ``peer_id`` (the daemon's unique id) is serialised only when not None; FLoM sends it
    with every step-16 answer.  ``element`` is the locked element, when there is one.
    ``generation`` (pyflom extension) is the grant's fencing token: an extra attribute
    of ``<answer>`` after FLoM's, which FLoM's parser ignores as it ignores every
    unknown attribute; a FLoM daemon never sends it.
    """

    __slots__ = ("element", "generation", "peer_id", "rc", "step")
    step: int
    rc: int
    element: str | None
    peer_id: str | None
    generation: int | None

    def __init__(
        self,
        step: int,
        rc: int,
        element: str | None = None,
        peer_id: str | None = None,
        generation: int | None = None,
    ) -> None:
        self.step = step
        self.rc = rc
        self.element = element
        self.peer_id = peer_id
        self.generation = generation


class UnlockRequest(Record):
    """Unlock, client → daemon (verb 2, step 8); ``rollback`` absent on input → False."""

    __slots__ = ("name", "rollback")
    name: str
    rollback: bool

    def __init__(self, name: str, rollback: bool) -> None:
        self.name = name
        self.rollback = rollback


class ShutdownRequest(Record):
    """Daemon shutdown (management), client → daemon (verb 5, step 8).

    ``immediate`` absent on input → False; missing session/peerid → ``peer_id == ""``.
    """

    __slots__ = ("immediate", "peer_id")
    peer_id: str
    immediate: bool

    def __init__(self, peer_id: str, immediate: bool) -> None:
        self.peer_id = peer_id
        self.immediate = immediate


class ShutdownAnswer(Record):
    """pyflom extension (verb 5, step 16): the daemon refused a management request.

    Sent only on refusal, just before the daemon closes the connection; FLoM's daemon
    never answers management requests, and FLoM's client only logs FLM020N for it.
    """

    __slots__ = ("rc",)
    rc: int

    def __init__(self, rc: int) -> None:
        self.rc = rc


class StatusRequest(Record):
    """pyflom extension (verb 6, step 8): ask the daemon for its status document.

    ``resource`` (optional) narrows it to the resource that name locks.  A FLoM daemon
    does not know verb 6 and closes the connection.
    """

    __slots__ = ("peer_id", "resource")
    peer_id: str
    resource: str | None

    def __init__(self, peer_id: str, resource: str | None = None) -> None:
        self.peer_id = peer_id
        self.resource = resource


class StatusAnswer(Record):
    """pyflom extension (verb 6, step 16): the status document (UTF-8 JSON, carried in
    base64) when ``rc`` is 0, nothing otherwise."""

    __slots__ = ("document", "rc")
    rc: int
    document: bytes

    def __init__(self, rc: int, document: bytes = b"") -> None:
        self.rc = rc
        self.document = document


class DiscoverRequest(Record):
    """Multicast discovery request, client → group (verb 4, step 8)."""

    __slots__ = ()


class DiscoverAnswer(Record):
    """Discovery reply, daemon → client (verb 4, step 16): where the daemon listens."""

    __slots__ = ("address", "port")
    address: str
    port: int

    def __init__(self, address: str, port: int) -> None:
        self.address = address
        self.port = port


class Ping(Record):
    """Ping (verb 3): step 8 daemon → client, step 16 client → daemon (never used)."""

    __slots__ = ("step",)
    step: int

    def __init__(self, step: int) -> None:
        self.step = step


Message = (
    LockRequest
    | LockAnswer
    | UnlockRequest
    | ShutdownRequest
    | ShutdownAnswer
    | StatusRequest
    | StatusAnswer
    | DiscoverRequest
    | DiscoverAnswer
    | Ping
)


class CodecError(Exception):
    """A message that cannot be encoded, framed or decoded.

    ``rc`` is the matching FLoM reason code: ``MSG_DESERIALIZE_ERROR`` (malformed),
    ``PROTOCOL_LEVEL_MISMATCH`` (``level`` ≠ 3), ``PROTOCOL_ERROR`` (verb/step pair not
    in the protocol), ``INVALID_MSG_LENGTH`` (too big), ``INVALID_PROPERTY_VALUE`` (a
    value XML cannot carry, on encoding).
    """

    rc: int

    def __init__(self, message: str, rc: int = _rc.MSG_DESERIALIZE_ERROR) -> None:
        super().__init__(message)
        self.rc = rc


def _fail(message: str, code: int = _rc.MSG_DESERIALIZE_ERROR) -> NoReturn:
    raise CodecError(message, code)


# -- encoding ---------------------------------------------------------------------------

_ESCAPES = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        '"': "&quot;",
        "\t": "&#9;",
        "\n": "&#10;",
        "\r": "&#13;",
    }
)


def _attr(value: str, what: str) -> str:
    """``value`` escaped for a double-quoted attribute (Q16: FLoM does not escape)."""
    if not (value.isascii() and value.isprintable()):
        for char in value:
            code = ord(char)
            if (
                (code < 0x20 and char not in "\t\n\r")
                or 0xD800 <= code <= 0xDFFF
                or code in (0xFFFE, 0xFFFF)
            ):
                _fail(
                    f"{what} contains U+{code:04X}, which XML cannot carry",
                    _rc.INVALID_PROPERTY_VALUE,
                )
    return value.translate(_ESCAPES)


def _b64(name: str) -> str:
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError:
        _fail("resource name is not valid Unicode text", _rc.INVALID_PROPERTY_VALUE)
    return binascii.b2a_base64(raw, newline=False).decode("ascii")


def _head(verb: int, step: int) -> str:
    return f'{XML_HEADER}<msg level="{PROTOCOL_LEVEL}" verb="{verb:d}" step="{step:d}">'


def encode(msg: Message) -> bytes:
    """Serialise ``msg`` exactly as FLoM 1.7.2 does (plus XML escaping of attributes).

    Raises :class:`CodecError` (``INVALID_PROPERTY_VALUE``) for text XML 1.0 cannot
    carry (control characters other than tab/newline/CR, lone surrogates).
    """
    if isinstance(msg, LockRequest):
        attrs = f'name="{_b64(msg.name)}"'
        if msg.mode is not None:
            attrs += f' mode="{msg.mode:d}"'
        attrs += f' wait="{1 if msg.wait else 0}"'
        if msg.quantity is not None:
            attrs += f' quantity="{msg.quantity:d}"'
        attrs += f' create="{1 if msg.create else 0}" lifespan="{msg.lifespan:d}"'
        text = (
            f'{_head(Verb.LOCK, STEP_REQUEST)}<session peerid="{_attr(msg.peer_id, "peer id")}"/>'
            f"<resource {attrs}/></msg>"
        )
    elif isinstance(msg, LockAnswer):
        text = _head(Verb.LOCK, msg.step)
        if msg.peer_id is not None:
            text += f'<session peerid="{_attr(msg.peer_id, "peer id")}"/>'
        text += f'<answer rc="{msg.rc:d}"'
        if msg.element is not None:
            text += f' element="{_attr(msg.element, "element")}"'
        if msg.generation is not None:
            text += f' generation="{msg.generation:d}"'
        text += "/></msg>"
    elif isinstance(msg, UnlockRequest):
        text = (
            f'{_head(Verb.UNLOCK, STEP_REQUEST)}<resource name="{_b64(msg.name)}" '
            f'rollback="{1 if msg.rollback else 0}" /></msg>'
        )
    elif isinstance(msg, ShutdownRequest):
        text = (
            f"{_head(Verb.MANAGEMENT, STEP_REQUEST)}"
            f'<session peerid="{_attr(msg.peer_id, "peer id")}"/>'
            f'<shutdown immediate="{1 if msg.immediate else 0}"/></msg>'
        )
    elif isinstance(msg, ShutdownAnswer):
        text = f'{_head(Verb.MANAGEMENT, STEP_FIRST_ANSWER)}<answer rc="{msg.rc:d}"/></msg>'
    elif isinstance(msg, StatusRequest):
        resource = "" if msg.resource is None else f' resource="{_b64(msg.resource)}"'
        text = (
            f"{_head(Verb.STATUS, STEP_REQUEST)}"
            f'<session peerid="{_attr(msg.peer_id, "peer id")}"/><status{resource}/></msg>'
        )
    elif isinstance(msg, StatusAnswer):
        document = binascii.b2a_base64(msg.document, newline=False).decode("ascii")
        text = (
            f'{_head(Verb.STATUS, STEP_FIRST_ANSWER)}<status rc="{msg.rc:d}" '
            f'document="{document}"/></msg>'
        )
    elif isinstance(msg, DiscoverRequest):
        text = f"{_head(Verb.DISCOVER, STEP_REQUEST)}</msg>"
    elif isinstance(msg, DiscoverAnswer):
        text = (
            f'{_head(Verb.DISCOVER, STEP_FIRST_ANSWER)}<network address="'
            f'{_attr(msg.address, "address")}" port="{msg.port:d}"/></msg>'
        )
    elif isinstance(msg, Ping):
        text = f"{_head(Verb.PING, msg.step)}</msg>"
    else:
        raise TypeError(f"not a FLoM message: {msg!r}")
    return text.encode("utf-8")


# -- decoding ---------------------------------------------------------------------------

# (verb, step) → child elements allowed in that message.
_CHILDREN: dict[tuple[int, int], frozenset[str]] = {
    (Verb.LOCK, STEP_REQUEST): frozenset({"session", "resource"}),
    (Verb.LOCK, STEP_FIRST_ANSWER): frozenset({"session", "answer"}),
    (Verb.LOCK, STEP_LATER_ANSWER): frozenset({"session", "answer"}),
    (Verb.LOCK, STEP_RESERVED): frozenset({"session", "answer"}),
    (Verb.UNLOCK, STEP_REQUEST): frozenset({"resource"}),
    (Verb.PING, STEP_REQUEST): frozenset(),
    (Verb.PING, STEP_FIRST_ANSWER): frozenset(),
    (Verb.DISCOVER, STEP_REQUEST): frozenset(),
    (Verb.DISCOVER, STEP_FIRST_ANSWER): frozenset({"network"}),
    (Verb.MANAGEMENT, STEP_REQUEST): frozenset({"session", "shutdown"}),
    (Verb.MANAGEMENT, STEP_FIRST_ANSWER): frozenset({"answer"}),
    (Verb.STATUS, STEP_REQUEST): frozenset({"session", "status"}),
    (Verb.STATUS, STEP_FIRST_ANSWER): frozenset({"status"}),
}
_KNOWN = frozenset({"session", "resource", "answer", "shutdown", "network", "status"})
_VERB_NAMES = {1: "lock", 2: "unlock", 3: "ping", 4: "discover", 5: "management", 6: "status"}


def _int(value: str, what: str, low: int = -_INT_LIMIT, high: int = _INT_LIMIT - 1) -> int:
    """A plain decimal integer (optional ``-``; no ``+``, blanks, ``_`` or non-ASCII)."""
    digits = value[1:] if value[:1] == "-" else value
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 19:
        _fail(f"{what}={value!r} is not a decimal integer")
    number = int(value)
    if not low <= number <= high:
        _fail(f"{what}={value} is out of range {low}..{high}")
    return number


def _bool(value: str | None, what: str, default: bool) -> bool:
    if value is None:
        return default
    if value == "1":
        return True
    if value == "0":
        return False
    _fail(f"{what}={value!r} is not 0 or 1")


def _unb64_bytes(value: str, what: str) -> bytes:
    try:
        raw = binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        _fail(f"{what} {value[:40]!r} is not valid base64")
    # Only the canonical form (what b2a_base64 gives) is accepted: no stray bits.
    if binascii.b2a_base64(raw, newline=False) != value.encode("ascii"):
        _fail(f"{what} {value[:40]!r} is not canonical base64")
    return raw


def _unb64(value: str) -> str:
    raw = _unb64_bytes(value, "resource name")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        _fail(f"resource name {value!r} is not UTF-8 text")


def _refuse(what: str) -> NoReturn:
    _fail(f"{what} not allowed")


def _refuse_dtd(*_args: object) -> NoReturn:
    _refuse("DTD")


def _refuse_entity(*_args: object) -> NoReturn:
    _refuse("entity declaration")


def _refuse_external(*_args: object) -> NoReturn:
    _refuse("external entity")


def _refuse_notation(*_args: object) -> NoReturn:
    _refuse("notation declaration")


class _Collector:
    """expat callbacks: check the element structure, keep each child's attributes."""

    __slots__ = ("children", "depth", "step", "verb")

    def __init__(self) -> None:
        self.depth = 0
        self.verb = 0
        self.step = 0
        self.children: dict[str, dict[str, str]] = {}

    def start(self, name: str, attrs: dict[str, str]) -> None:
        depth = self.depth
        self.depth = depth + 1
        if depth == 0:
            if name != "msg":
                _fail(f"root element must be <msg>, not <{name}>")
            self._header(attrs)
            return
        if name not in _KNOWN:
            _fail(f"unknown element <{name}>" if name != "msg" else "nested <msg>")
        if depth > 1:
            _fail(f"element <{name}> nested inside another element")
        if name not in _CHILDREN[self.verb, self.step]:
            _fail(f"unexpected <{name}> in a {_VERB_NAMES[self.verb]}/{self.step} message")
        if name in self.children:
            _fail(f"duplicate <{name}>")
        self.children[name] = attrs

    def end(self, _name: str) -> None:
        self.depth -= 1

    def _header(self, attrs: dict[str, str]) -> None:
        level = attrs.get("level")
        if level is not None and level != str(PROTOCOL_LEVEL):
            _fail(
                f"protocol level {level!r}, expected {PROTOCOL_LEVEL}", _rc.PROTOCOL_LEVEL_MISMATCH
            )
        verb, step = attrs.get("verb"), attrs.get("step")
        if verb is None or step is None:
            _fail("<msg> lacks the verb or step attribute")
        self.verb = _int(verb, "verb")
        self.step = _int(step, "step")
        if (self.verb, self.step) not in _CHILDREN:
            _fail(f"verb {self.verb} step {self.step} is not a FLoM message", _rc.PROTOCOL_ERROR)

    def _required(self, element: str, attr: str) -> str:
        attrs = self.children.get(element)
        if attrs is None:
            _fail(f"missing <{element}> element")
        value = attrs.get(attr)
        if value is None:
            _fail(f"<{element}> lacks the {attr} attribute")
        return value

    def _peer_id(self) -> str:
        return self.children.get("session", {}).get("peerid", "")

    def build(self) -> Message:
        verb, step = self.verb, self.step
        if verb == Verb.LOCK:
            if step == STEP_REQUEST:
                name = _unb64(self._required("resource", "name"))
                res = self.children["resource"]
                mode = res.get("mode")
                quantity = res.get("quantity")
                lifespan = res.get("lifespan")
                return LockRequest(
                    peer_id=self._peer_id(),
                    name=name,
                    wait=_bool(res.get("wait"), "wait", False),
                    create=_bool(res.get("create"), "create", True),
                    lifespan=0 if lifespan is None else _int(lifespan, "lifespan", 0),
                    mode=None if mode is None else _int(mode, "mode", 0, _MAX_LOCK_MODE),
                    quantity=None if quantity is None else _int(quantity, "quantity", 0),
                )
            code = _int(self._required("answer", "rc"), "rc")
            session = self.children.get("session")
            generation = self.children["answer"].get("generation")
            return LockAnswer(
                step=step,
                rc=code,
                element=self.children["answer"].get("element"),
                peer_id=None if session is None else session.get("peerid", ""),
                generation=None if generation is None else _int(generation, "generation", 0),
            )
        if verb == Verb.UNLOCK:
            name = _unb64(self._required("resource", "name"))
            rollback = self.children["resource"].get("rollback")
            return UnlockRequest(name=name, rollback=_bool(rollback, "rollback", False))
        if verb == Verb.MANAGEMENT:
            if step == STEP_FIRST_ANSWER:
                return ShutdownAnswer(rc=_int(self._required("answer", "rc"), "rc"))
            if "shutdown" not in self.children:
                _fail("management message without <shutdown>")
            immediate = self.children["shutdown"].get("immediate")
            return ShutdownRequest(
                peer_id=self._peer_id(), immediate=_bool(immediate, "immediate", False)
            )
        if verb == Verb.STATUS:
            if "status" not in self.children:
                _fail("status message without <status>")
            attrs = self.children["status"]
            if step == STEP_REQUEST:
                resource = attrs.get("resource")
                return StatusRequest(
                    peer_id=self._peer_id(), resource=None if resource is None else _unb64(resource)
                )
            return StatusAnswer(
                rc=_int(self._required("status", "rc"), "rc"),
                document=_unb64_bytes(attrs.get("document", ""), "status document"),
            )
        if verb == Verb.DISCOVER:
            if step == STEP_REQUEST:
                return DiscoverRequest()
            address = self._required("network", "address")
            port = _int(self._required("network", "port"), "port", 0, 65535)
            return DiscoverAnswer(address=address, port=port)
        return Ping(step=step)


_HEADER_BYTES = XML_HEADER.encode("ascii")


def _lock_request(mode: bool, quantity: bool) -> Callable[[list[str]], Message]:
    def build(values: list[str]) -> LockRequest:
        peer_id, name, *rest = values
        mode_v = _int(rest.pop(0), "mode", 0, _MAX_LOCK_MODE) if mode else None
        wait = _bool(rest.pop(0), "wait", False)
        quantity_v = _int(rest.pop(0), "quantity", 0) if quantity else None
        create = _bool(rest.pop(0), "create", True)
        lifespan = _int(rest.pop(0), "lifespan", 0)
        return LockRequest(peer_id, _unb64(name), wait, create, lifespan, mode_v, quantity_v)

    return build


def _answer(
    step: int, session: bool, element: bool, generation: bool
) -> Callable[[list[str]], Message]:
    def build(values: list[str]) -> LockAnswer:
        peer_id = values.pop(0) if session else None
        code = _int(values.pop(0), "rc")
        element_v = values.pop(0) if element else None
        generation_v = _int(values.pop(0), "generation", 0) if generation else None
        return LockAnswer(step, code, element_v, peer_id, generation_v)

    return build


def _answer_shapes(
    step: int, session: bool
) -> dict[tuple[str, ...], Callable[[list[str]], Message]]:
    """The literals of a lock answer, with and without element and generation."""
    first = "/><answer rc=" if session else None
    shapes = {}
    for element in (False, True):
        for generation in (False, True):
            literals = [first] if first else []
            if element:
                literals.append(" element=")
            if generation:
                literals.append(" generation=")
            literals.append("/></msg>")
            shapes[tuple(literals)] = _answer(step, session, element, generation)
    return shapes


def _status_answer(values: list[str]) -> StatusAnswer:
    return StatusAnswer(_int(values[0], "rc"), _unb64_bytes(values[1], "status document"))


def _unlock(values: list[str]) -> UnlockRequest:
    return UnlockRequest(_unb64(values[0]), _bool(values[1], "rollback", False))


# FLoM's own serialisation of the frequent messages: the text after a fixed prefix, split
# on '"', alternates attribute values and fixed literals.  prefix -> {literals: builder}
_FLOM_SHAPES: tuple[tuple[str, dict[tuple[str, ...], Callable[[list[str]], Message]]], ...] = (
    (
        XML_HEADER + '<msg level="3" verb="1" step="8"><session peerid="',
        {
            ("/><resource name=", " mode=", " wait=", " create=", " lifespan=", "/></msg>"): (
                _lock_request(mode=True, quantity=False)
            ),
            ("/><resource name=", " wait=", " quantity=", " create=", " lifespan=", "/></msg>"): (
                _lock_request(mode=False, quantity=True)
            ),
            ("/><resource name=", " wait=", " create=", " lifespan=", "/></msg>"): (
                _lock_request(mode=False, quantity=False)
            ),
        },
    ),
    (
        XML_HEADER + '<msg level="3" verb="2" step="8"><resource name="',
        {(" rollback=", " /></msg>"): _unlock},
    ),
    (
        XML_HEADER + '<msg level="3" verb="1" step="16"><session peerid="',
        _answer_shapes(16, session=True),
    ),
    (
        XML_HEADER + '<msg level="3" verb="1" step="24"><answer rc="',
        _answer_shapes(24, session=False),
    ),
    (  # a status document runs to megabytes: expat would take tens of milliseconds
        XML_HEADER + '<msg level="3" verb="6" step="16"><status rc="',
        {(" document=", "/></msg>"): _status_answer},
    ),
)


def _decode_flom_shape(data: bytes) -> Message | None:
    """Decode a message in exactly FLoM's serialisation without a parser; None for
    anything else (which then goes through expat).  Both paths give the same result on
    every message this accepts (a property test checks it)."""
    if b"&" in data or not data.isascii():
        return None
    text = data.decode("ascii")
    for prefix, shapes in _FLOM_SHAPES:
        if text.startswith(prefix):
            chunks = text[len(prefix) :].split('"')
            build = shapes.get(tuple(chunks[1::2]))
            values = chunks[0::2]
            if build is None:
                return None
            joined = "".join(values)
            if "<" in joined or "\t" in joined or "\n" in joined or "\r" in joined:
                return None
            return build(values)
    return None


def decode(data: bytes) -> Message:
    """Parse one whole message, ``data`` ending with ``</msg>`` (the header is optional).

    Raises :class:`CodecError` for anything that is not a well-formed FLoM message: DTDs
    and entity declarations, unknown or misplaced elements, a level other than 3
    (``PROTOCOL_LEVEL_MISMATCH``), a verb/step pair outside the protocol
    (``PROTOCOL_ERROR``), non-decimal integers, booleans other than 0/1, bad base64 or
    non-UTF-8 names, missing required attributes, bytes after ``</msg>``.  Unknown
    attributes are ignored.
    """
    end = data.find(MESSAGE_END)
    if end < 0:
        _fail("message not terminated by </msg>")
    if end + len(MESSAGE_END) != len(data):
        _fail("data continues after </msg>")
    message = _decode_flom_shape(data)
    return _decode_with_expat(data) if message is None else message


def _decode_with_expat(data: bytes) -> Message:
    """The general path of :func:`decode`: any XML, DTDs and entities refused."""
    collector = _Collector()
    parser = pyexpat.ParserCreate("UTF-8")
    parser.SetParamEntityParsing(pyexpat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.ElementDeclHandler = _refuse_dtd
    parser.AttlistDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_entity
    parser.UnparsedEntityDeclHandler = _refuse_entity
    parser.NotationDeclHandler = _refuse_notation
    parser.ExternalEntityRefHandler = _refuse_external
    parser.StartElementHandler = collector.start
    parser.EndElementHandler = collector.end
    try:
        parser.Parse(data, True)
    except pyexpat.ExpatError as exc:
        _fail(f"malformed XML: {exc}")
    return collector.build()


# -- framing ----------------------------------------------------------------------------


def _check_opening(pending: bytearray) -> None:
    """Refuse at once a stream that cannot be FLoM's: every message starts with ``<``.

    A TLS record (content type 0x14-0x17, major version 3) gets its own explanation:
    the peer speaks TLS to a side that has no TLS configured.
    """
    first = pending.lstrip(b" \t\r\n")[:1]
    if not first or first == b"<":
        return
    head = pending.lstrip(b" \t\r\n")[:3]
    if head[0] in (0x14, 0x15, 0x16, 0x17) and head[1:2] == b"\x03":
        _fail(
            "the peer sent a TLS record: it is configured for TLS and this side is not "
            "(configure the same TLS files on both sides, or none on either)",
            _rc.NO_TLS_CONNECTION,
        )
    _fail(f"not a FLoM message: it starts with byte 0x{first[0]:02x}, not '<'")


class Framer:
    """Split a byte stream into messages, each ending with ``</msg>``.

    After a :class:`CodecError` the stream is unusable (the caller closes it).
    """

    __slots__ = ("_buffer", "_max", "_scanned")

    def __init__(self, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._max = max_bytes
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the buffer known not to start a complete "</msg>"

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return the messages it completes, in order.

        Raises :class:`CodecError` (``INVALID_MSG_LENGTH``) when a message, or the
        unterminated rest, is longer than ``max_bytes``.
        """
        buffer = self._buffer
        if buffer:  # the rest of a message came before: continue it
            buffer += data
            stream: bytes | bytearray = buffer
            search = self._scanned
        else:  # usually whole messages: cut them from data itself, no copy to the buffer
            stream = data
            search = 0
        messages: list[bytes] = []
        start = 0
        while True:
            end = stream.find(MESSAGE_END, search)
            if end < 0:
                break
            end += len(MESSAGE_END)
            self._check(end - start)
            messages.append(bytes(stream[start:end]))
            start = search = end
        if stream is buffer:
            if start:
                del buffer[:start]
        elif start < len(data):
            buffer += data[start:]
        self._check(len(buffer))
        _check_opening(buffer)
        self._scanned = max(0, len(buffer) - len(MESSAGE_END) + 1)
        return messages

    def _check(self, size: int) -> None:
        if size > self._max:
            self._buffer.clear()
            self._scanned = 0
            _fail(f"message exceeds {self._max} bytes", _rc.INVALID_MSG_LENGTH)

    @property
    def pending(self) -> int:
        """Bytes of an incomplete message buffered."""
        return len(self._buffer)
