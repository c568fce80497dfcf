"""Never two holders at the edges of the lifecycle (issue 9): shutdown, a killed `flom`,
a dead daemon, other users, descriptor exhaustion, a cold start with a short timeout.

Real daemons, real processes; every process is ended by PID.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FLOM, FlomSandbox, daemon_pid, process_alive, wait_for
from pyflom.daemon.log import REPEAT_BURST
from raw_client import lock_request, read_answer

OTHER_UID = 4242  # a non-root user that owns nothing else here


def raw_waiter(path: str, name: str) -> socket.socket:
    """A connection whose lock request on ``name`` has been queued (answer rc 1)."""
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(20)
    sock.connect(path)
    sock.sendall(lock_request(name))
    answer = read_answer(sock)
    assert answer.rc == 1, answer
    return sock


def read_pid(path: Path) -> int:
    assert wait_for(lambda: path.exists() and path.read_text().strip(), timeout=20)
    return int(path.read_text())


def holder(sandbox: FlomSandbox, *options: str, script: str) -> subprocess.Popen[str]:
    """`flom -d -1 OPTIONS -r R -- sh -c SCRIPT`, stderr to the file ``err``."""
    return sandbox.start_logged(
        "-d", "-1", *options, "-r", "R", "--", "sh", "-c", script, stderr_file="err"
    )


LOOP = "while :; do sleep 0.05; done"


# -- 1. a shutdown never grants ------------------------------------------------------------
@pytest.mark.parametrize("how", ["-X", "SIGTERM", "SIGINT"])
def test_shutdown_never_grants_a_queued_request(sandbox: FlomSandbox, how: str) -> None:
    proc = holder(sandbox, script=f"echo $$ > cmd.pid; {LOOP}")
    read_pid(sandbox.path("cmd.pid"))
    waiter = raw_waiter(sandbox.socket, "R")
    pid = sandbox.remember_daemon()
    assert pid is not None
    if how == "-X":
        assert sandbox.run("-X").returncode == 0
    else:
        os.kill(pid, getattr(signal, how))
    # The waiter sees its connection end: never a grant.
    data = waiter.recv(4096)
    assert data == b"", f"a shutting-down daemon granted a waiter: {data!r}"
    waiter.close()
    # The holder loses its lock: its command is told, flom exits 99.
    assert proc.wait(timeout=30) == 99
    assert "lost the lock on 'R'" in sandbox.path("err").read_text()
    assert wait_for(lambda: not process_alive(pid), timeout=10)


# -- 2. a killed flom does not free the lock while its command runs ------------------------
def test_killed_flom_keeps_the_lock_while_the_command_runs(sandbox: FlomSandbox) -> None:
    proc = holder(sandbox, script="echo $$ > cmd.pid; exec sleep 120")
    command = read_pid(sandbox.path("cmd.pid"))
    proc.kill()
    proc.wait(timeout=10)
    assert process_alive(command)
    busy = sandbox.run("-r", "R", "-o", "0", "--", "true")
    assert busy.returncode == 98, busy.stderr  # the command still holds the lock
    os.kill(command, signal.SIGKILL)
    free = sandbox.run("-r", "R", "-o", "20000", "--", "true")
    assert free.returncode == 0, free.stderr  # the command's end freed it


# -- 3. a lost lock is told to the command ---------------------------------------------------
def kill_daemon(sandbox: FlomSandbox) -> None:
    pid = sandbox.remember_daemon()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)


def test_daemon_death_terminates_the_command(sandbox: FlomSandbox) -> None:
    script = f'echo $$ > cmd.pid; trap "touch got-term; exit 3" TERM; {LOOP}'
    proc = holder(sandbox, script=script)
    read_pid(sandbox.path("cmd.pid"))
    kill_daemon(sandbox)
    assert proc.wait(timeout=30) == 99
    assert sandbox.path("got-term").exists()
    err = sandbox.path("err").read_text()
    assert "lost the lock on 'R'" in err and "SIGTERM" in err, err
    assert "the command ended (status 3)" in err, err


def test_command_deaf_to_sigterm_is_killed_after_the_grace(sandbox: FlomSandbox) -> None:
    script = f'trap "" TERM; echo $$ > cmd.pid; {LOOP}'
    proc = holder(sandbox, "--lock-loss-grace=300", script=script)
    command = read_pid(sandbox.path("cmd.pid"))
    kill_daemon(sandbox)
    assert proc.wait(timeout=30) == 99
    assert not process_alive(command)
    assert "the command ended (status 137)" in sandbox.path("err").read_text()


def test_lock_loss_keep_lets_the_command_finish(sandbox: FlomSandbox) -> None:
    script = "echo $$ > cmd.pid; while [ ! -e go ]; do sleep 0.05; done; touch finished"
    proc = holder(sandbox, "--lock-loss=keep", script=script)
    command = read_pid(sandbox.path("cmd.pid"))
    kill_daemon(sandbox)
    err = sandbox.path("err")
    assert wait_for(lambda: "lost the lock" in err.read_text(), timeout=20)
    assert "runs on without it" in err.read_text()
    assert process_alive(command) and proc.poll() is None
    sandbox.path("go").touch()
    assert proc.wait(timeout=30) == 99  # as FLoM: the unlock cannot be sent
    assert sandbox.path("finished").exists()


def test_lock_loss_options_are_validated_and_shown(sandbox: FlomSandbox) -> None:
    bad = sandbox.run("--lock-loss=maybe", "--", "true")
    assert bad.returncode == 99 and "lock-loss: 'maybe' is an invalid value" in bad.stderr
    shown = sandbox.run("-V", "--lock-loss=KEEP", "--lock-loss-grace=-700", "-x")
    assert "[Monitor]/LockLoss='keep'\n[Monitor]/LockLossGrace=700\n" in shown.stdout
    config = sandbox.path("c.conf")
    config.write_text("[Monitor]\nLockLoss=keep\nLockLossGrace=1234\n")
    shown = sandbox.run("-V", "-c", str(config), "-x")
    assert "[Monitor]/LockLoss='keep'\n[Monitor]/LockLossGrace=1234\n" in shown.stdout
    config.write_text("[Monitor]\nLockLoss=sometimes\n")
    assert sandbox.run("-c", str(config), "--", "true").returncode == 99


# -- 5. other users ---------------------------------------------------------------------------
def test_daemon_honours_the_umask(sandbox: FlomSandbox) -> None:
    proc = subprocess.run(
        sandbox.args("-d", "-1", "--", "true"),
        env=sandbox.env,
        preexec_fn=lambda: os.umask(0o077),
        timeout=60,
    )
    assert proc.returncode == 0
    sandbox.remember_daemon()
    assert stat.S_IMODE(os.stat(sandbox.socket).st_mode) & 0o077 == 0
    assert stat.S_IMODE(os.stat(sandbox.socket + ".lock").st_mode) & 0o077 == 0


needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("setpriv"),
    reason="needs root, unshare and setpriv (private /tmp, another user's files)",
)


def in_private_tmp(sandbox: FlomSandbox, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`flom ARGS` with ``tmp`` mounted on /tmp (so the default socket is private).

    A checkout that lies in /tmp itself (a CI clone, say) stays visible: its top
    directory is bound into ``tmp`` first."""
    script = 'mount --rbind "$1" /tmp && shift && exec "$@"'
    checkout = Path(FLOM).resolve().parents
    top = [p for p in checkout if p.parent == Path("/tmp")]
    if top:
        (tmp / top[0].name).mkdir(exist_ok=True)
        script = f'mount --bind "{top[0]}" "$1/{top[0].name}" && ' + script
    return subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
            str(tmp),
            FLOM,
            *args,
        ],
        capture_output=True,
        text=True,
        env=sandbox.env,
        timeout=60,
    )


