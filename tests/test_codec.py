"""Wire codec: captured FLoM 1.7.2 bytes, hostile input, framing and round trips."""

from __future__ import annotations

import binascii

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyflom import codec, rc
from pyflom.codec import (
    CodecError,
    DiscoverAnswer,
    DiscoverRequest,
    Framer,
    LockAnswer,
    LockRequest,
    Ping,
    ShutdownRequest,
    UnlockRequest,
    decode,
    encode,
)

HEADER = b'<?xml version="1.0" encoding="UTF-8" ?>'
CLIENT_ID = "3d1219c7c4c5404aaa1f6d2a48adfda4"
DAEMON_ID = "0a4f1e2d3c4b5a697887766554433221"


def lock_message(body: str, peer_id: str = CLIENT_ID) -> bytes:
    return (
        HEADER + b'<msg level="3" verb="1" step="8">'
        b'<session peerid="' + peer_id.encode() + b'"/>' + body.encode() + b"</msg>"
    )


def answer_message(step: int, body: str) -> bytes:
    return HEADER + f'<msg level="3" verb="1" step="{step}">{body}</msg>'.encode()


# -- golden: reference 4.3, 4.4, 4.6, 4.7 -----------------------------------------------

DEFAULT_LOCK = (
    b'<?xml version="1.0" encoding="UTF-8" ?><msg level="3" verb="1" step="8">'
    b'<session peerid="3d1219c7c4c5404aaa1f6d2a48adfda4"/>'
    b'<resource name="X1JFU09VUkNF" mode="5" wait="1" create="1" lifespan="0"/></msg>'
)

GOLDEN: list[tuple[bytes, codec.Message]] = [
    # 4.3 lock requests
    (DEFAULT_LOCK, LockRequest(CLIENT_ID, "_RESOURCE", True, True, 0, mode=5)),
    (
        lock_message('<resource name="TlszXQ==" wait="1" quantity="2" create="1" lifespan="0"/>'),
        LockRequest(CLIENT_ID, "N[3]", True, True, 0, quantity=2),
    ),
    (
        lock_message('<resource name="cmVkLmdyZWVu" wait="1" create="1" lifespan="0"/>'),
        LockRequest(CLIENT_ID, "red.green", True, True, 0),
    ),
    (
        lock_message('<resource name="L2EvYg==" mode="3" wait="1" create="1" lifespan="0"/>'),
        LockRequest(CLIENT_ID, "/a/b", True, True, 0, mode=3),
    ),
    (
        lock_message('<resource name="X1NfdHhbMV0=" wait="1" create="1" lifespan="0"/>'),
        LockRequest(CLIENT_ID, "_S_tx[1]", True, True, 0),
    ),
    # 4.4 lock answers
    (
        answer_message(16, f'<session peerid="{DAEMON_ID}"/><answer rc="0"/>'),
        LockAnswer(16, 0, peer_id=DAEMON_ID),
    ),
    (
        answer_message(16, f'<session peerid="{DAEMON_ID}"/><answer rc="1"/>'),
        LockAnswer(16, 1, peer_id=DAEMON_ID),
    ),
    (
        answer_message(16, f'<session peerid="{DAEMON_ID}"/><answer rc="4"/>'),
        LockAnswer(16, 4, peer_id=DAEMON_ID),
    ),
    (
        answer_message(16, f'<session peerid="{DAEMON_ID}"/><answer rc="0" element="red"/>'),
        LockAnswer(16, 0, element="red", peer_id=DAEMON_ID),
    ),
    (
        answer_message(
            16, f'<session peerid="{DAEMON_ID}"/><answer rc="0" element="03:56:37.47"/>'
        ),
        LockAnswer(16, 0, element="03:56:37.47", peer_id=DAEMON_ID),
    ),
    (
        answer_message(16, f'<session peerid="{DAEMON_ID}"/><answer rc="0" element="1"/>'),
        LockAnswer(16, 0, element="1", peer_id=DAEMON_ID),
    ),
    (
        b'<?xml version="1.0" encoding="UTF-8" ?><msg level="3" verb="1" step="24">'
        b'<answer rc="0"/></msg>',
        LockAnswer(24, 0),
    ),
    # 4.6 unlock and management
    (
        b'<?xml version="1.0" encoding="UTF-8" ?><msg level="3" verb="2" step="8">'
        b'<resource name="X1JFU09VUkNF" rollback="0" /></msg>',
        UnlockRequest("_RESOURCE", False),
    ),
    (
        b'<?xml version="1.0" encoding="UTF-8" ?><msg level="3" verb="5" step="8">'
        b'<session peerid="3d1219c7c4c5404aaa1f6d2a48adfda4"/><shutdown immediate="0"/></msg>',
        ShutdownRequest(CLIENT_ID, False),
    ),
    (
        b'<?xml version="1.0" encoding="UTF-8" ?><msg level="3" verb="5" step="8">'
        b'<session peerid="3d1219c7c4c5404aaa1f6d2a48adfda4"/><shutdown immediate="1"/></msg>',
        ShutdownRequest(CLIENT_ID, True),
    ),
    # 4.7 discover and ping
    (
        b'<?xml version="1.0" encoding="UTF-8" ?><msg level="3" verb="4" step="8"></msg>',
        DiscoverRequest(),
    ),
    (
        b'<?xml version="1.0" encoding="UTF-8" ?><msg level="3" verb="4" step="16">'
        b'<network address="127.0.0.1" port="28115"/></msg>',
        DiscoverAnswer("127.0.0.1", 28115),
    ),
    (
        b'<?xml version="1.0" encoding="UTF-8" ?><msg level="3" verb="4" step="16">'
        b'<network address="" port="41397"/></msg>',
        DiscoverAnswer("", 41397),
    ),
    (
        b'<?xml version="1.0" encoding="UTF-8" ?><msg level="3" verb="3" step="8"></msg>',
        Ping(8),
    ),
    (
        b'<?xml version="1.0" encoding="UTF-8" ?><msg level="3" verb="3" step="16"></msg>',
        Ping(16),
    ),
]


