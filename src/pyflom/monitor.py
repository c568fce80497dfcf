"""Run the user's command while the lock is held (FLoM's "monitor")."""

from __future__ import annotations

import os
import signal

TYPE_CHECKING = False  # keep ``typing``/``collections`` off the command's import path
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import FrameType
    from typing import Any

    Disposition = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None

# Signals the monitor passes on to the command instead of dying and orphaning it (FLoM
# dies and leaves the command running without a lock, FLoM issue #14).
FORWARDED_SIGNALS = (
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
# Python itself ignores these; the command gets them back at their default.  Signals
# ignored before flom started (``nohup flom -- cmd``) stay ignored in the command.
_PYTHON_IGNORES = (signal.SIGPIPE, signal.SIGXFSZ)


class CommandNotExecutable(Exception):
    """The command could not be started (not found, not executable...)."""


class LockWatch:
    """The lock's connection, as the monitor sees it while the command runs.

    The connection's descriptor ``fd`` is inherited by the command (as ``flock`` does),
    so the lock lives as long as the command even if the monitor itself is killed.
    ``peer_closed`` is called when ``fd`` becomes readable and says whether the daemon
    has gone (the lock is lost).  Then ``on_loss`` is called once with the command's
    pid; when ``terminate`` is set the command gets SIGTERM and, ``grace_s`` seconds
    later if it still runs, SIGKILL.
    """

    def __init__(
        self,
        fd: int,
        peer_closed: Callable[[], bool],
        on_loss: Callable[[int], None],
        terminate: bool = True,
        grace_s: float = 5.0,
    ) -> None:
        self.fd = fd
        self.peer_closed = peer_closed
        self.on_loss = on_loss
        self.terminate = terminate
        self.grace_s = grace_s
        self.lost = False


def exit_status(wait_status: int) -> int:
    """The shell convention: the command's exit code, or 128+N if signal N killed it."""
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


def run_command(
    argv: Sequence[str],
    ignored_signals: Sequence[int] = (),
    extra_env: dict[str, str] | None = None,
    watch: LockWatch | None = None,
) -> int:
    """Run ``argv`` (PATH search) with ``extra_env`` added to the environment, wait for
    it and return its exit status.

    While it runs, ``ignored_signals`` are ignored by the monitor and the signals in
    :data:`FORWARDED_SIGNALS` are passed on to the command.  With a ``watch``, the
    command inherits the lock's connection and the monitor acts when it is lost.
    """
    child: list[int] = []
    pending: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        if child:
            os.kill(child[0], signum)
        else:
            pending.append(signum)

    previous: dict[int, Disposition] = {}
    for forwarded in FORWARDED_SIGNALS:
        if signal.getsignal(forwarded) != signal.SIG_IGN:
            previous[forwarded] = signal.signal(forwarded, forward)
    reset_in_child: set[int] = set(_PYTHON_IGNORES)
    for signum in ignored_signals:
        if signal.getsignal(signum) != signal.SIG_IGN:
            reset_in_child.add(signum)
        try:
            previous.setdefault(signum, signal.getsignal(signum))
            signal.signal(signum, signal.SIG_IGN)
        except (OSError, ValueError):
            import sys

            print(f"Warning: couldn't ignore signal {signum}", file=sys.stderr)
    try:
        if watch is not None:
            os.set_inheritable(watch.fd, True)
        try:
            env = os.environ if not extra_env else {**os.environ, **extra_env}
            pid = os.posix_spawnp(argv[0], list(argv), env, setsigdef=reset_in_child)
        except OSError as exc:
            raise CommandNotExecutable(
                f"Unable to execute command '{argv[0]}': {exc.strerror}"
            ) from exc
        finally:
            if watch is not None:
                os.set_inheritable(watch.fd, False)
        child.append(pid)
        for early in pending:
            os.kill(pid, early)
        if watch is None:
            _, status = os.waitpid(pid, 0)
        else:
            status = _wait_watching(pid, watch)
        return exit_status(status)
    finally:
        for restored, handler in previous.items():
            if handler is not None:
                signal.signal(restored, handler)


_POLL_WITHOUT_PIDFD_MS = 50  # how often the end of the command is checked without pidfd


def _wait_watching(pid: int, watch: LockWatch) -> int:
    """Wait for ``pid`` while watching the lock's connection; return the wait status."""
    import select
    import time

    poller = select.poll()
    poller.register(watch.fd, select.POLLIN)
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux >= 5.3: look at the child now and then
        pidfd = -1
    else:
        poller.register(pidfd, select.POLLIN)
    kill_at: float | None = None
    try:
        while True:
            waits = [_POLL_WITHOUT_PIDFD_MS] if pidfd < 0 else []
            if kill_at is not None:
                waits.append(max(0, int((kill_at - time.monotonic()) * 1000) + 1))
            events = poller.poll(min(waits) if waits else None)
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            readable = any(fd == watch.fd for fd, _ in events)
            if readable and not watch.lost and watch.peer_closed():
                watch.lost = True
                poller.unregister(watch.fd)
                watch.on_loss(pid)
                if watch.terminate:
                    _signal(pid, signal.SIGTERM)
                    kill_at = time.monotonic() + watch.grace_s
            if kill_at is not None and time.monotonic() >= kill_at:
                _signal(pid, signal.SIGKILL)
                kill_at = None
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
