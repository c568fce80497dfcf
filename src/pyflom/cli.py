"""The ``flom`` command: lock a resource, run a command, unlock, exit with its status.

A thin layer on :mod:`pyflom.client`.  Its import path is kept free of asyncio, ssl and
other heavy modules: one interpreter starts per command.
"""

from __future__ import annotations

import os
import sys
import time

from . import rc as _rc
from .cmdline import CliError, daemon_only_options, load_settings, parse_args, validate
from .errors import (
    ConnectionFailed,
    FlomError,
    LockBusy,
    LockCantWait,
    LockImpossible,
    LockTimeout,
)
from .settings import Settings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO

    from .client import Handle
    from .cmdline import DaemonOption
    from .monitor import LockWatch
    from .transport import Channel

SHUTDOWN_WAIT_S = 1.0  # as FLoM: how long -x/-X wait for the daemon's reaction
ES_OUTPUT_FAILED = 120  # as Python's own exit when it cannot write its output


class OutputFailed(Exception):
    """Writing to standard output or error failed (a closed pipe, a full disk)."""

    def __init__(self, stream: TextIO, error: OSError) -> None:
        name = "standard error" if stream is sys.stderr else "standard output"
        super().__init__(f"flom: could not write {name}: {error.strerror or error}")


def _write(stream: TextIO, text: str) -> None:
    try:
        stream.write(text)
    except OSError as exc:
        raise OutputFailed(stream, exc) from exc


def _err(text: str) -> None:
    _write(sys.stderr, text + "\n")


def _out(text: str) -> None:
    _write(sys.stdout, text if text.endswith("\n") else text + "\n")


def _output_failed(error: OutputFailed) -> int:
    try:  # straight to the file descriptor: the stream may be the one that failed
        os.write(2, f"{error}\n".encode())
    except OSError:
        pass
    return ES_OUTPUT_FAILED


