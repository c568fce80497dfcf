"""Slow and hoarding clients (issue 16, item 2), with real daemons run under a small
limit of open files: a message must complete within the stall timeout of its first
byte, a TLS handshake within it of connecting; short of descriptors, the oldest
connections that neither hold nor wait are closed to make room, and a client that still
cannot get in is told why.  A holder or a waiter is never closed to make room."""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

import pyflom
from conftest import FlomSandbox, wait_for
from pki import Standard, certs_fixture, pki_fixture, tls_options  # noqa: F401
from pyflom import codec
from pyflom import rc as _rc
from pyflom.settings import Settings
from raw_client import lock_request, read_answer


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LimitedDaemon:
    """``python -m pyflom.daemon`` with at most ``nofile`` open files (its hard limit:
    the daemon raises its soft limit to the hard one), logging to a trace file."""

    box: FlomSandbox
    transport: str  # "unix" or "tcp"
    nofile: int
    stall_s: float
    tls_args: list[str] = field(default_factory=list)  # the daemon's and the clients'
    port: int = 0
    proc: subprocess.Popen[str] | None = None

    def __post_init__(self) -> None:
        self.trace = self.box.path("daemon.trc")
        argv = [sys.executable, "-m", "pyflom.daemon", *self.where()]
        argv += ["--lifespan", "-1", "--trace-file", str(self.trace), *self.tls_args]
        env = self.box.env | {"PYFLOM_STALL_TIMEOUT": str(self.stall_s)}
        nofile = self.nofile

        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(
            argv, env=env, preexec_fn=limit, stderr=subprocess.DEVNULL, text=True
        )
        self.box.started.append(self.proc)  # stopped by PID at the end of the test
        assert wait_for(lambda: "FLM003N" in self.log(), timeout=15)

    def where(self) -> list[str]:
        if self.transport == "unix":
            return ["--socket-name", self.box.socket]
        self.port = self.port or free_tcp_port()
        return ["--unicast-address", "127.0.0.1", "--unicast-port", str(self.port)]

    def client_args(self) -> list[str]:
        if self.transport == "unix":
            return ["-s", self.box.socket]
        return ["-a", "127.0.0.1", "-p", str(self.port)]

    def connect(self) -> socket.socket:
        """A raw connection to the daemon (a blocking connect); reads on it give up
        after 30 s."""
        if self.transport == "unix":
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(self.box.socket)
        else:
            sock = socket.create_connection(("127.0.0.1", self.port))
        sock.settimeout(30)
        return sock

    def handle(self, name: str) -> pyflom.Handle:
        tls = {
            arg[2:].split("=")[0].replace("-", "_"): arg.split("=", 1)[1] for arg in self.tls_args
        }
        if self.transport == "unix":
            settings = Settings(socket_name=self.box.socket, **tls)
        else:
            settings = Settings(unicast_address="127.0.0.1", unicast_port=self.port, **tls)
        return pyflom.Handle(name, settings=settings, start_daemon=False, timeout=20)

    def flom(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.box.run(
            *self.client_args(), *self.tls_args, *args, socket_name=False, timeout=60
        )

    def log(self) -> str:
        try:
            return self.trace.read_text()
        except FileNotFoundError:
            return ""


class Dribblers:
    """Connections that each send a lock request one byte at a time, ``every`` seconds,
    never finishing it (a slowloris), from a thread of their own."""

    def __init__(self, connect: Callable[[], socket.socket], count: int, every: float) -> None:
        self.socks = []
        for _ in range(count):
            sock = connect()
            sock.setblocking(False)
            self.socks.append(sock)
        self.payload = lock_request("Slow")[:-10]
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sent = 0
        while not self._stop.wait(self.every) and sent < len(self.payload):
            for sock in self.socks:
                try:
                    sock.send(self.payload[sent : sent + 1])
                except OSError:
                    pass  # closed by the daemon (or refused): keep on with the others
            sent += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for sock in self.socks:
            sock.close()


@pytest.fixture
def dribblers() -> Iterator[list[Dribblers]]:
    made: list[Dribblers] = []
    yield made
    for group in made:
        group.stop()


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_slowloris_under_a_descriptor_limit_lets_clients_in(
    sandbox: FlomSandbox, transport: str, dribblers: list[Dribblers]
) -> None:
    # The audit: 64 descriptors, 70 connections each dribbling a byte.  The stall
    # timeout is long here: only making room can let the others in.
    daemon = LimitedDaemon(sandbox, transport, nofile=64, stall_s=120)
    holder = daemon.handle("Held")
    holder.lock()
    waiter = daemon.connect()
    waiter.sendall(lock_request("Held"))
    assert read_answer(waiter).rc == _rc.LOCK_ENQUEUED
    dribblers.append(Dribblers(daemon.connect, 70, every=0.2))
    time.sleep(1.5)  # older than ROOM_MIN_AGE_S: no longer "just come"
    for _ in range(3):
        result = daemon.flom("-r", "x", "-o", "15000", "--", "echo", "in")
        assert (result.returncode, result.stdout) == (0, "in\n"), result.stderr
    assert "FLM061W" in daemon.log() and "to make room for a new client" in daemon.log()
    # Neither the holder nor the waiter was closed to make room.
    assert daemon.flom("-r", "Held", "-o", "0", "--", "true").returncode == 98
    holder.unlock()
    grant = read_answer(waiter)
    assert (grant.step, grant.rc) == (codec.STEP_LATER_ANSWER, _rc.OK)
    waiter.close()
    holder.close()


@pytest.mark.parametrize("transport", ["unix", "tcp", "tls"])
def test_a_client_with_no_room_left_is_told_why(
    sandbox: FlomSandbox, transport: str, request: pytest.FixtureRequest
) -> None:
    tls_args = []
    if transport == "tls":
        certs: Standard = request.getfixturevalue("certs")
        tls_args = tls_options(certs.peer1, certs.ca1)
    daemon = LimitedDaemon(
        sandbox, "tcp" if transport == "tcp" else "unix", 32, stall_s=120, tls_args=tls_args
    )
    holders: list[pyflom.Handle] = []
    try:
        with pytest.raises(pyflom.ConnectionFailed) as refused:
            for i in range(40):
                handle = daemon.handle(f"R{i}")
                handle.lock()
                holders.append(handle)
        assert refused.value.rc == _rc.CONNECTION_REFUSED
        assert "no room for another connection" in str(refused.value)
        assert len(holders) >= 5
        result = daemon.flom("-r", "x", "-o", "10000", "--", "echo", "ran")
        assert (result.returncode, result.stdout) == (99, ""), result.stderr
        assert "no room for another connection" in result.stderr
        assert "ulimit -n" in result.stderr
        assert "FLM062W" in daemon.log()
        if transport != "tls":
            # More at once than the descriptors kept free: the last are taken from the
            # backlog with the reserve descriptor.  Every one is told, none waits.
            # Those the daemon answers from its reserve are answered and closed at once:
            # a request sent after that fails (EPIPE), the answer is read all the same.
            burst = [daemon.connect() for _ in range(30)]
            for sock in burst:
                with contextlib.suppress(BrokenPipeError):
                    sock.sendall(lock_request("x"))
            assert [read_answer(sock).rc for sock in burst] == [_rc.CONNECTION_REFUSED] * 30
            for sock in burst:
                sock.close()
            assert "FLM019E" not in daemon.log()
        # Every holder still holds: none was closed to make room.
        for i in range(len(holders)):
            assert holders[i].state == pyflom.HandleState.LOCKED
        holders.pop().unlock()  # one gives its connection back: there is room again
        assert daemon.flom("-r", "R0", "-o", "0", "--", "true").returncode == 98
    finally:
        for handle in holders:
            handle.close()


def dribble_until_closed(sock: socket.socket, payload: bytes, every: float) -> float:
    """Send ``payload`` a byte each ``every`` seconds until the daemon closes ``sock``;
    return the seconds from the first byte (at most 30: never closed)."""
    start = time.monotonic()
    sock.settimeout(every)
    for byte in payload:
        try:
            sock.send(bytes([byte]))
            if sock.recv(4096) == b"":
                break
        except TimeoutError:
            pass
        except OSError:
            break
        if time.monotonic() - start > 30:
            break
    return time.monotonic() - start


def test_a_message_sent_a_byte_at_a_time_is_cut_off_from_its_first_byte(
    sandbox: FlomSandbox,
) -> None:
    daemon = LimitedDaemon(sandbox, "unix", nofile=1024, stall_s=2)
    slow = daemon.connect()
    elapsed = dribble_until_closed(slow, lock_request("Slow")[:-1] * 4, every=0.25)
    slow.close()
    assert elapsed < 8, "each byte kept the connection alive"
    assert "no complete message within 2 s of its first byte" in daemon.log()


def test_a_tls_handshake_sent_a_byte_at_a_time_is_cut_off(
    sandbox: FlomSandbox, certs: Standard
) -> None:
    tls_args = tls_options(certs.peer1, certs.ca1)
    daemon = LimitedDaemon(sandbox, "unix", nofile=1024, stall_s=2, tls_args=tls_args)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    with pytest.raises(ssl.SSLWantReadError):
        context.wrap_bio(incoming, outgoing).do_handshake()
    hello = outgoing.read()
    slow = daemon.connect()
    elapsed = dribble_until_closed(slow, hello * 4, every=0.25)
    slow.close()
    assert elapsed < 8, "each byte of the handshake kept the connection alive"
    assert "TLS handshake not complete within 2 s" in daemon.log()


def test_a_daemon_that_never_answers_is_not_called_busy(sandbox: FlomSandbox) -> None:
    # A listening socket nobody accepts on: what a client sees of a daemon out of
    # descriptors that can no longer take anyone from its backlog.
    mute = socket.socket(socket.AF_UNIX)
    mute.bind(sandbox.socket)
    mute.listen(8)
    try:
        result = sandbox.run("-r", "x", "-o", "500", "--", "echo", "ran")
    finally:
        mute.close()
        sandbox.daemon_pids.discard(os.getpid())  # the "daemon" the sandbox saw: this test
    assert result.returncode == 98 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == "The lock was not obtained because timeout (500 milliseconds) expired"
    assert "the daemon did not answer the request at all" in lines[1]
    assert "out of descriptors" in lines[1]


def test_a_busy_resource_still_says_only_the_timeout(sandbox: FlomSandbox) -> None:
    assert sandbox.run("-d", "-1", "--", "true").returncode == 0
    holder = pyflom.Handle("x", socket_name=sandbox.socket)
    holder.lock()
    try:
        result = sandbox.run("-r", "x", "-o", "300", "--", "echo", "ran")
    finally:
        holder.close()
    assert result.returncode == 98
    assert result.stderr == "The lock was not obtained because timeout (300 milliseconds) expired\n"
