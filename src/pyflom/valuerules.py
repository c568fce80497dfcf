"""The value rules of ``flom``'s settings: how a command line or configuration value is
read, checked and stored (the ``rule`` of each :class:`pyflom.options.Option`).

One home for both sources: :mod:`pyflom.cmdline` (``-x VALUE``) and
:mod:`pyflom.configfile` (``Key=VALUE``) apply :func:`int_value` and :func:`string_value`
and only word a refusal (:class:`Refused`) each in its own way: FLoM's texts for the
command line, ``FILE:LINE: [Group] Key='value' ...`` for a file.  Where the two sources
differ by design (quirk Q8, absolute paths), the rule says so with ``on_command_line``.
A new rule is a constant in :mod:`pyflom.options`, a branch here and, when it can
refuse, its wording in the two front ends.

Imported by every ``flom`` run: ``os`` and pyflom's light modules only.
"""

from __future__ import annotations

import os

from . import rc as _rc
from .lockmodes import lock_mode_choices, parse_lock_mode
from .names import RESERVED_NAME, invalid_name_reason, resource_type
from .options import (
    ABSOLUTE_ON_COMMAND_LINE,
    BACKEND,
    BOOLEAN,
    BOOLEAN_STDERR,
    DIRECTORY,
    EXISTING_FILE,
    GRANT_POLICY,
    HOST_PORT,
    IDLE_LIFESPAN,
    KEY_PREFIX,
    LOCK_LOSS,
    LOCK_MODE,
    POSITIVE,
    POSITIVE_NOT_0,
    QUANTITY,
    RESOURCE_NAME,
    SOCKET_NAME,
    STATE_FILE,
)
from .settings import UNIX_PATH_MAX, GrantPolicy, LockLoss

_SIGNAL_TABLE = (
    "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE",
    "SIGKILL", "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT",
    "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU",
    "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS",
)  # fmt: skip
SIGNAL_NAMES: dict[int, str] = dict(enumerate(_SIGNAL_TABLE, start=1))
"""FLoM's signal table (``--signal-list``): number -> name, 1..31."""

_SIGNAL_NUMBERS = {name: number for number, name in SIGNAL_NAMES.items()}

INT_MIN = -(2**31)
"""The smallest C ``int``."""
INT_MAX = 2**31 - 1
"""The largest C ``int``."""
BLANKS = " \t\n\r\f\v"
"""The blanks of C ``isspace``."""
_TRUE_WORDS = ("yes", "y", "true", "on", "1")
_FALSE_WORDS = ("no", "n", "false", "off", "0")
BOOLEAN_WORDS = f"{', '.join(_TRUE_WORDS)} or {', '.join(_FALSE_WORDS)} (any case)"
"""The words :func:`parse_bool` takes, for messages."""
NOT_A_DIRECTORY = "is not a directory that can be opened"
SOCKET_NAME_TOO_LONG = f"is too long: a socket name must be shorter than {UNIX_PATH_MAX} bytes"

IGNORED = object()
"""What a value rule returns for a value that leaves the setting as it was."""


class CliError(Exception):
    """A command line or configuration error: exit with ``status`` after printing ``stdout``
    and ``stderr`` (FLoM's texts, each verbatim plus a newline, when not empty), then
    ``explanation`` on stderr (pyflom's own ``flom: ...`` lines, added after FLoM's)."""

    def __init__(
        self, status: int, stdout: str = "", stderr: str = "", explanation: str = ""
    ) -> None:
        super().__init__(stderr or stdout)
        self.status = status
        self.stdout = stdout
        self.stderr = stderr
        self.explanation = explanation


class Refused(ValueError):
    """A value its rule refuses.  ``why`` completes ``Key='value' ...`` (``is not a
    boolean: ...``); ``valid``: the valid words, when a list says it; ``flom_line``:
    FLoM's own error line (a resource name); ``reason``: the checker's words (etcd);
    ``rc``: the reason code a configuration file reports, when not ``INVALID_OPTION``."""

    def __init__(
        self,
        why: str,
        valid: str = "",
        flom_line: str = "",
        reason: str = "",
        rc: int = _rc.INVALID_OPTION,
    ) -> None:
        super().__init__(why)
        self.why = why
        self.valid = valid
        self.flom_line = flom_line
        self.reason = reason
        self.rc = rc


def c_int(text: str) -> int | None:
    """``text`` as a decimal number (C ``strtol`` syntax, nothing after), else None."""
    body = text.lstrip(BLANKS)
    digits = body[1:] if body[:1] in ("+", "-") else body
    if not digits or not (digits.isascii() and digits.isdigit()):
        return None
    return int(body)


def parse_bool(text: str) -> bool | None:
    """``yes y true on 1`` -> True, ``no n false off 0`` -> False (case-insensitive),
    anything else None."""
    word = text.strip(BLANKS).lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    return None


def parse_signals(items: list[str]) -> list[int]:
    """Signal numbers (1..31) or exact names from :data:`SIGNAL_NAMES`, sorted and
    deduplicated; unknown items are dropped silently, as FLoM does."""
    numbers: set[int] = set()
    for item in items:
        word = item.strip(BLANKS)
        if word.isascii() and word.isdigit():
            if 1 <= int(word) <= len(SIGNAL_NAMES):
                numbers.add(int(word))
        elif word in _SIGNAL_NUMBERS:
            numbers.add(_SIGNAL_NUMBERS[word])
    return sorted(numbers)