def flush_output(status: int) -> int:
    """Flush standard output and error: ``status``, or 120 (said on stderr) if one fails."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError as exc:
            status = _output_failed(OutputFailed(stream, exc))
    return status


def _rc_line(function: str, error: FlomError) -> str:
    return f"{function}: ret_cod={error.rc} ({_rc.strerror(error.rc)})"


def _failure(function: str, error: FlomError) -> int:
    """FLoM's ``ret_cod`` line, then pyflom's explanation when there is more to say."""
    _err(_rc_line(function, error))
    detail = str(error)
    if detail and detail != _rc.strerror(error.rc):
        _err(f"flom: {detail}")
    return _rc.ES_GENERIC_ERROR


def _connect_failure(error: FlomError) -> int:
    return _failure("flom_client_connect", error)


def _timestamp_problem(name: str) -> str:
    """Why the daemon refused a timestamp resource (the same check, run here)."""
    from .core.resource import ResourceInitError
    from .core.timestamp import TimestampFormat

    try:
        TimestampFormat.parse(name[3 : name.rindex("[")])
    except ResourceInitError as exc:
        return str(exc)
    return f"'{name}' was refused by the daemon as an invalid timestamp format"


def lock_and_run(
    settings: Settings, command: list[str], daemon_options: list[DaemonOption] | None = None
) -> int:
    """Lock as ``settings`` say, run ``command`` (plus the locked element), unlock.

    ``daemon_options``: the daemon-only options the user gave, reported when the daemon
    was already running (:func:`report_ignored_daemon_options`)."""
    from .client import Handle
    from .monitor import CommandNotExecutable, run_command
    from .names import resource_type

    # FLoM's rule: the name's shape decides its kind (the library asks for it explicitly).
    handle = Handle(settings=settings, kind=resource_type(settings.resource_name))
    if settings.verbose:
        from .status import stopping_report, wait_report

        handle.on_wait = lambda channel, answer: _out(
            stopping_report(settings)
            if answer.rc == _rc.DAEMON_STOPPING
            else wait_report(settings, channel)
        )
    try:
        element = handle.lock()
    except LockBusy:
        _err("Resource already locked, the lock cannot be obtained")
        return _rc.ES_RESOURCE_BUSY
    except LockTimeout as exc:
        _err(
            "The lock was not obtained because timeout "
            f"({settings.resource_timeout} milliseconds) expired"
        )
        if exc.unanswered:
            _err(f"flom: {exc}")
        return _rc.ES_RESOURCE_BUSY
    except LockCantWait:
        _err("The resource could be available in the future, but the requester can't wait")
        return _rc.ES_REQUESTER_CANT_WAIT
    except LockImpossible:
        _err("Resource will never satisfy the request, the lock cannot be obtained")
        return _rc.ES_GENERIC_ERROR
    except ConnectionFailed as exc:
        return _connect_failure(exc)
    except FlomError as exc:
        if exc.rc == _rc.DAEMON_NOT_STARTED:
            return _connect_failure(exc)
        if exc.rc == _rc.INVALID_TIMESTAMP_FORMAT:
            _err(_rc_line("flom_client_lock", exc))
            _err(f"flom: {_timestamp_problem(settings.resource_name)}")
            return _rc.ES_GENERIC_ERROR
        if exc.rc == _rc.CONTAINER_FULL:
            _err(_rc_line("flom_client_lock", exc))
            _err(
                f"flom: the daemon refused to create resource '{settings.resource_name}': "
                "it already keeps as many live resources as its limit allows (python -m "
                "pyflom.daemon --max-resources); unused ones expire after their idle "
                "lifespan (-i), so retry later or use an existing resource"
            )
            return _rc.ES_GENERIC_ERROR
        return _failure("flom_client_lock", exc)
    refusal = _wrong_backend(handle.connection, settings)
    if refusal is not None:
        handle.abandon()  # the command never runs under that daemon's lock
        _err(f"flom: {refusal}")
        return _rc.ES_GENERIC_ERROR
    if daemon_options:
        report_ignored_daemon_options(handle.connection, settings, daemon_options)
    if settings.verbose and element is not None:
        _out(f"Locked element is '{element}'")
    argv = command + ([element] if element is not None else [])
    extra_env = {"FLOM_LOCK_RESOURCE": settings.resource_name}
    if element is not None:
        extra_env["FLOM_LOCKED_ELEMENT"] = element
    if handle.lock_generation is not None:
        extra_env["FLOM_LOCK_GENERATION"] = str(handle.lock_generation)
    watch = _lock_watch(handle, settings)
    try:
        status = run_command(argv, settings.ignored_signals, extra_env, watch)
    except CommandNotExecutable as exc:
        _err(str(exc))
        status = _rc.ES_UNABLE_TO_EXECUTE_COMMAND
    if watch is not None and watch.lost:
        handle.abandon()
        _err(f"flom: the command ended (status {status}) after its lock was lost: exit 99")
        return _rc.ES_GENERIC_ERROR
    try:
        handle.unlock(rollback=status != 0)
    except FlomError as exc:
        return _failure("flom_client_unlock", exc)
    return status


def _wrong_backend(channel: Channel | None, settings: Settings) -> str | None:
    """Why the daemon ``channel`` found (already running, on this host) must not serve
    ``settings``: it keeps its locks elsewhere than they say (see
    :func:`pyflom.daemonline.backend_mismatch`)."""
    if channel is None or channel.daemon_started:
        return None
    from .daemonline import backend_mismatch

    return backend_mismatch(settings, channel.peer_pid())


def report_ignored_daemon_options(
    channel: Channel | None, settings: Settings, given: list[DaemonOption]
) -> None:
    """Say on stderr which of the daemon-only options ``given`` a daemon that was already
    running when ``channel`` connected does not have (none when the command started it)."""
    if channel is None or channel.daemon_started:
        return
    from .spawn import ignored_daemon_options
    from .transport import daemon_address

    ignored = [
        option.label for option in ignored_daemon_options(settings, given, channel.peer_pid())
    ]
    if not ignored:
        return
    names = ignored[0] if len(ignored) == 1 else f"{', '.join(ignored[:-1])} and {ignored[-1]}"
    apply, were = ("applies", "it was") if len(ignored) == 1 else ("apply", "they were")
    _err(
        f"flom: a daemon already runs on {daemon_address(settings)}: {names} {apply} only to "
        f"a daemon this command starts; {were} ignored (stop it with flom -x, then run again)"
    )


def _lock_watch(handle: Handle, settings: Settings) -> LockWatch | None:
    """Watch the lock's connection while the command runs (the command inherits it)."""
    from .monitor import LockWatch
    from .settings import LockLoss

    channel = handle.connection
    if channel is None:
        return None
    terminate = settings.lock_loss == LockLoss.TERMINATE
    grace_ms = settings.lock_loss_grace

    def on_loss(pid: int) -> None:
        action = (
            f"terminating the command (pid {pid}: SIGTERM, SIGKILL {grace_ms} ms later)"
            if terminate
            else f"the command (pid {pid}) runs on without it (--lock-loss=keep)"
        )
        _err(
            f"flom: lost the lock on '{settings.resource_name}': the connection to the "
            f"daemon ended while the command ran (the daemon stopped or died, or the "
            f"network failed); {action}"
        )

    return LockWatch(channel.fileno(), channel.peer_closed, on_loss, terminate, grace_ms / 1000)


