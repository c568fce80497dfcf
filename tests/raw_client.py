"""Raw-protocol client pieces shared by tests and benches (``bench/_common.py`` imports
them): the bytes of a lock or unlock request, and the next lock answer on a connection."""

from __future__ import annotations

import socket

from pyflom import codec


def lock_request(name: str, wait: bool = True, mode: int = 5, peer_id: str = "raw") -> bytes:
    """The bytes of a lock request on ``name`` (EX by default, waiting when busy)."""
    return codec.encode(
        codec.LockRequest(peer_id=peer_id, name=name, wait=wait, create=True, lifespan=0, mode=mode)
    )


def unlock_request(name: str) -> bytes:
    """The bytes of an unlock (no rollback) of ``name``."""
    return codec.encode(codec.UnlockRequest(name, False))


def read_answer(sock: socket.socket) -> codec.LockAnswer:
    """The next lock answer on ``sock`` (blocking, within the socket's own timeout; no
    other message may be pending)."""
    framer = codec.Framer()
    while True:
        data = sock.recv(4096)
        assert data, "the daemon closed the connection"
        frames = framer.feed(data)
        if frames:
            answer = codec.decode(frames[0])
            assert isinstance(answer, codec.LockAnswer)
            return answer
