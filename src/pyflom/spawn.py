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
from .errors import FlomError
from .settings import (
    DEFAULT_DAEMON_LIFESPAN_MS,
    DEFAULT_MULTICAST_PORT,
    GrantPolicy,
    Settings,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .cmdline import DaemonOption

READY_TIMEOUT_S = 10.0
REASON_MAX = 4096  # bytes of a refusing daemon's reason that are read


def daemon_argv(settings: Settings, ready_fd: int) -> list[str]:
    """The command line that starts the daemon ``settings`` describe: on their UNIX
    socket, or on TCP (``-a``) and/or answering discovery on a multicast group (``-A``)."""
    argv = [
        sys.executable,
        "-m",
        "pyflom.daemon",
        "--lifespan",
        str(settings.daemon_lifespan),
        "--grant-policy",
        settings.grant_policy,
        "--ready-fd",
        str(ready_fd),
    ]
    socket_name = settings.effective_socket_name()
    if socket_name is not None:
        argv += ["--socket-name", socket_name]
    else:
        if settings.unicast_address:
            argv += ["--unicast-address", settings.unicast_address]
            argv += ["--unicast-port", str(settings.unicast_port)]
        if settings.multicast_address:
            argv += ["--multicast-address", settings.multicast_address]
            argv += ["--multicast-port", str(settings.multicast_port)]
        if settings.network_interface:
            argv += ["--network-interface", settings.network_interface]
        argv += ["--tcp-keepalive", ",".join(map(str, settings.keepalive_s()))]
    if settings.tls_certificate and settings.tls_private_key and settings.tls_ca_certificate:
        argv += ["--tls-certificate", settings.tls_certificate]
        argv += ["--tls-private-key", settings.tls_private_key]
        argv += ["--tls-ca-certificate", settings.tls_ca_certificate]
        if settings.tls_check_peer_id:
            argv.append("--tls-check-peer-id")
        if settings.tls_trace_file:
            argv += ["--tls-trace", settings.tls_trace_file]
        if settings.tls_keylog_file:
            argv += ["--tls-keylog", settings.tls_keylog_file]
    if settings.state_file:
        argv += ["--state-file", settings.state_file]
    if settings.mount_point_vfs:
        argv += ["--mount-point-vfs", os.path.abspath(settings.mount_point_vfs)]
    if settings.daemon_trace_file:
        argv += ["--trace-file", os.path.abspath(settings.daemon_trace_file)]
        if settings.append_trace_file:
            argv.append("--append-trace-file")
    return argv


# What the daemon does when its command line lacks an option (pyflom.daemon.__main__).
_DAEMON_DEFAULTS = {
    "--lifespan": str(DEFAULT_DAEMON_LIFESPAN_MS),
    "--grant-policy": GrantPolicy.FLOM,
    "--multicast-port": str(DEFAULT_MULTICAST_PORT),
}


def _option_values(argv: list[str], names: set[str]) -> dict[str, str]:
    """The values of the options ``names`` in a daemon command line (``--name value`` or
    ``--name=value``; the last one wins, as in argparse)."""
    values = {}
    for index, word in enumerate(argv):
        name, equal, value = word.partition("=")
        if name in names:
            values[name] = value if equal else (argv[index + 1] if index + 1 < len(argv) else "")
    return values


def running_daemon_argv(pid: int) -> list[str] | None:
    """The command line of the pyflom daemon ``pid``, None when unknown (not this host's
    /proc, or not a pyflom daemon: FLoM's own, say)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            words = os.fsdecode(file.read()).split("\0")
    except (OSError, ValueError):
        return None
    return words if "pyflom.daemon" in words else None


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
        != actual.get(option.daemon_flag, _DAEMON_DEFAULTS.get(option.daemon_flag))
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
    """``code``; raises :class:`FlomError` (``DAEMON_NOT_STARTED``) with the daemon's
    own words when it refused to start and said why (``reason``)."""
    text = reason.decode(errors="replace").strip()
    if text:
        raise FlomError(f"the daemon did not start: {text}", rc=_rc.DAEMON_NOT_STARTED)
    return code


def start_daemon(settings: Settings) -> int:
    """Start the daemon ``settings`` describe; return its start status (a FLoM rc).

    Raises :class:`FlomError` (``DAEMON_NOT_STARTED``) with the daemon's own words when
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
