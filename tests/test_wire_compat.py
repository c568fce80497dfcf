"""Byte-level compatibility with FLoM 1.7.2: a FLoM C client's captured bytes against our
daemon, and our client against a scripted daemon that answers with FLoM's bytes."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
from pathlib import Path

import pytest

import pyflom
from conftest import FlomSandbox
from pyflom import uniqueid
from pyflom.names import resource_type

HEADER = b'<?xml version="1.0" encoding="UTF-8" ?>'
PEER = b"3d1219c7c4c5404aaa1f6d2a48adfda4"
# Captured from FLoM 1.7.2: `flom -- cmd` on the default resource (reference 4.3).
FLOM_C_LOCK = (
    HEADER + b'<msg level="3" verb="1" step="8"><session peerid="' + PEER + b'"/>'
    b'<resource name="X1JFU09VUkNF" mode="5" wait="1" create="1" lifespan="0"/></msg>'
)
FLOM_C_UNLOCK = (
    HEADER + b'<msg level="3" verb="2" step="8"><resource name="X1JFU09VUkNF" rollback="0" /></msg>'
)


def recv_message(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"</msg>"):
        chunk = sock.recv(1)  # as the C client: never read past the message
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data


def test_flom_c_client_bytes_against_our_daemon(sandbox: FlomSandbox) -> None:
    """FLoM's bytes in, FLoM's bytes out, plus pyflom's fencing token: one extra
    attribute on granted answers, after FLoM's own (FLoM's parser ignores unknown
    attributes, reference 4.2), so the C client reads the same rc and element."""
    assert len(FLOM_C_LOCK) == 203
    assert sandbox.run("-d", "-1", "--", "true").returncode == 0
    sandbox.remember_daemon()
    first = socket.socket(socket.AF_UNIX)
    first.connect(sandbox.socket)
    first.sendall(FLOM_C_LOCK)
    our_id = uniqueid.peer_id().encode()
    granted = recv_message(first)
    prefix = (
        HEADER + b'<msg level="3" verb="1" step="16"><session peerid="' + our_id + b'"/>'
        b'<answer rc="0" generation="'
    )
    assert granted.startswith(prefix) and granted.endswith(b'"/></msg>')
    assert granted[len(prefix) : -len(b'"/></msg>')].isdigit()
    second = socket.socket(socket.AF_UNIX)
    second.connect(sandbox.socket)
    second.sendall(FLOM_C_LOCK)
    assert recv_message(second) == (
        HEADER + b'<msg level="3" verb="1" step="16"><session peerid="' + our_id + b'"/>'
        b'<answer rc="1"/></msg>'
    )
    # FLoM's client: unlock, then shutdown(SHUT_WR) and wait for the daemon to close.
    first.sendall(FLOM_C_UNLOCK)
    first.shutdown(socket.SHUT_WR)
    assert first.recv(1) == b""
    later = recv_message(second)
    assert later.startswith(
        HEADER + b'<msg level="3" verb="1" step="24"><answer rc="0" generation="'
    )
    second.close()
    first.close()


def test_fencing_token_is_invisible_to_a_flom_style_reader() -> None:
    """What FLoM's static parser reads (known attributes only) is unchanged."""
    from pyflom import codec

    with_token = codec.encode(codec.LockAnswer(16, 0, "red", "id", 42))
    without = codec.encode(codec.LockAnswer(16, 0, "red", "id"))
    assert with_token.replace(b' generation="42"', b"") == without
    decoded = codec.decode(with_token)
    assert isinstance(decoded, codec.LockAnswer)
    assert (decoded.rc, decoded.element, decoded.generation) == (0, "red", 42)


class ScriptedFlomDaemon:
    """A stand-in for FLoM's C daemon: records requests, answers with FLoM's bytes."""

    def __init__(self, answers: list[bytes]) -> None:
        self.dir = tempfile.mkdtemp(prefix="pyflom-c-", dir="/tmp")
        self.path = os.path.join(self.dir, "sock")
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(self.path)
        self.listener.listen(1)
        self.answers = answers
        self.received: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            self.received.append(recv_message(conn))
            for answer in self.answers:
                conn.sendall(answer)
            self.received.append(recv_message(conn))  # the unlock
            while conn.recv(4096):  # until the client's half-close
                pass

    def close(self) -> None:
        self.thread.join(timeout=10)
        self.listener.close()
        os.unlink(self.path)
        os.rmdir(self.dir)


@pytest.mark.parametrize(
    ("name", "answers", "element"),
    [
        (
            "_RESOURCE",
            [
                HEADER + b'<msg level="3" verb="1" step="16"><session peerid="' + PEER + b'"/>'
                b'<answer rc="0"/></msg>'
            ],
            None,
        ),
        (
            "_RESOURCE",
            [
                HEADER + b'<msg level="3" verb="1" step="16"><session peerid="' + PEER + b'"/>'
                b'<answer rc="1"/></msg>',
                HEADER + b'<msg level="3" verb="1" step="24"><answer rc="0"/></msg>',
            ],
            None,
        ),
        (
            "red.green",
            [
                HEADER + b'<msg level="3" verb="1" step="16"><session peerid="' + PEER + b'"/>'
                b'<answer rc="0" element="red"/></msg>'
            ],
            "red",
        ),
    ],
)
def test_our_client_against_flom_c_daemon_bytes(
    name: str, answers: list[bytes], element: str | None
) -> None:
    daemon = ScriptedFlomDaemon(answers)
    try:
        handle = pyflom.Handle(name, kind=resource_type(name), socket_name=daemon.path)
        assert handle.lock() == element
        handle.unlock()
    finally:
        daemon.close()
    request, unlock = daemon.received
    peer = uniqueid.peer_id().encode()
    if name == "_RESOURCE":
        assert request == FLOM_C_LOCK.replace(PEER, peer)
        assert unlock == FLOM_C_UNLOCK
    else:
        assert request == (
            HEADER + b'<msg level="3" verb="1" step="8"><session peerid="' + peer + b'"/>'
            b'<resource name="cmVkLmdyZWVu" wait="1" create="1" lifespan="0"/></msg>'
        )
    assert Path(daemon.dir).exists() is False


def test_no_generation_from_a_flom_c_daemon_is_said_plainly() -> None:
    """FLoM's C daemon sends no generation: ``lock_generation`` is None and the typed
    ``generation`` raises, saying why, instead of handing out a made-up token."""
    daemon = ScriptedFlomDaemon(
        [
            HEADER + b'<msg level="3" verb="1" step="16"><session peerid="' + PEER + b'"/>'
            b'<answer rc="0"/></msg>'
        ]
    )
    try:
        handle = pyflom.Handle("Fenced", socket_name=daemon.path)
        handle.lock()
        assert handle.lock_generation is None
        with pytest.raises(pyflom.FlomError, match=r"no generation .*FLoM.s C daemon has none"):
            handle.generation  # noqa: B018
        handle.unlock()
    finally:
        daemon.close()
