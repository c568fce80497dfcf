"""Start a daemon on demand: a fresh, detached interpreter that reports when it is ready.

The starter spawns ``python -m pyflom.daemon`` in a new session with stdio on
/dev/null (so ``out=$(flom -- cmd)`` never waits for the daemon), waits for that
process to fork the real daemon and exit, then reads a 4-byte status from a pipe: 0
once the daemon listens, ``rc.FLOCK_ERROR`` when another daemon owns the socket or the
TCP address.  A daemon that refuses to start for a reason the user must fix (a state
file it cannot use) writes that reason after the status.
"""

from __future__ import annotations

import os
import select
import struct
import sys

from . import rc as _rc
from .daemonline import cmdline as _cmdline
from .daemonline import option_values as _option_values
from .errors import ConnectionFailed
from .options import (
    ABSOLUTE,
    DAEMON_ARGV_ORDER,
    ETCD,
    KEEPALIVE,
    LOCAL,
    NETWORK,
    SOCKET,
    SWITCH,
    TLS,
    Option,
)
from .settings import Settings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .cmdline import DaemonOption

READY_TIMEOUT_S = 10.0
REASON_MAX = 4096  # bytes of a refusing daemon's reason that are read


def daemon_argv(settings: Settings, ready_fd: int) -> list[str]:
    """The command line that starts the daemon ``settings`` describe: on their UNIX
    socket, or on TCP (``-a``) and/or answering discovery on a multicast group (``-A``).
    The settings that go and how: :data:`pyflom.options.DAEMON_ARGV_ORDER`."""
    argv = [sys.executable, "-m", "pyflom.daemon", "--ready-fd", str(ready_fd)]
    local = settings.effective_socket_name()
    tls = bool(settings.tls_certificate and settings.tls_private_key)
    tls = tls and bool(settings.tls_ca_certificate)
    for option in DAEMON_ARGV_ORDER:
        daemon = option.daemon
        assert daemon is not None
        if (
            (daemon.when == LOCAL and local is None)
            or (daemon.when == NETWORK and local is not None)
            or (daemon.when == TLS and not tls)
            or (daemon.when == ETCD and not settings.backend)
            or (daemon.needs and not getattr(settings, daemon.needs))
        ):
            continue
        argv += _daemon_words(option, settings, local)
    return argv


def _daemon_words(option: Option, settings: Settings, local: str | None) -> list[str]:
    """``option``'s setting on the daemon's command line: the flag and its value."""
    assert option.daemon is not None
    flag, form = option.daemon.flag, option.daemon.form
    value = getattr(settings, option.field)
    if form == SWITCH:
        return [flag] if value else []
    if form == SOCKET:
        return [flag, str(local)]
    if form == KEEPALIVE:
        return [flag, ",".join(map(str, settings.keepalive_s()))]
    if form == ABSOLUTE:
        return [flag, os.path.abspath(value)]
    return [flag, str(value)]


# What the daemon takes when its command line lacks an option (its argparse defaults).
DAEMON_DEFAULTS = {
    option.daemon.flag: _daemon_words(option, Settings(), None)[1]
    for option in DAEMON_ARGV_ORDER
    if option.daemon is not None and option.daemon.default
}


def running_daemon_argv(pid: int) -> list[str] | None:
    """The command line of the pyflom daemon ``pid``, None when unknown (not this host's
    /proc, or not a pyflom daemon: FLoM's own, say)."""
    words = _cmdline(pid)
    return words if words is not None and "pyflom.daemon" in words else None


def ignored_daemon_options(
    settings: Settings, given: list[DaemonOption], daemon_pid: int | None
) -> list[DaemonOption]:
    """Of the daemon-only options ``given`` to a command that found its daemon already
    running (``daemon_pid``, when known), those that daemon does not have.

    With the daemon's command line at hand (a local pyflom daemon), an option counts only
    when its value differs from the daemon's: the same ``~/.flom`` gave the first command
    the same values.  Otherwise only the command line's options count, not the
    configuration files' (read by every command, the one that started it included)."""
    running = None if daemon_pid is None else running_daemon_argv(daemon_pid)
    if running is None:
        return [option for option in given if option.on_command_line]
    names = {option.daemon_flag for option in given}
    wanted = _option_values(daemon_argv(settings, -1), names)
    actual = _option_values(running, names)
    return [
        option
        for option in given
        if wanted.get(option.daemon_flag)
        != actual.get(option.daemon_flag, DAEMON_DEFAULTS.get(option.daemon_flag))
    ]


def spawn_daemon(settings: Settings) -> tuple[int, int]:
    """Spawn the starter of the daemon ``settings`` describe, detached (new session,
    stdio on /dev/null); return its PID and the read end of its ready pipe."""
    read_end, write_end = os.pipe()
    try:
        os.set_inheritable(write_end, True)
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            pid = os.posix_spawn(
                sys.executable,
                daemon_argv(settings, write_end),
                os.environ,
                file_actions=[(os.POSIX_SPAWN_DUP2, devnull, fd) for fd in (0, 1, 2)],
                setsid=True,
            )
        finally:
            os.close(devnull)
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    return pid, read_end


def status_code(status: bytes) -> int:
    """The start status in the 4 bytes a daemon wrote first (``DAEMON_NOT_STARTED``
    when the pipe ended before them)."""
    if len(status) < 4:
        return _rc.DAEMON_NOT_STARTED
    return int(struct.unpack("=i", status[:4])[0])


def may_explain(code: int) -> bool:
    """Does a daemon that wrote ``code`` refuse to start (and write why after it)?"""
    return code not in (_rc.OK, _rc.FLOCK_ERROR)


def start_result(code: int, reason: bytes) -> int:
    """``code``; raises :class:`ConnectionFailed` (``DAEMON_NOT_STARTED``) with the daemon's
    own words when it refused to start and said why (``reason``)."""
    text = reason.decode(errors="replace").strip()
    if text:
        raise ConnectionFailed(f"the daemon did not start: {text}", rc=_rc.DAEMON_NOT_STARTED)
    return code


def start_daemon(settings: Settings) -> int:
    """Start the daemon ``settings`` describe; return its start status (a FLoM rc).

    Raises :class:`ConnectionFailed` (``DAEMON_NOT_STARTED``) with the daemon's own words when
    it refused to start and said why."""
    try:
        pid, read_end = spawn_daemon(settings)
    except OSError:
        return _rc.DAEMON_NOT_STARTED
    try:
        os.waitpid(pid, 0)
        code = status_code(_read(read_end, 4))
        reason = _read(read_end, REASON_MAX) if may_explain(code) else b""
    except OSError:
        return _rc.DAEMON_NOT_STARTED
    finally:
        os.close(read_end)
    return start_result(code, reason)


def _read(read_end: int, size: int) -> bytes:
    """Up to ``size`` bytes from the pipe, until its end or :data:`READY_TIMEOUT_S` of
    silence."""
    data = b""
    while len(data) < size:
        ready, _, _ = select.select([read_end], [], [], READY_TIMEOUT_S)
        chunk = os.read(read_end, size - len(data)) if ready else b""
        if not chunk:
            break
        data += chunk
    return data
