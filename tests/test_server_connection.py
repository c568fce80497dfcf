"""The daemon's sans-IO connection (pyflom.daemon.protocol), in memory: no socket, no loop.

Framing across reads, oversized and garbled input, step 16 then 24, the half-close
after LOCK_CANT_WAIT or an error, the ERROR state, the end after a status or
management request, the peer-id check.
"""

from __future__ import annotations

import pytest

from pyflom import codec
from pyflom import rc as _rc
from pyflom.daemon.protocol import (
    ConnectionStateError,
    ProtocolError,
    ServerConnection,
    State,
    no_room_answer,
)

PEER = "p" * 32
DAEMON = "d" * 32
LOCK = codec.encode(codec.LockRequest(PEER, "R1", True, True, 0, mode=5))
UNLOCK = codec.encode(codec.UnlockRequest("R1", False))
STATUS = codec.encode(codec.StatusRequest(PEER))
SHUTDOWN = codec.encode(codec.ShutdownRequest(PEER, True))


def test_a_request_split_across_reads() -> None:
    conn = ServerConnection()
    for byte in LOCK[:-1]:
        assert conn.receive(bytes([byte])) == []
        assert conn.pending
    (event,) = conn.receive(LOCK[-1:])
    assert isinstance(event, codec.LockRequest)
    assert event.name == "R1"
    assert not conn.pending
    assert conn.state is State.OPEN


def test_several_requests_in_one_read_in_order() -> None:
    conn = ServerConnection()
    events = conn.receive(LOCK + UNLOCK + LOCK[:10])
    assert [type(e) for e in events] == [codec.LockRequest, codec.UnlockRequest]
    assert conn.pending
    (event,) = conn.receive(LOCK[10:])
    assert isinstance(event, codec.LockRequest)


def test_oversized_message_is_an_error() -> None:
    conn = ServerConnection()
    (event,) = conn.receive(b"<msg" + b" " * (codec.MAX_MESSAGE_BYTES + 10))
    assert isinstance(event, ProtocolError)
    assert conn.state is State.ERROR
    assert conn.error == event.reason


@pytest.mark.parametrize(
    "garbage",
    [b"GET / HTTP/1.0\r\n\r\n", b'<msg level="3" verb="99" step="8"></msg>', b"\x16\x03\x01"],
)
def test_garbage_is_an_error(garbage: bytes) -> None:
    conn = ServerConnection()
    events = conn.receive(garbage)
    assert len(events) == 1 and isinstance(events[0], ProtocolError)
    assert conn.state is State.ERROR


def test_requests_before_the_garbage_are_kept() -> None:
    conn = ServerConnection()
    events = conn.receive(LOCK + b'<msg level="3" verb="99" step="8"></msg>')
    assert isinstance(events[0], codec.LockRequest)
    assert isinstance(events[1], ProtocolError)


def test_error_state_refuses_further_input() -> None:
    conn = ServerConnection()
    conn.receive(b"<nonsense></msg>")
    assert conn.state is State.ERROR
    with pytest.raises(ConnectionStateError):
        conn.receive(LOCK)


def test_closed_refuses_input() -> None:
    conn = ServerConnection()
    conn.close()
    with pytest.raises(ConnectionStateError):
        conn.receive(LOCK)


def _decoded(payload: bytes) -> codec.LockAnswer:
    message = codec.decode(payload)
    assert isinstance(message, codec.LockAnswer)
    return message


def test_step_16_then_24_and_again_16_for_the_next_request() -> None:
    conn = ServerConnection()
    conn.receive(LOCK)
    conn.new_request()
    first, half_close = conn.answer(_rc.LOCK_ENQUEUED, None, None, DAEMON)
    assert not half_close
    answer = _decoded(first)
    assert (answer.step, answer.rc, answer.peer_id) == (16, _rc.LOCK_ENQUEUED, DAEMON)
    later, half_close = conn.answer(_rc.OK, None, 7, DAEMON)
    assert not half_close
    answer = _decoded(later)
    assert (answer.step, answer.rc, answer.peer_id, answer.generation) == (24, 0, None, 7)
    conn.receive(UNLOCK + LOCK)
    conn.new_request()
    assert _decoded(conn.answer(_rc.OK, None, 8, DAEMON)[0]).step == 16


