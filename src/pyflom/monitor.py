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


def exit_status(wait_status: int) -> int:
    """The shell convention: the command's exit code, or 128+N if signal N killed it."""
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


def run_command(
    argv: Sequence[str],
    ignored_signals: Sequence[int] = (),
    extra_env: dict[str, str] | None = None,
) -> int:
    """Run ``argv`` (PATH search) with ``extra_env`` added to the environment, wait for
    it and return its exit status.

    While it runs, ``ignored_signals`` are ignored by the monitor and the signals in
    :data:`FORWARDED_SIGNALS` are passed on to the command.
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
        try:
            env = os.environ if not extra_env else {**os.environ, **extra_env}
            pid = os.posix_spawnp(argv[0], list(argv), env, setsigdef=reset_in_child)
        except OSError as exc:
            raise CommandNotExecutable(
                f"Unable to execute command '{argv[0]}': {exc.strerror}"
            ) from exc
        child.append(pid)
        for early in pending:
            os.kill(pid, early)
        _, status = os.waitpid(pid, 0)
        return exit_status(status)
    finally:
        for restored, handler in previous.items():
            if handler is not None:
                signal.signal(restored, handler)