@pytest.mark.parametrize(("wire", "message"), GOLDEN)
def test_golden_encode(wire: bytes, message: codec.Message) -> None:
    assert encode(message) == wire


@pytest.mark.parametrize(("wire", "message"), GOLDEN)
def test_golden_decode(wire: bytes, message: codec.Message) -> None:
    assert decode(wire) == message


def test_captured_sizes() -> None:
    assert len(DEFAULT_LOCK) == 203
    assert len(encode(DiscoverRequest())) == 78


def test_header_constant() -> None:
    assert codec.XML_HEADER.encode() == HEADER
    assert codec.MESSAGE_END == b"</msg>"
    assert codec.PROTOCOL_LEVEL == 3


def test_mode_and_quantity_together_keep_both_orders() -> None:
    wire = encode(LockRequest("p", "x", False, False, 7, mode=1, quantity=2))
    assert b'name="eA==" mode="1" wait="0" quantity="2" create="0" lifespan="7"/>' in wire


def test_escaping_on_output() -> None:
    wire = encode(LockAnswer(16, 0, element='a&b<c>"d\te\nf\rg', peer_id="x"))
    assert b'element="a&amp;b&lt;c&gt;&quot;d&#9;e&#10;f&#13;g"' in wire
    assert decode(wire) == LockAnswer(16, 0, element='a&b<c>"d\te\nf\rg', peer_id="x")


def test_element_looking_like_end_tag_stays_inside() -> None:
    wire = encode(LockAnswer(24, 0, element="</msg>"))
    assert wire.count(b"</msg>") == 1
    assert Framer().feed(wire) == [wire]
    assert decode(wire).element == "</msg>"  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", ["\x01", "a\x1fb", "\ud800", "\ufffe"])
def test_encode_refuses_text_xml_cannot_carry(bad: str) -> None:
    with pytest.raises(CodecError) as info:
        encode(LockAnswer(16, 0, element=bad))
    assert info.value.rc == rc.INVALID_PROPERTY_VALUE


def test_encode_refuses_surrogate_name() -> None:
    with pytest.raises(CodecError):
        encode(UnlockRequest("\udc80", False))


def test_encode_refuses_non_message() -> None:
    with pytest.raises(TypeError):
        encode("hello")  # type: ignore[arg-type]


# -- decoding: lenient where FLoM is ----------------------------------------------------


def test_header_is_optional() -> None:
    assert decode(DEFAULT_LOCK[len(HEADER) :]) == GOLDEN[0][1]


def test_missing_level_accepted() -> None:
    assert decode(b'<msg verb="4" step="8"></msg>') == DiscoverRequest()


def test_unknown_attributes_ignored() -> None:
    wire = (
        b'<msg level="3" verb="2" step="8" color="blue">'
        b'<resource name="eA==" rollback="1" extra="?"/></msg>'
    )
    assert decode(wire) == UnlockRequest("x", True)


