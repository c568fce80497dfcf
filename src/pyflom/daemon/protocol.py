"""The daemon's side of one client connection, without I/O (sans-IO, as h11 or aioquic).

:class:`ServerConnection` is a pure state machine: it is given the bytes that arrived
and returns the decoded requests (or the protocol error that ended the stream); it
encodes the lock answers with their step numbers and says when the daemon must end its
sending side.  It owns no socket, clock or loop: :mod:`.connection` pumps the bytes,
the TLS connection filters them, the daemon decides what the requests mean.
"""

from __future__ import annotations

import contextlib
import functools

from .. import codec
from .. import rc as _rc
from ..tls import identity

# After a -x/-X request the daemon ends its sending side at once but keeps the connection
# until the client closes it, or this long: FLoM's client ends its side after it (over
# TLS it writes a close_notify), and a daemon that had closed kills it with SIGPIPE.
MANAGEMENT_LINGER_S = 1.0


class State:
    """Where the conversation is (plain strings: an Enum costs on the hot path)."""

    OPEN = "open"  # lock requests (and their unlocks) may come
    DONE = "done"  # a status or management request came: nothing more may
    ERROR = "error"  # the client broke the protocol: the connection must be closed
    CLOSED = "closed"  # the connection is over


class ProtocolError:
    """The event that ends a stream: the client broke the protocol (``reason`` says how)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"ProtocolError({self.reason!r})"


Event = codec.Message | ProtocolError


class ConnectionStateError(RuntimeError):
    """The connection was used after it ended (ERROR or CLOSED)."""


# Decoding is pure, and clients repeat themselves: every lock of a resource by one peer
# is the same bytes.  The last DECODED_KEPT distinct messages are remembered with their
# decoding (at most MAX_MESSAGE_BYTES each: 2 MB at worst); errors are not remembered.
# The decoded messages are shared between connections: nothing may change them.
DECODED_KEPT = 512
_decode = functools.lru_cache(maxsize=DECODED_KEPT)(codec.decode)

_END_BYTES = len(codec.MESSAGE_END)
_NO_INPUT = frozenset((State.ERROR, State.CLOSED))
_FINAL = (codec.StatusRequest, codec.ShutdownRequest)
_CHECKED = (codec.LockRequest, codec.ShutdownRequest, codec.StatusRequest)  # carry a peer id


class ServerConnection:
    """One client's conversation with the daemon."""

    __slots__ = (
        "_after_final",
        "_framer",
        "answers_sent",
        "authenticated",
        "error",
        "pending",
        "state",
    )

    def __init__(self, max_message_bytes: int = codec.MAX_MESSAGE_BYTES) -> None:
        self._framer = codec.Framer(max_message_bytes)
        self.state = State.OPEN
        self.error: str | None = None  # why the state is ERROR
        self.answers_sent = 0  # answers to the current lock request: the first is step 16
        self.authenticated = False  # the peer id was checked against the certificate once
        self._after_final = ""  # the protocol error a message after a final request is
        # True while part of a message has arrived and its end has not.  A plain
        # attribute, read before every read's bytes are fed: the daemon times a message
        # from its first byte (see ClientConnection.message_since).
        self.pending = False

    def receive(self, data: bytes) -> list[Event]:
        """Feed bytes from the client; return the requests they complete, in order,
        ending with a :class:`ProtocolError` if the stream broke (state ERROR).

        After a status or management request nothing more may come: a further message
        is a protocol error.  Raises :class:`ConnectionStateError` once in ERROR or
        CLOSED: such a connection takes no input.
        """
        state = self.state
        if state in _NO_INPUT:
            raise ConnectionStateError(f"the connection is {state}: it takes no input")
        try:
            frames = self._framer.feed(data)
        except codec.CodecError as exc:
            return [self._fail(str(exc))]
        # Every message ends with MESSAGE_END (which cannot overlap itself): a stream
        # that ends with it leaves nothing buffered, one whose last bytes differ leaves
        # a part of a message.  Only a read shorter than the mark needs the framer.
        self.pending = not data.endswith(codec.MESSAGE_END) and (
            len(data) >= _END_BYTES or self._framer.pending > 0
        )
        events: list[Event] = []
        for frame in frames:
            if self.state == State.DONE:
                events.append(self._fail(self._after_final))
                break
            try:
                message = _decode(frame)
            except codec.CodecError as exc:
                events.append(self._fail(str(exc)))
                break
            if isinstance(message, _FINAL):
                self.state = State.DONE
                self._after_final = (
                    "a message after a status query"
                    if type(message) is codec.StatusRequest
                    else "a message after a shutdown request"
                )
            events.append(message)
        return events

    def _fail(self, reason: str) -> ProtocolError:
        self.pending = False
        self.state = State.ERROR
        self.error = reason
        return ProtocolError(reason)

    def fail(self, reason: str) -> ProtocolError:
        """The daemon found the client broke the protocol (a rule beyond the codec's)."""
        if self.state != State.CLOSED:
            return self._fail(reason)
        return ProtocolError(reason)

    def new_request(self) -> None:
        """A lock request is being served: its first answer is step 16 again.  (Called
        when the daemon takes the request, not when it is decoded: requests that came
        in one read are decoded together, then served in turn.)"""
        self.answers_sent = 0

    def answer(
        self, rc: int, element: str | None, generation: int | None, peer_id: str
    ) -> tuple[bytes, bool]:
        """Encode a lock answer: step 16 (with the daemon's ``peer_id``) first, step 24
        after.  Returns the bytes to send and whether the daemon must then end its
        sending side (as FLoM: after LOCK_CANT_WAIT or an error, nothing more comes)."""
        first = self.answers_sent == 0
        self.answers_sent += 1
        payload = codec.encode(
            codec.LockAnswer(
                step=codec.STEP_FIRST_ANSWER if first else codec.STEP_LATER_ANSWER,
                rc=rc,
                element=element,
                peer_id=peer_id if first else None,
                generation=generation,
            )
        )
        return payload, rc == _rc.LOCK_CANT_WAIT or rc < 0

    def check_peer_id(self, message: codec.Message, common_name: str | None) -> str | None:
        """Level 3: why ``message`` is refused (its announced unique id is not the CN of
        the client's certificate), or None when admitted or not subject to the check."""
        if not isinstance(message, _CHECKED):
            return None
        return identity.mismatch(message.peer_id, common_name)

    def refusal(self, message: codec.Message) -> bytes:
        """What a refused request gets before the connection ends: management and status
        requests get their answer with the reason code; a lock request nothing (FLoM)."""
        if isinstance(message, codec.ShutdownRequest):
            return codec.encode(codec.ShutdownAnswer(_rc.UNIQUE_ID_DOES_NOT_MATCH))
        if isinstance(message, codec.StatusRequest):
            return codec.encode(codec.StatusAnswer(_rc.UNIQUE_ID_DOES_NOT_MATCH))
        return b""

    def close(self) -> None:
        """The connection is over."""
        self.state = State.CLOSED
        self.pending = False


def no_room_answer(received: bytes, peer_id: str) -> bytes:
    """What a client the daemon has no room for gets before the connection ends: the
    answer its request expects (``received``: what it sent so far, maybe nothing),
    with rc CONNECTION_REFUSED.  pyflom's client says why; FLoM's reports -13."""
    message: codec.Message | None = None
    with contextlib.suppress(codec.CodecError):
        frames = codec.Framer().feed(received)
        if frames:
            message = codec.decode(frames[0])
    if isinstance(message, codec.ShutdownRequest):
        return codec.encode(codec.ShutdownAnswer(_rc.CONNECTION_REFUSED))
    if isinstance(message, codec.StatusRequest):
        return codec.encode(codec.StatusAnswer(_rc.CONNECTION_REFUSED))
    return codec.encode(
        codec.LockAnswer(codec.STEP_FIRST_ANSWER, _rc.CONNECTION_REFUSED, peer_id=peer_id)
    )
