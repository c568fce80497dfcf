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
from .settings import LockLoss, Settings

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


def _option_values(argv: list[str], names: set[str]) -> dict[str, str]:
    """The values of the options ``names`` in a daemon command line (``--name value`` or
    ``--name=value``; the last one wins, as in argparse)."""
    values = {}
    for index, word in enumerate(argv):
        name, equal, value = word.partition("=")
        if name in names:
            values[name] = value if equal else (argv[index + 1] if index + 1 < len(argv) else "")
    return values


def _cmdline(pid: int) -> list[str] | None:
    """The command line of process ``pid`` on this host, None when unknown."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return os.fsdecode(file.read()).split("\0")
    except (OSError, ValueError):
        return None


def running_daemon_argv(pid: int) -> list[str] | None:
    """The command line of the pyflom daemon ``pid``, None when unknown (not this host's
    /proc, or not a pyflom daemon: FLoM's own, say)."""
    words = _cmdline(pid)
    return words if words is not None and "pyflom.daemon" in words else None


def backend_mismatch(settings: Settings, daemon_pid: int | None) -> str | None:
    """Why the local daemon ``daemon_pid`` must not serve a command whose settings name
    another lock space (a memory daemon granting on its own beside an etcd cluster, the
    reverse, or a gateway on another key prefix), or whose lock-loss grace outlasts what
    the gateway's lease covers; None when they agree or it cannot be told (no pid:
    another host).  A daemon that is not pyflom's (FLoM's own) keeps its locks in memory."""
    words = None if daemon_pid is None else _cmdline(daemon_pid)
    if words is None:
        return None
    actual = None
    given: dict[str, str] = {}
    if "pyflom.daemon" in words:
        given = _option_values(words, {"--backend", "--etcd-key-prefix", "--lock-loss-grace"})
        if given.get("--backend"):
            from .etcd.config import backend_setting

            actual = backend_setting(given["--backend"])  # it started with it: valid
    if actual != settings.backend:
        has = f"keeps its locks in etcd ({actual})" if actual else "keeps its locks in its memory"
        wants = f"etcd ({settings.backend})" if settings.backend else "the daemon's memory"
        return (
            f"the daemon (pid {daemon_pid}) {has}, but this command's configuration "
            f"([Daemon]/Backend or --backend) says {wants}: two lock spaces would each grant "
            "the same lock; stop that daemon (flom -X) or give every client of this host the "
            "same backend"
        )
    if actual is None:
        return None
    prefix = given.get("--etcd-key-prefix", DAEMON_DEFAULTS["--etcd-key-prefix"])
    if prefix != settings.etcd_key_prefix:
        return (
            f"the gateway (pid {daemon_pid}) keeps its locks under etcd key prefix '{prefix}', "
            f"but this command's configuration ([Etcd]/KeyPrefix or --etcd-key-prefix) says "
            f"'{settings.etcd_key_prefix}': two lock spaces would each grant the same lock; "
            "stop that gateway (flom -X) or give every client of this host the same key prefix"
        )
    grace = int(given.get("--lock-loss-grace", DAEMON_DEFAULTS["--lock-loss-grace"]))
    if settings.lock_loss == LockLoss.TERMINATE and settings.lock_loss_grace > grace:
        return (
            f"the gateway (pid {daemon_pid}) times its etcd lease for a lock-loss grace of "
            f"{grace} ms, but this command's is {settings.lock_loss_grace} ms: cut off from "
            "etcd, the gateway drops the lock in time for a command that ends within "
            f"{grace} ms, and this one could still run when the lock is granted elsewhere; "
            f"use --lock-loss-grace={grace} or less, or give the gateway and every client "
            "of this host the same [Monitor]/LockLossGrace"
        )
    return None


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