def test_half_close_after_lock_cant_wait() -> None:
    """FLoM ends its sending side after LOCK_CANT_WAIT: the client (and its -l/-r
    retries) rely on it; removing the rule must fail here."""
    conn = ServerConnection()
    conn.receive(LOCK)
    conn.new_request()
    payload, half_close = conn.answer(_rc.LOCK_CANT_WAIT, None, None, DAEMON)
    assert half_close
    assert _decoded(payload).rc == _rc.LOCK_CANT_WAIT


@pytest.mark.parametrize("rc", [_rc.INVALID_RESOURCE_NAME, _rc.CONTAINER_FULL])
def test_half_close_after_an_error(rc: int) -> None:
    conn = ServerConnection()
    conn.new_request()
    assert rc < 0
    assert conn.answer(rc, None, None, DAEMON)[1]


@pytest.mark.parametrize("rc", [_rc.OK, _rc.LOCK_ENQUEUED, _rc.LOCK_WAIT_RESOURCE])
def test_no_half_close_otherwise(rc: int) -> None:
    conn = ServerConnection()
    conn.new_request()
    assert not conn.answer(rc, None, None, DAEMON)[1]


@pytest.mark.parametrize(
    ("first", "reason"),
    [(STATUS, "a message after a status query"), (SHUTDOWN, "a message after a shutdown")],
)
def test_nothing_may_follow_a_status_or_management_request(first: bytes, reason: str) -> None:
    conn = ServerConnection()
    (event,) = conn.receive(first)
    assert isinstance(event, codec.StatusRequest | codec.ShutdownRequest)
    assert conn.state is State.DONE
    (event,) = conn.receive(LOCK)
    assert isinstance(event, ProtocolError)
    assert event.reason.startswith(reason)
    assert conn.state is State.ERROR


def test_status_then_a_message_in_the_same_read() -> None:
    conn = ServerConnection()
    events = conn.receive(STATUS + LOCK)
    assert isinstance(events[0], codec.StatusRequest)
    assert isinstance(events[1], ProtocolError)


def test_peer_id_check() -> None:
    conn = ServerConnection()
    (lock,) = conn.receive(LOCK)
    assert conn.check_peer_id(lock, PEER) is None
    why = conn.check_peer_id(lock, "someone else")
    assert why is not None
    assert conn.refusal(lock) == b""  # a refused lock request gets no answer (FLoM)
    (unlock,) = conn.receive(UNLOCK)
    assert conn.check_peer_id(unlock, "someone else") is None  # carries no peer id
    (shutdown,) = ServerConnection().receive(SHUTDOWN)
    refusal = codec.decode(conn.refusal(shutdown))
    assert isinstance(refusal, codec.ShutdownAnswer)
    assert refusal.rc == _rc.UNIQUE_ID_DOES_NOT_MATCH


@pytest.mark.parametrize("cut", [1, 3, 5, 6, 7, 40])
def test_pending_follows_the_framer_whatever_the_cuts(cut: int) -> None:
    """``pending`` (an attribute, read on every read) is exactly the framer's."""
    conn = ServerConnection()
    stream = LOCK + LOCK[:30] + LOCK[30:] + LOCK
    for start in range(0, len(stream), cut):
        conn.receive(stream[start : start + cut])
        assert conn.pending == bool(conn._framer.pending)
    assert not conn.pending


@pytest.mark.parametrize(
    ("received", "kind"),
    [
        (b"", codec.LockAnswer),  # nothing came yet: most clients lock
        (LOCK[:20], codec.LockAnswer),
        (b"junk", codec.LockAnswer),
        (LOCK, codec.LockAnswer),
        (STATUS, codec.StatusAnswer),
        (SHUTDOWN, codec.ShutdownAnswer),
    ],
)
def test_no_room_answer_is_the_one_the_request_expects(received: bytes, kind: type) -> None:
    answer = codec.decode(no_room_answer(received, DAEMON))
    assert type(answer) is kind
    assert answer.rc == _rc.CONNECTION_REFUSED  # type: ignore[attr-defined]
    if isinstance(answer, codec.LockAnswer):
        assert (answer.step, answer.peer_id) == (codec.STEP_FIRST_ANSWER, DAEMON)
