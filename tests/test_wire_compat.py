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
    assert len(FLOM_C_LOCK) == 203
    assert sandbox.run("-d", "-1", "--", "true").returncode == 0
    sandbox.remember_daemon()
    first = socket.socket(socket.AF_UNIX)
    first.connect(sandbox.socket)
    first.sendall(FLOM_C_LOCK)
    our_id = uniqueid.peer_id().encode()
    assert recv_message(first) == (
        HEADER + b'<msg level="3" verb="1" step="16"><session peerid="' + our_id + b'"/>'
        b'<answer rc="0"/></msg>'
    )
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
    assert recv_message(second) == (
        HEADER + b'<msg level="3" verb="1" step="24"><answer rc="0"/></msg>'
    )
    second.close()
    first.close()


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
        handle = pyflom.Handle(name, socket_name=daemon.path)
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