def test_lock_request_defaults() -> None:
    wire = b'<msg level="3" verb="1" step="8"><resource name="eA=="/></msg>'
    assert decode(wire) == LockRequest("", "x", wait=False, create=True, lifespan=0)


def test_answer_without_session_and_negative_rc() -> None:
    wire = b'<msg level="3" verb="1" step="16"><answer rc="-14"/></msg>'
    assert decode(wire) == LockAnswer(16, -14)


def test_comments_and_whitespace_ignored() -> None:
    wire = (
        b'<?xml version="1.0" encoding="UTF-8" ?><!-- hi -->\n<msg level="3" verb="5" step="8">'
        b' <shutdown immediate="1"/> </msg>'
    )
    assert decode(wire) == ShutdownRequest("", True)


def test_character_references_in_attributes() -> None:
    wire = b'<msg verb="1" step="24"><answer rc="0" element="&#65;&amp;&#x42;"/></msg>'
    assert decode(wire) == LockAnswer(24, 0, element="A&B")


# -- decoding: hostile or malformed input -----------------------------------------------


def decode_error(data: bytes) -> CodecError:
    with pytest.raises(CodecError) as info:
        decode(data)
    return info.value


def test_doctype_refused() -> None:
    error = decode_error(b'<!DOCTYPE msg><msg level="3" verb="4" step="8"></msg>')
    assert error.rc == rc.MSG_DESERIALIZE_ERROR
    assert "DTD not allowed" in str(error)


def test_billion_laughs_refused() -> None:
    entities = ['<!ENTITY lol "lol">'] + [
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
        for i in range(1, 10)
    ]
    data = (
        f'<?xml version="1.0"?><!DOCTYPE msg [{"".join(entities)}]>'
        '<msg level="3" verb="1" step="24"><answer rc="0" element="&lol9;"/></msg>'
    ).encode()
    assert "not allowed" in str(decode_error(data))


def test_external_entity_refused() -> None:
    data = (
        b'<!DOCTYPE msg [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        b'<msg level="3" verb="1" step="24"><answer rc="0" element="&xxe;"/></msg>'
    )
    assert "not allowed" in str(decode_error(data))


def test_external_dtd_refused() -> None:
    data = b'<!DOCTYPE msg SYSTEM "http://example.invalid/x.dtd"><msg verb="4" step="8"></msg>'
    assert "DTD not allowed" in str(decode_error(data))


def test_undefined_entity_refused() -> None:
    assert "malformed XML" in str(decode_error(b'<msg verb="4" step="8">&foo;</msg>'))


def test_unknown_element() -> None:
    data = b'<msg level="3" verb="1" step="24"><answer rc="0"/><foo/></msg>'
    error = decode_error(data)
    assert error.rc == rc.MSG_DESERIALIZE_ERROR
    assert "unknown element <foo>" in str(error)


@pytest.mark.parametrize(
    "data",
    [
        b'<foo verb="4" step="8"></foo></msg>',  # root is not msg
        b'<msg verb="4" step="8"><msg/></msg>',  # nested msg
        b'<msg verb="1" step="24"><answer rc="0"><session/></answer></msg>',  # nesting
        b'<msg verb="1" step="24"><answer rc="0"/><answer rc="1"/></msg>',  # duplicate
        b'<msg verb="2" step="8"><resource name="eA=="/><answer rc="0"/></msg>',  # misplaced
        b'<msg verb="4" step="8"><network address="" port="1"/></msg>',  # misplaced
    ],
)
def test_bad_structure(data: bytes) -> None:
    assert decode_error(data).rc == rc.MSG_DESERIALIZE_ERROR


@pytest.mark.parametrize("level", [b"2", b"0", b"4", b"three", b""])
def test_bad_level(level: bytes) -> None:
    data = b'<msg level="' + level + b'" verb="4" step="8"></msg>'
    assert decode_error(data).rc == rc.PROTOCOL_LEVEL_MISMATCH


@pytest.mark.parametrize(
    ("verb", "step"), [(1, 0), (1, 40), (2, 16), (3, 24), (4, 24), (5, 24), (6, 24), (7, 8), (0, 8)]
)
def test_unknown_verb_step_pair(verb: int, step: int) -> None:
    data = f'<msg level="3" verb="{verb}" step="{step}"></msg>'.encode()
    assert decode_error(data).rc == rc.PROTOCOL_ERROR