@needs_root
@pytest.mark.parametrize("which", ["socket", "lock"])
def test_default_socket_of_another_user_is_refused(sandbox: FlomSandbox, which: str) -> None:
    tmp = sandbox.path("tmp")
    tmp.mkdir(mode=0o1777)
    default = tmp / "flom-root"
    target = default if which == "socket" else tmp / "flom-root.lock"
    target.touch()
    os.chown(target, OTHER_UID, OTHER_UID)
    refused = in_private_tmp(sandbox, tmp, "-d", "3000", "--", "true")
    try:
        assert refused.returncode == 99, refused.stderr
        assert f"refusing '/tmp/{target.name}'" in refused.stderr, refused.stderr
        assert f"uid {OTHER_UID}" in refused.stderr and "-s PATH" in refused.stderr
        assert daemon_pid(str(default)) is None
        target.unlink()  # once it is gone, the default socket works
        works = in_private_tmp(sandbox, tmp, "-d", "3000", "--", "true")
        assert works.returncode == 0, works.stderr
    finally:
        pid = daemon_pid(str(default))
        if pid is not None:
            sandbox.daemon_pids.add(pid)


@needs_root
def test_default_socket_symlink_is_refused(sandbox: FlomSandbox) -> None:
    tmp = sandbox.path("tmp")
    tmp.mkdir(mode=0o1777)
    (tmp / "flom-root.lock").symlink_to(sandbox.path("elsewhere"))
    refused = in_private_tmp(sandbox, tmp, "-d", "3000", "--", "true")
    assert refused.returncode == 99
    assert "is a symbolic link" in refused.stderr, refused.stderr
    assert not sandbox.path("elsewhere").exists()