def resource_name_error(name: str) -> str | None:
    """FLoM's error line for a resource name the user may not lock, else None."""
    if name == RESERVED_NAME:
        return f"ERROR: '{RESERVED_NAME}' is a reserved resource name and can not be set by user"
    if resource_type(name) is None:
        return f"ERROR: {invalid_name_reason(name, rule=False)}"
    return None


def socket_name_ok(name: str) -> bool:
    """Does ``name`` fit in a ``sockaddr_un``?"""
    return len(os.fsencode(name)) < UNIX_PATH_MAX


def openable_dir(path: str) -> bool:
    """Is ``path`` a directory that can be opened (or a dead status mount)?"""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except ValueError:
        return False
    except OSError as exc:
        # The status file system a killed daemon left: the next daemon unmounts it.
        from .mounts import dead_status_mount

        return dead_status_mount(path, exc)
    os.close(fd)
    return True


def real_file(path: str) -> str | None:
    """The real path of the existing file ``path``, else None."""
    if not path:
        return None
    try:
        return os.path.realpath(path, strict=True)
    except (OSError, ValueError):
        return None


def etcd_value(rule: str, text: str) -> str | None:
    """A ``--backend`` (``[Daemon]/Backend``) or etcd key prefix value as stored; raises
    ValueError saying what to write."""
    from .etcd.config import backend_setting, key_prefix_setting  # only when given

    return backend_setting(text) if rule == BACKEND else key_prefix_setting(text)


def state_file_path(text: str) -> str | None:
    """A ``--state-file``/``StateFile`` value as stored: absolute, or None when empty."""
    return os.path.abspath(text) if text else None


def parse_grant_policy(text: str) -> str | None:
    """``flom`` or ``fifo`` (case-insensitive), else None."""
    word = text.strip(BLANKS).lower()
    return word if word in GrantPolicy.ALL else None


def lock_loss_policy(text: str) -> str | None:
    """``terminate`` or ``keep`` (case-insensitive), else None."""
    word = text.strip(BLANKS).lower()
    return word if word in LockLoss.ALL else None


def choices_text(words: tuple[str, ...]) -> str:
    """``is not one of a, b or c``: why a word out of ``words`` was refused."""
    return f"is not {', '.join(words[:-1])} or {words[-1]}"


def int_value(rule: str, number: int, on_command_line: bool, warnings: list[str]) -> object:
    """The setting an integer ``number`` gives by ``rule`` (quirk Q8: a command line
    quantity below 0 is refused with a warning added to ``warnings``, a configuration
    one made positive; a configuration idle lifespan of 0 is ignored); :data:`IGNORED`
    leaves the setting as it was."""
    if rule == QUANTITY:
        if on_command_line:
            if number < 0:
                warnings.append(
                    f"Resource quantity ignored because negative values ({number}) are meaningless"
                )
            return number if number > 0 else IGNORED
        return abs(number) or IGNORED
    if rule == IDLE_LIFESPAN:
        return abs(number) if on_command_line else abs(number) or IGNORED
    if rule == POSITIVE:
        return abs(number)
    if rule == POSITIVE_NOT_0:
        return abs(number) or 1
    return number


def string_value(rule: str, text: str, on_command_line: bool) -> object:
    """The setting a string ``text`` gives by ``rule``; raises :class:`Refused`."""
    if rule in (BOOLEAN, BOOLEAN_STDERR):
        flag = parse_bool(text)
        if flag is None:
            raise Refused(f"is not a boolean: {BOOLEAN_WORDS}", valid=BOOLEAN_WORDS)
        return flag
    if rule == RESOURCE_NAME:
        error = resource_name_error(text)
        if error is not None:
            raise Refused("is not a valid resource name", flom_line=error)
    elif rule == LOCK_MODE:
        try:
            return parse_lock_mode(text)
        except ValueError:
            choices = lock_mode_choices()
            raise Refused(f"is not a lock mode; the valid ones are {choices}", choices) from None
    elif rule == SOCKET_NAME:
        if not socket_name_ok(text):
            raise Refused(SOCKET_NAME_TOO_LONG)
    elif rule == DIRECTORY:
        if not openable_dir(text):
            raise Refused(NOT_A_DIRECTORY)
    elif rule in (GRANT_POLICY, LOCK_LOSS):
        words = GrantPolicy.ALL if rule == GRANT_POLICY else LockLoss.ALL
        word = parse_grant_policy(text) if rule == GRANT_POLICY else lock_loss_policy(text)
        if word is None:
            raise Refused(choices_text(words), valid=" or ".join(words))
        return word
    elif rule == STATE_FILE:
        return state_file_path(text)
    elif rule in (BACKEND, KEY_PREFIX):
        try:
            return etcd_value(rule, text)
        except ValueError as exc:
            raise Refused(f"is refused: {exc}", reason=str(exc)) from None
    elif rule == HOST_PORT:
        from .netaddr import parse_host_port

        try:
            parse_host_port(text, "--metrics / [Daemon]/MetricsAddress")
        except ValueError as exc:
            raise Refused(f"is refused: {exc}", reason=str(exc)) from None
    elif rule == EXISTING_FILE:
        path = real_file(text)
        if path is None:
            raise Refused("names no existing file", rc=_rc.SYSCALL_ERRORS["realpath"])
        return path
    elif rule == ABSOLUTE_ON_COMMAND_LINE and on_command_line:
        return os.path.abspath(text)
    return text  # as given (the TLS trace and key log files too: absolute only as -x)