def test_missing_verb() -> None:
    assert decode_error(b'<msg level="3" step="8"></msg>').rc == rc.MSG_DESERIALIZE_ERROR


@pytest.mark.parametrize(
    "value", ["+1", " 1", "1 ", "1_0", "0x10", "1.0", "", "-", "\u0661", "1e3", "9" * 25]
)
def test_non_decimal_integers(value: str) -> None:
    data = f'<msg verb="1" step="24"><answer rc="{value}"/></msg>'.encode()
    assert decode_error(data).rc == rc.MSG_DESERIALIZE_ERROR
    data = f'<msg verb="{value}" step="8"></msg>'.encode()
    assert decode_error(data).rc == rc.MSG_DESERIALIZE_ERROR


@pytest.mark.parametrize(
    "resource",
    [
        '<resource name="eA==" wait="2"/>',
        '<resource name="eA==" create="yes"/>',
        '<resource name="eA==" mode="6"/>',
        '<resource name="eA==" mode="-1"/>',
        '<resource name="eA==" quantity="-1"/>',
        '<resource name="eA==" lifespan="-5"/>',
        '<resource wait="1"/>',  # no name
        "",  # no resource
    ],
)
def test_bad_lock_request_values(resource: str) -> None:
    data = f'<msg verb="1" step="8"><session peerid="p"/>{resource}</msg>'.encode()
    assert decode_error(data).rc == rc.MSG_DESERIALIZE_ERROR


@pytest.mark.parametrize(
    "name",
    [
        "X1JFU09VUkNF!",  # not base64
        "eA=",  # bad padding
        "eA",  # no padding
        "eR==",  # stray bits: not canonical
        "e A==",  # blank
        "é===",  # not ASCII
        binascii.b2a_base64(b"\xff\xfe", newline=False).decode(),  # not UTF-8
        binascii.b2a_base64(b"\xed\xa0\x80", newline=False).decode(),  # UTF-8 surrogate
    ],
)
def test_bad_base64_names(name: str) -> None:
    for data in (
        f'<msg verb="1" step="8"><resource name="{name}"/></msg>',
        f'<msg verb="2" step="8"><resource name="{name}" rollback="0" /></msg>',
    ):
        assert decode_error(data.encode()).rc == rc.MSG_DESERIALIZE_ERROR


def test_answer_requires_rc() -> None:
    assert "rc" in str(decode_error(b'<msg verb="1" step="16"><answer element="x"/></msg>'))
    assert "answer" in str(decode_error(b'<msg verb="1" step="16"></msg>'))


def test_management_requires_shutdown() -> None:
    data = b'<msg level="3" verb="5" step="8"><session peerid="p"/></msg>'
    assert "without <shutdown>" in str(decode_error(data))


@pytest.mark.parametrize(
    "network",
    [
        '<network address="1.2.3.4"/>',
        '<network port="1"/>',
        '<network address="" port="65536"/>',
        '<network address="" port="-1"/>',
        "",
    ],
)
def test_bad_discover_answer(network: str) -> None:
    data = f'<msg verb="4" step="16">{network}</msg>'.encode()
    assert decode_error(data).rc == rc.MSG_DESERIALIZE_ERROR


def test_truncated_message() -> None:
    for cut in range(1, len(DEFAULT_LOCK) - 1):
        with pytest.raises(CodecError):
            decode(DEFAULT_LOCK[:cut])
    # Ends in </msg> but the resource element is cut off.
    with pytest.raises(CodecError):
        decode(DEFAULT_LOCK[:150] + b"</msg>")


@pytest.mark.parametrize("tail", [b"\n", b" ", b"<msg>", b"</msg>", DEFAULT_LOCK])
def test_trailing_bytes(tail: bytes) -> None:
    assert "after </msg>" in str(decode_error(DEFAULT_LOCK + tail))


def test_end_tag_inside_message() -> None:
    data = b'<msg verb="1" step="24"><answer rc="0" element="</msg>"/></msg>'
    assert decode_error(data).rc == rc.MSG_DESERIALIZE_ERROR


def test_not_xml_at_all() -> None:
    for data in (b"", b"</msg>", b"\x16\x03\x01\x02\x00\x01</msg>", b"\xff\xfe<</msg>"):
        with pytest.raises(CodecError):
            decode(data)


# -- framing ----------------------------------------------------------------------------