def shutdown_daemon(settings: Settings, immediate: bool) -> int:
    """``-x``/``-X``: ask the daemon to shut down (quiesce or immediately)."""
    import contextlib
    import socket

    from . import codec
    from .transport import open_channel
    from .uniqueid import peer_id

    _out(f"Starting FLoM daemon {'immediate' if immediate else 'quiesce'} shutdown...")
    try:
        channel = open_channel(settings, may_start_daemon=False)
    except FlomError as exc:
        return _connect_failure(exc)
    try:
        channel.send(codec.ShutdownRequest(peer_id(), immediate))
    except FlomError as exc:
        channel.close(graceful=False)
        _err(_rc_line("flom_client_shutdown", exc))
        return _rc.ES_GENERIC_ERROR
    # FLoM's daemon never answers; pyflom's answers only to refuse (peer id).  Both keep
    # the connection until the client ends it: on a plain socket, end our side now, so
    # that the daemon closes at once (over TLS, FLoM's way: wait up to a second).
    if not channel.tls:
        with contextlib.suppress(OSError):
            channel.sock.shutdown(socket.SHUT_WR)
    try:
        answer = channel.receive(time.monotonic() + SHUTDOWN_WAIT_S)
    except FlomError:
        answer = None
    if isinstance(answer, codec.ShutdownAnswer) and answer.rc == _rc.NOT_ALLOWED:
        from .notallowed import refusal

        why = refusal("stop the daemon (-x/-X)", channel, settings)  # while connected
        channel.close(graceful=False)
        _err(f"flom_client_shutdown: ret_cod={answer.rc} ({_rc.strerror(answer.rc)})")
        _err(f"flom: {why}")
        return _rc.ES_GENERIC_ERROR
    channel.close(graceful=False)
    if isinstance(answer, codec.ShutdownAnswer) and answer.rc < 0:
        _err(
            f"flom_client_shutdown: the daemon refused the shutdown: ret_cod={answer.rc} "
            f"({_rc.strerror(answer.rc)}); its log says why (FLM013E)"
        )
        return _rc.ES_GENERIC_ERROR
    return _rc.ES_OK


def show_status(settings: Settings, form: str, resource: str | None) -> int:
    """``--status[=table|json]``: print the daemon's holders and waiters."""
    from .status import format_json, format_table, query_status

    try:
        document = query_status(settings, resource)
    except ConnectionFailed as exc:
        _err(f"flom: no status: no daemon answers ({exc}), so nothing is locked there")
        return _rc.ES_GENERIC_ERROR
    except FlomError as exc:
        _err(f"flom: no status: {exc}")
        return _rc.ES_GENERIC_ERROR
    _write(sys.stdout, format_json(document) if form == "json" else format_table(document))
    return _rc.ES_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``flom`` console script."""
    args = sys.argv[1:] if argv is None else argv
    try:
        try:
            return _main(args)
        except CliError as exc:
            if exc.stdout:
                _out(exc.stdout)
            if exc.stderr:
                _err(exc.stderr)
            if exc.explanation:
                _err(exc.explanation)
            return exc.status
    except KeyboardInterrupt:
        return 128 + 2
    except OutputFailed as exc:
        return _output_failed(exc)


def _main(argv: list[str]) -> int:
    parsed = parse_args(argv)
    if parsed.show_help:
        from .usage import help_text

        _out(help_text())
        return _rc.ES_OK
    if parsed.show_version or parsed.show_signal_list:
        from .usage import signal_list_text, version_text

        if parsed.show_version:
            _out(version_text())
        if parsed.show_signal_list:
            _write(sys.stdout, signal_list_text())
        return _rc.ES_OK
    if parsed.show_unique_id:
        from .uniqueid import NoUniqueId, read_unique_id

        try:
            _out(read_unique_id())
        except NoUniqueId as exc:
            _err(f"flom: {exc}")
            return _rc.ES_GENERIC_ERROR
        return _rc.ES_OK
    settings, warnings = load_settings(parsed)
    for warning in warnings:
        _err(warning)
    if settings.command_trace_file or os.environ.get("FLOM_TRACE_MASK"):
        from . import trace

        trace.configure(settings.command_trace_file, settings.append_trace_file)
    if settings.verbose:
        from .usage import verbose_dump

        _write(sys.stdout, verbose_dump(settings))
    settings, warnings = validate(settings)
    for warning in warnings:
        _err(warning)
    if parsed.debug_feature is not None:
        from .debugfeatures import run

        return run(parsed.debug_feature, settings)
    if parsed.quiesce_exit or parsed.immediate_exit:
        return shutdown_daemon(settings, immediate=parsed.immediate_exit)
    if parsed.status_format is not None:
        resource = parsed.options.get("resource-name")
        return show_status(settings, parsed.status_format, resource)  # type: ignore[arg-type]
    if not parsed.command:
        _err("No command to execute!")
        return _rc.ES_UNABLE_TO_EXECUTE_COMMAND
    return lock_and_run(settings, parsed.command, daemon_only_options(parsed, settings))


if __name__ == "__main__":
    sys.exit(main())
