"""Hostile and broken clients: each is cut off alone; every other client keeps its lock
and its service (fixes FLoM quirks Q2, Q3, Q24, Q25)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

import pyflom
from conftest import FlomSandbox, wait_for
from pyflom import codec

HEADER = b'<?xml version="1.0" encoding="UTF-8" ?>'
LOCK_R = HEADER + (
    b'<msg level="3" verb="1" step="8"><session peerid="x"/>'
    b'<resource name="Ug==" mode="5" wait="1" create="1" lifespan="0"/></msg>'
)

BAD_MESSAGES = {
    "malformed xml": b"<msg level='3' verb='1' step='8'><session</msg>",
    "doctype": HEADER + b'<!DOCTYPE msg [<!ENTITY a "aaaa">]><msg level="3" verb="1" step="8">'
    b'<resource name="Ug==" mode="5" wait="1" create="1" lifespan="&a;"/></msg>',
    "billion laughs": b'<!DOCTYPE m [<!ENTITY a "xxxxxxxxxx"><!ENTITY b "&a;&a;&a;&a;&a;&a;">'
    b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;">]><msg level="3" verb="1" step="8">&c;</msg>',
    "unknown element": HEADER + b'<msg level="3" verb="1" step="8"><bogus/></msg>',
    "wrong level": HEADER + b'<msg level="2" verb="1" step="8"><session peerid=""/>'
    b'<resource name="Ug==" mode="5" wait="1" create="1" lifespan="0"/></msg>',
    "ping from client": HEADER + b'<msg level="3" verb="3" step="16"></msg>',
    "discover on a stream": HEADER + b'<msg level="3" verb="4" step="8"></msg>',
    "unlock before lock": HEADER + b'<msg level="3" verb="2" step="8">'
    b'<resource name="Ug==" rollback="0" /></msg>',
    "management without shutdown": HEADER + b'<msg level="3" verb="5" step="8">'
    b'<session peerid=""/></msg>',
    "answer sent by a client": HEADER + b'<msg level="3" verb="1" step="16"><answer rc="0"/></msg>',
    "bad mode": HEADER + b'<msg level="3" verb="1" step="8"><session peerid=""/>'
    b'<resource name="Ug==" mode="9" wait="1" create="1" lifespan="0"/></msg>',
    "oversized": b"<msg " + b"x" * 20000,
    "binary noise": bytes(range(256)) * 4 + b"</msg>",
    "tls client hello": bytes.fromhex("16030100c4010000c00303") + b"\0" * 200,
}


@pytest.fixture
def served(sandbox: FlomSandbox) -> Iterator[tuple[FlomSandbox, pyflom.Handle]]:
    """A running daemon (stall timeout 1 s) with a client holding resource 'Held'."""
    env_box = sandbox
    result = env_box.run("-d", "-1", "--", "true")
    assert result.returncode == 0
    env_box.remember_daemon()
    holder = pyflom.Handle("Held", socket_name=sandbox.socket)
    holder.lock()
    try:
        yield sandbox, holder
    finally:
        holder.close()


def closed_by_daemon(sock: socket.socket, timeout: float = 5.0) -> bool:
    """True when the daemon closes (or resets) ``sock`` within ``timeout``."""
    sock.settimeout(timeout)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
            if b"</msg>" in data and b'rc="' in data:
                return False  # it answered: not closed
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def still_served(box: FlomSandbox) -> None:
    """The holder still holds 'Held' and other resources are still served."""
    assert box.run("-r", "Held", "-o", "0", "--", "true").returncode == 98
    assert box.run("-r", "Other", "-o", "0", "--", "true").returncode == 0


@pytest.mark.parametrize("name", list(BAD_MESSAGES))
def test_bad_message_closes_only_that_connection(
    served: tuple[FlomSandbox, pyflom.Handle], name: str
) -> None:
    box, _ = served
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(box.socket)
    try:
        sock.sendall(BAD_MESSAGES[name])
    except BrokenPipeError:
        pass  # cut off while still sending: the oversized case
    assert closed_by_daemon(sock)
    sock.close()
    still_served(box)


def test_unlock_of_another_resource_closes_and_releases(
    served: tuple[FlomSandbox, pyflom.Handle],
) -> None:
    box, _ = served
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(box.socket)
    sock.sendall(LOCK_R)
    assert b'rc="0"' in sock.recv(4096)
    sock.sendall(codec.encode(codec.UnlockRequest("NotR", False)))
    assert closed_by_daemon(sock)
    assert box.run("-r", "R", "-o", "0", "--", "true").returncode == 0
    still_served(box)


def test_stalled_partial_message_does_not_delay_others(
    served: tuple[FlomSandbox, pyflom.Handle],
) -> None:
    box, _ = served
    stalled = socket.socket(socket.AF_UNIX)
    stalled.connect(box.socket)
    stalled.sendall(LOCK_R[:50])  # half a message, then silence
    start = time.monotonic()
    still_served(box)
    assert time.monotonic() - start < 5  # FLoM stalls every client here (Q2)
    stalled.close()


def test_stalled_client_is_eventually_cut_off(sandbox: FlomSandbox) -> None:
    env = sandbox.env
    env["PYFLOM_STALL_TIMEOUT"] = "1"
    import subprocess

    subprocess.run([*sandbox.args("-d", "-1", "--", "true")], env=env, check=True)
    sandbox.remember_daemon()
    silent = socket.socket(socket.AF_UNIX)
    silent.connect(sandbox.socket)
    partial = socket.socket(socket.AF_UNIX)
    partial.connect(sandbox.socket)
    partial.sendall(LOCK_R[:50])
    start = time.monotonic()
    assert closed_by_daemon(silent, timeout=10)
    assert closed_by_daemon(partial, timeout=10)
    assert time.monotonic() - start < 8
    # A holder is never cut off for being silent.
    holder = pyflom.Handle("Quiet", socket_name=sandbox.socket)
    holder.lock()
    time.sleep(2.5)
    assert sandbox.run("-r", "Quiet", "-o", "0", "--", "true").returncode == 98
    holder.unlock()


def test_many_abrupt_disconnects_leave_the_daemon_healthy(
    served: tuple[FlomSandbox, pyflom.Handle],
) -> None:
    box, _ = served
    for i in range(50):
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(box.socket)
        sock.sendall(LOCK_R[: (i * 7) % len(LOCK_R)])
        sock.close()
    assert wait_for(lambda: box.run("-r", "R", "-o", "0", "--", "true").returncode == 0)
    still_served(box)