def test_framer_whole_and_partial() -> None:
    framer = Framer()
    assert framer.feed(DEFAULT_LOCK[:100]) == []
    assert framer.pending == 100
    assert framer.feed(DEFAULT_LOCK[100:] + DEFAULT_LOCK[:3]) == [DEFAULT_LOCK]
    assert framer.pending == 3
    assert framer.feed(DEFAULT_LOCK[3:] + DEFAULT_LOCK) == [DEFAULT_LOCK, DEFAULT_LOCK]
    assert framer.pending == 0


def test_framer_checks_what_follows_whole_messages() -> None:
    # Whole messages are cut from the data itself; the rest is still checked.
    framer = Framer()
    assert framer.feed(DEFAULT_LOCK + b"<msg") == [DEFAULT_LOCK]
    assert framer.pending == 4
    with pytest.raises(CodecError) as info:
        Framer().feed(DEFAULT_LOCK + b"\x16\x03\x01\x00")
    assert info.value.rc == rc.NO_TLS_CONNECTION
    with pytest.raises(CodecError) as info:
        Framer().feed(DEFAULT_LOCK + b"<" + b"x" * codec.MAX_MESSAGE_BYTES)
    assert info.value.rc == rc.INVALID_MSG_LENGTH


def test_framer_end_tag_split_byte_by_byte() -> None:
    framer = Framer()
    out = [m for byte in DEFAULT_LOCK for m in framer.feed(bytes([byte]))]
    assert out == [DEFAULT_LOCK]


def test_framer_unterminated_oversized() -> None:
    framer = Framer()
    with pytest.raises(CodecError) as info:
        framer.feed(b"<msg " + b"x" * 4995)
    assert info.value.rc == rc.INVALID_MSG_LENGTH
    assert "exceeds 4096 bytes" in str(info.value)


def test_framer_oversized_in_small_chunks() -> None:
    framer = Framer()
    with pytest.raises(CodecError):
        for _ in range(100):
            framer.feed(b"y" * 50)


def test_framer_limit_is_inclusive() -> None:
    exact = b"a" * (codec.MAX_MESSAGE_BYTES - 6) + b"</msg>"
    assert Framer().feed(exact) == [exact]
    with pytest.raises(CodecError):
        Framer().feed(b"a" + exact)
    assert Framer(max_bytes=203).feed(DEFAULT_LOCK) == [DEFAULT_LOCK]
    with pytest.raises(CodecError):
        Framer(max_bytes=202).feed(DEFAULT_LOCK)


# -- property-based ---------------------------------------------------------------------


def _xml_char(char: str) -> bool:
    code = ord(char)
    return (code >= 0x20 or char in "\t\n\r") and code not in (0xFFFE, 0xFFFF)


names = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))
xml_text = st.text(
    st.one_of(
        st.sampled_from("&<>\"'\t\n\r/"),
        st.characters(exclude_categories=["Cs"]).filter(_xml_char),
    )
)
int64 = st.integers(-(2**63), 2**63 - 1)
non_negative = st.integers(0, 2**63 - 1)

messages = st.one_of(
    st.builds(
        LockRequest,
        peer_id=xml_text,
        name=names,
        wait=st.booleans(),
        create=st.booleans(),
        lifespan=non_negative,
        mode=st.none() | st.integers(0, 5),
        quantity=st.none() | non_negative,
    ),
    st.builds(
        LockAnswer,
        step=st.sampled_from([16, 24, 32]),
        rc=int64,
        element=st.none() | xml_text,
        peer_id=st.none() | xml_text,
    ),
    st.builds(UnlockRequest, name=names, rollback=st.booleans()),
    st.builds(ShutdownRequest, peer_id=xml_text, immediate=st.booleans()),
    st.builds(DiscoverAnswer, address=xml_text, port=st.integers(0, 65535)),
    st.just(DiscoverRequest()),
    st.builds(Ping, step=st.sampled_from([8, 16])),
)


@given(messages)
def test_round_trip(message: codec.Message) -> None:
    wire = encode(message)
    assert wire.startswith(HEADER)
    assert wire.find(b"</msg>") == len(wire) - 6
    assert decode(wire) == message


@given(st.lists(messages, min_size=1, max_size=6), st.data())
def test_framer_any_chunking(batch: list[codec.Message], data: st.DataObject) -> None:
    wires = [encode(m) for m in batch]
    stream = b"".join(wires)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(stream)), max_size=20)))
    framer = Framer(max_bytes=max(len(w) for w in wires))
    out: list[bytes] = []
    previous = 0
    for cut in [*cuts, len(stream)]:
        out += framer.feed(stream[previous:cut])
        previous = cut
    assert out == wires
    assert framer.pending == 0
    assert [decode(w) for w in out] == batch


