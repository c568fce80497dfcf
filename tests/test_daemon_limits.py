"""The daemon at its limits (issue 9, items 8 and 9), with real daemons and sockets:
a capped number of live resources refused with a clear message, and a release that
grants more waiters than one batch of answers."""

from __future__ import annotations

import resource
import selectors
import socket
import subprocess
import sys

import pytest

import pyflom
from conftest import FlomSandbox, daemon_pid, wait_for
from pyflom import codec
from pyflom import rc as _rc


def start_daemon(box: FlomSandbox, *args: str) -> subprocess.Popen[str]:
    """``python -m pyflom.daemon`` in the background on the sandbox socket, logging to
    ``daemon.trc``; stopped by the sandbox (by PID) if the test does not stop it."""
    argv = [sys.executable, "-m", "pyflom.daemon", "--socket-name", box.socket]
    argv += ["--lifespan", "-1", "--trace-file", str(box.path("daemon.trc")), *args]
    proc = subprocess.Popen(argv, env=box.env, stderr=subprocess.PIPE, text=True)
    box.started.append(proc)
    assert wait_for(lambda: daemon_pid(box.socket) == proc.pid, timeout=15)
    return proc


def stop_daemon(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    assert proc.wait(timeout=10) == 0


def test_daemon_refuses_resources_beyond_its_limit(sandbox: FlomSandbox) -> None:
    proc = start_daemon(sandbox, "--max-resources", "3")
    for name in ("A", "/h/x", "_s_n[1]"):  # idle, but alive for a minute
        assert sandbox.run("-r", name, "-i", "60000", "--", "true").returncode == 0
    refused = sandbox.run("-r", "D", "--", "echo", "ran")
    assert refused.returncode == 99 and refused.stdout == ""
    lines = refused.stderr.splitlines()
    assert lines[0] == (
        "flom_client_lock: ret_cod=-12 "
        "(ERROR: the container is full and cannot store more elements)"
    )
    assert "refused to create resource 'D'" in lines[1] and "--max-resources" in lines[1]
    # What exists is still served; the library gets the reason code.
    assert sandbox.run("-r", "A", "--", "true").returncode == 0
    assert sandbox.run("-r", "/h/other", "--", "true").returncode == 0
    for attempt in range(20):
        with pytest.raises(pyflom.FlomError) as refusal:
            pyflom.Handle(f"New{attempt}", socket_name=sandbox.socket).lock()
        assert refusal.value.rc == _rc.CONTAINER_FULL
    # One warning for the whole flood, with the limit.
    log = sandbox.path("daemon.trc").read_text()
    warnings = [line for line in log.splitlines() if "FLM028W" in line]
    assert len(warnings) == 1, warnings
    assert "limit of 3 live resources reached" in warnings[0]
    assert "refused with reason code -12" in warnings[0]
    stop_daemon(proc)


def test_daemon_refuses_a_limit_below_one(sandbox: FlomSandbox) -> None:
    argv = [sys.executable, "-m", "pyflom.daemon", "--socket-name", sandbox.socket]
    result = subprocess.run(
        [*argv, "--max-resources", "0"],
        capture_output=True,
        text=True,
        env=sandbox.env,
        timeout=30,
    )
    assert result.returncode == 2 and "--max-resources" in result.stderr
    assert daemon_pid(sandbox.socket) is None


def lock_request(name: str, wait: bool = True) -> bytes:
    return codec.encode(codec.LockRequest("test", name, wait, True, 0, mode=5))


def answers(sock: socket.socket, count: int) -> list[codec.LockAnswer]:
    """Read ``count`` answers from a blocking socket."""
    framer = codec.Framer()
    got: list[codec.LockAnswer] = []
    while len(got) < count:
        data = sock.recv(4096)
        assert data, "the daemon closed the connection"
        for frame in framer.feed(data):
            answer = codec.decode(frame)
            assert isinstance(answer, codec.LockAnswer)
            got.append(answer)
    return got


@pytest.mark.parametrize("policy", ["flom", "fifo"])
def test_release_granting_many_waiters_answers_each_once_in_order(
    sandbox: FlomSandbox, policy: str
) -> None:
    waiters = 700  # more than two batches of answers (256)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 2 * waiters + 100:
        pytest.skip(f"needs {2 * waiters + 100} descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2 * waiters + 100), hard))
    proc = start_daemon(sandbox, "--grant-policy", policy)
    socks: list[socket.socket] = []
    try:
        holder = socket.socket(socket.AF_UNIX)
        socks.append(holder)
        holder.settimeout(60)
        holder.connect(sandbox.socket)
        holder.sendall(lock_request("/h"))
        assert [a.rc for a in answers(holder, 1)] == [_rc.OK]
        queued = []
        for i in range(waiters):
            sock = socket.socket(socket.AF_UNIX)
            socks.append(sock)
            sock.settimeout(60)
            sock.connect(sandbox.socket)
            sock.sendall(lock_request(f"/h/x{i}"))
            (first,) = answers(sock, 1)
            assert (first.step, first.rc) == (codec.STEP_FIRST_ANSWER, _rc.LOCK_ENQUEUED)
            queued.append(sock)
        holder.sendall(codec.encode(codec.UnlockRequest("/h", False)))
        # Meanwhile another client is served on another resource.
        probe = pyflom.Handle("Probe", socket_name=sandbox.socket, keep_connection=True, timeout=60)
        probe.lock()
        probe.unlock()
        probe.close()
        selector = selectors.DefaultSelector()
        for index, sock in enumerate(queued):
            selector.register(sock, selectors.EVENT_READ, index)
        pending = {}
        while len(pending) < waiters:
            events = selector.select(timeout=60)
            assert events, f"{waiters - len(pending)} waiters never got their grant"
            for key, _ in events:
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                (grant,) = answers(sock, 1)
                assert (grant.step, grant.rc) == (codec.STEP_LATER_ANSWER, _rc.OK)
                pending[key.data] = grant.generation
                selector.unregister(sock)
        generations = [pending[i] for i in range(waiters)]
        assert generations == sorted(set(generations)), "granted out of queue order"
        for sock in queued:  # nothing more was sent to anyone
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(4096)
    finally:
        for sock in socks:
            sock.close()
    stop_daemon(proc)