@needs_root
def test_lock_file_of_another_user_is_a_clear_start_failure(sandbox: FlomSandbox) -> None:
    lock = Path(sandbox.socket + ".lock")
    lock.touch(mode=0o644)
    os.chown(lock, OTHER_UID, OTHER_UID)
    # root without its capabilities may not open another user's file, as any user
    proc = subprocess.run(
        [
            "setpriv",
            "--bounding-set",
            "-all",
            "--inh-caps",
            "-all",
            "--",
            FLOM,
            "-s",
            sandbox.socket,
            "-d",
            "3000",
            "--",
            "true",
        ],
        capture_output=True,
        text=True,
        env=sandbox.env,
        timeout=60,
    )
    assert proc.returncode == 99
    assert "the daemon did not start" in proc.stderr, proc.stderr
    assert f"Permission denied (owned by uid {OTHER_UID})" in proc.stderr, proc.stderr


# -- 6. out of descriptors ------------------------------------------------------------------
def test_descriptor_exhaustion_is_logged_once_and_recovers(sandbox: FlomSandbox) -> None:
    trace = sandbox.path("daemon.trace")
    limit = 32

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    daemon = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pyflom.daemon",
            "--socket-name",
            sandbox.socket,
            "--lifespan",
            "-1",
            "--trace-file",
            str(trace),
        ],
        env=sandbox.env,
        preexec_fn=low_limit,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sandbox.daemon_pids.add(daemon.pid)
    try:
        assert wait_for(lambda: daemon_pid(sandbox.socket) == daemon.pid, timeout=30)
        clients = []
        for _ in range(2 * limit):  # more than the daemon can take: the rest are refused
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(sandbox.socket)
            clients.append(sock)
        assert wait_for(lambda: "FLM062W" in trace.read_text(), timeout=20)
        time.sleep(1.0)  # a daemon that spins would log thousands of lines meanwhile
        log = trace.read_text()
        # Refused (and told so, rc 7), logged a few times and summed up; none waits in
        # the backlog (FLM019E: only when not even the reserve descriptor is left).
        assert log.count("FLM062W") == REPEAT_BURST and "FLM019E" not in log
        told = 0
        for sock in clients:
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):  # taken in: nothing to read
                told += b'rc="7"' in sock.recv(4096)
            sock.close()
        assert told >= limit
        works = sandbox.run("-r", "R", "-o", "20000", "--", "true")
        assert works.returncode == 0, works.stderr
    finally:
        daemon.kill()
        daemon.wait(timeout=10)


# -- 10. the timeout counts from the request ----------------------------------------------------
def test_short_timeout_on_a_cold_start(sandbox: FlomSandbox) -> None:
    assert daemon_pid(sandbox.socket) is None
    started = sandbox.run("-d", "3000", "-o", "100", "--", "true")
    assert started.returncode == 0, started.stderr