# -- the FLoM-shape fast path agrees with expat ---------------------------------------------


def _outcome(fn: object, data: bytes) -> object:
    try:
        return fn(data)  # type: ignore[operator]
    except codec.CodecError as exc:
        return ("error", exc.rc)


_SAMPLES = [
    codec.encode(codec.LockRequest("p", "R", True, True, 0, mode=5)),
    codec.encode(codec.LockRequest("p", "N[3]", False, True, 10, quantity=2)),
    codec.encode(codec.LockAnswer(16, 0, "red", "id")),
    codec.encode(codec.LockAnswer(24, 1)),
    codec.encode(codec.UnlockRequest("R", True)),
    codec.encode(codec.ShutdownRequest("p", False)),
    codec.encode(codec.DiscoverAnswer("::1", 28015)),
    codec.encode(codec.StatusAnswer(0, b'{"pyflom_status":1}')),
    codec.encode(codec.StatusAnswer(-23)),
]


@given(
    sample=st.sampled_from(_SAMPLES),
    cut=st.integers(0, 400),
    insert=st.sampled_from(
        ["", " ", '"', "<", ">", "/", "=", "x", "&amp;", "\t", "é", 'a="1"', "<x/>", "msg"]
    ),
    drop=st.integers(0, 3),
)
@settings(max_examples=1500, deadline=None)
def test_flom_shape_fast_path_agrees_with_expat(
    sample: bytes, cut: int, insert: str, drop: int
) -> None:
    text = sample.decode()
    cut %= len(text) + 1
    mutated = (text[:cut] + insert + text[cut + drop :]).encode()
    if not mutated.endswith(b"</msg>") or mutated.count(b"</msg>") != 1:
        return
    assert _outcome(codec.decode, mutated) == _outcome(codec._decode_with_expat, mutated)


@pytest.mark.parametrize("sample", _SAMPLES)
def test_flom_messages_take_the_fast_path(sample: bytes) -> None:
    if b'verb="1"' in sample or b'verb="2"' in sample or b'verb="6"' in sample:
        assert codec._decode_flom_shape(sample) is not None
        assert codec._decode_flom_shape(sample) == codec._decode_with_expat(sample)


def test_shutdown_refusal_answer_round_trip() -> None:
    # pyflom extension: a refused management request gets verb 5 step 16 before the close.
    data = codec.encode(codec.ShutdownAnswer(rc.UNIQUE_ID_DOES_NOT_MATCH))
    assert data == (
        b'<?xml version="1.0" encoding="UTF-8" ?><msg level="3" verb="5" step="16">'
        b'<answer rc="-23"/></msg>'
    )
    assert codec.decode(data) == codec.ShutdownAnswer(-23)
    assert decode_error(b'<msg level="3" verb="5" step="16"></msg>').rc == rc.MSG_DESERIALIZE_ERROR


# -- status query (pyflom extension, verb 6) ---------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        codec.StatusRequest("a1b2"),
        codec.StatusRequest("", "/a/b"),
        codec.StatusRequest("id", "caf\u00e9"),
        codec.StatusAnswer(0, b'{"pyflom_status": 1, "resources": []}'),
        codec.StatusAnswer(rc.UNIQUE_ID_DOES_NOT_MATCH),
    ],
)
def test_status_messages_round_trip(message: codec.Message) -> None:
    assert codec.decode(codec.encode(message)) == message


def test_status_request_wire_form() -> None:
    assert codec.encode(codec.StatusRequest("me", "foo")) == (
        b'<?xml version="1.0" encoding="UTF-8" ?><msg level="3" verb="6" step="8">'
        b'<session peerid="me"/><status resource="Zm9v"/></msg>'
    )


@pytest.mark.parametrize(
    "body",
    [
        b'<msg level="3" verb="6" step="8"><session peerid=""/></msg>',  # no <status>
        b'<msg level="3" verb="6" step="16"><status document="e30="/></msg>',  # no rc
        b'<msg level="3" verb="6" step="16"><status rc="0" document="e30"/></msg>',  # b64
        b'<msg level="3" verb="6" step="8"><status resource="!!"/></msg>',
        b'<msg level="3" verb="6" step="8"><status/><status/></msg>',
    ],
)
def test_malformed_status_messages_are_refused(body: bytes) -> None:
    assert decode_error(body).rc == rc.MSG_DESERIALIZE_ERROR
