"""FLoM-compatible command line: option parsing, configuration files, validation.

Steps 1, 4, 6 and 7 of FLoM's order of processing (reference 1.3): :func:`parse_args`
reads the arguments, :func:`load_settings` layers built-in defaults, the system file(s),
``~/.flom``, the ``-c`` file and the command line, :func:`pyflom.usage.verbose_dump` prints
the ``-V`` dump and :func:`validate` checks and completes the result.  Errors raise
:class:`CliError` carrying FLoM's exit status and texts.  The options, their settings and
value rules are the table of :mod:`pyflom.options`; :func:`configured_settings` gives the
settings before the command line (what the library's handles start from).

This module is imported by every ``flom`` run: no ``argparse``, ``re``, ``configparser``,
``dataclasses``, ``asyncio`` or ``ssl`` is imported here.

Parsing follows GLib GOption: ``-xVALUE``, ``-x VALUE``, ``--name=VALUE``, ``--name VALUE``;
an option that takes a value always consumes the next word, even ``--``
(``--tls-check-peer-id -- ls`` takes ``--`` as its value); ``--`` ends the options; every
other word is collected as the command, and options *after* the command word are still
parsed unless ``--`` came first (quirk Q20, kept for compatibility).  Unlike FLoM,
non-ASCII arguments are accepted.

Product decisions (reference section 10):

* Q5 fixed: an option present on the command line always wins over the configuration
  files, even when it equals the built-in default (``-d 5000`` overrides a config
  ``Lifespan=1000``; ``-i 0`` resets a configured idle lifespan).
* Q6 fixed: a configuration file lacking a group (``[Resource]``, ``[Daemon]``,
  ``[Network]``, ...) is fine.
* Q7 fixed: lock modes are exact short or long names (case-insensitive); booleans are
  exact words, case-insensitive: ``yes y true on 1`` / ``no n false off 0``.  Anything
  else is refused with FLoM's message (``-e maybe`` fails instead of meaning yes).
* Q8 kept: a negative ``-q`` is refused with a warning, a negative config ``Quantity`` is
  made positive, a quantity of 0 is ignored; ``-i``/``IdleLifespan``, ports, discovery
  timeout and keepalive values are made positive; discovery attempts and TTL are made
  positive and 0 becomes 1; timeouts and daemon lifespans are kept as given.  (A config
  ``IdleLifespan=0`` is ignored like FLoM's, a command line ``-i 0`` applies.)
* Command line integers are decimal C ``int`` values (GLib would also take ``0x10``).
* Configuration files use a small GKeyFile reader (not :mod:`configparser`, which would
  treat indented lines as continuations, ignore GKeyFile escapes such as ``\\s`` and cost
  an import of ``re``): ``[Group]``, ``Key=Value``, ``#`` comments, case-sensitive keys,
  ``;``-separated lists, last duplicate wins.  Leading and trailing blanks of a value are
  dropped (keep one with ``\\s``).
* Diagnostics (FLoM's texts and exit statuses kept, pyflom's ``flom: ...`` lines added on
  stderr, :attr:`CliError.explanation`): unknown groups and keys are still ignored, but
  with a warning naming file, line and a close known name; a system or user file that is
  not a key file is skipped with a warning (FLoM: silently); a refused value names file,
  line, key and value; a ``-c`` file that cannot be read says why; a refused lock mode,
  boolean, grant or lock-loss policy lists the valid words.
* Options that only configure a daemon this command starts
  (:data:`pyflom.options.DAEMON_ONLY_ORDER`) are reported by
  :func:`pyflom.cli.report_ignored_daemon_options` when the daemon was already running
  (FLoM ignores them silently).
* System files are :data:`SYSTEM_CONFIG_FILES`, loaded in that order.
* ``--ignore-signal`` and ``[Monitor]/IgnoredSignals`` replace, not extend, what an
  earlier layer set.
* An invalid config ``Name`` prints FLoM's resource name error line before the
  ``invalid configuration`` line; a config TLS file that does not exist reports
  ``flom_config_init: ret_cod=-125`` (realpath failure) instead of ``-5``.
* ``-n``/``NetworkInterface`` is stored as given (interfaces are looked up when used).
* Extension: ``--grant-policy=flom|fifo`` / ``[Daemon]/GrantPolicy`` selects how a daemon
  started by this command orders its grants (dumped after FLoM's lines by ``-V``).
* Extension: ``--lock-loss=terminate|keep`` / ``[Monitor]/LockLoss`` and
  ``--lock-loss-grace=MS`` / ``[Monitor]/LockLossGrace`` say what happens to the command
  when its lock is lost while it runs (see :mod:`pyflom.monitor`).
* Extension: ``--state-file=FILE`` / ``[Daemon]/StateFile`` gives a daemon started by
  this command a state file (stored as an absolute path, relative to the current
  directory; an empty value means none).
"""

from __future__ import annotations

import os

from . import rc as _rc
from .lockmodes import lock_mode_choices, parse_lock_mode
from .names import (
    RESERVED_NAME,
    ResourceType,
    invalid_name_reason,
    name_rule,
    resource_type,
    uses_lock_mode,
)
from .options import (
    ABSOLUTE_ON_COMMAND_LINE,
    BACKEND,
    BOOLEAN,
    BOOLEAN_STDERR,
    BY_LONG,
    BY_SHORT,
    COMMAND_LINE_ORDER,
    DAEMON_ONLY_ORDER,
    DIRECTORY,
    EXISTING_FILE,
    FLAG,
    GRANT_POLICY,
    IDLE_LIFESPAN,
    INT,
    KEY_PREFIX,
    LIST,
    LOCK_LOSS,
    LOCK_MODE,
    OPT,
    OPTIONS,
    POSITIVE,
    POSITIVE_NOT_0,
    QUANTITY,
    RESOURCE_NAME,
    SOCKET_NAME,
    STATE_FILE,
    Option,
)
from .record import Record
from .settings import UNIX_PATH_MAX, GrantPolicy, LockLoss, Settings, default_socket_name

SYSTEM_CONFIG_FILES = ("/etc/flom.conf", "/usr/local/etc/flom.conf")
"""System-wide configuration files, loaded in this order before ``~/.flom``."""

USER_CONFIG_FILE = ".flom"
"""Name of the user's configuration file, in the home directory."""

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
_GENERIC = _rc.ES_GENERIC_ERROR


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


# --------------------------------------------------------------------------------------
# Step 1: option parsing (GOption semantics)

STATUS_FORMATS = ("table", "json")
_HELP_SHORT = "h?"
_HELP_LONG = ("help", "help-all")
# (short, long, kind, value placeholder, help text) of each option of pyflom.options, in
# help order: a view kept for tests/test_packaging.py (the code reads pyflom.options).
_OPTIONS: tuple[tuple[str, str, int, str, str], ...] = tuple(
    (o.short, o.long, o.kind, o.placeholder, o.help) for o in OPTIONS
)


class ParsedArgs(Record):
    """Result of step 1: the options present, the command and the action flags.

    ``options`` maps canonical long names to the values given (``int`` for integer
    options, a list for ``ignore-signal``, ``True`` for ``verbose``), including
    ``config-file``; action flags have their own attributes.  A :class:`Record`, not a
    dataclass: :mod:`dataclasses` would cost more than the whole parse.
    """

    __slots__ = (
        "command",
        "config_keys",
        "debug_feature",
        "immediate_exit",
        "options",
        "quiesce_exit",
        "show_help",
        "show_signal_list",
        "show_unique_id",
        "show_version",
        "status_format",
    )

    def __init__(
        self,
        options: dict[str, object] | None = None,
        command: list[str] | None = None,
        show_version: bool = False,
        show_signal_list: bool = False,
        show_unique_id: bool = False,
        show_help: bool = False,
        quiesce_exit: bool = False,
        immediate_exit: bool = False,
        debug_feature: str | None = None,
        status_format: str | None = None,
    ) -> None:
        self.options: dict[str, object] = {} if options is None else options
        self.command: list[str] = [] if command is None else command
        self.show_version = show_version
        self.show_signal_list = show_signal_list
        self.show_unique_id = show_unique_id
        self.show_help = show_help
        self.quiesce_exit = quiesce_exit
        self.immediate_exit = immediate_exit
        self.debug_feature = debug_feature
        self.status_format = status_format
        # Filled by load_settings: (group, key) -> "FILE:LINE" of the file that set it last.
        self.config_keys: dict[tuple[str, str], str] = {}

    __hash__ = None  # type: ignore[assignment]  # mutable


def _parse_failure(message: str) -> CliError:
    return CliError(_GENERIC, stderr=f"option parsing failed: {message}")


def c_int(text: str) -> int | None:
    """``text`` as a decimal number (C ``strtol`` syntax, nothing after), else None."""
    body = text.lstrip(BLANKS)
    digits = body[1:] if body[:1] in ("+", "-") else body
    if not digits or not (digits.isascii() and digits.isdigit()):
        return None
    return int(body)


def _store(parsed: ParsedArgs, option: Option, shown: str, value: str) -> None:
    long, kind = option.long, option.kind
    if kind == FLAG:
        if option.target:
            setattr(parsed, option.target, True)
        else:
            parsed.options[long] = True
    elif kind == INT:
        number = c_int(value)
        if number is None:
            raise _parse_failure(f"Cannot parse integer value \u201c{value}\u201d for {shown}")
        if not INT_MIN <= number <= INT_MAX:
            raise _parse_failure(f"Integer value \u201c{value}\u201d for {shown} out of range")
        parsed.options[long] = number
    elif kind == LIST:
        items = parsed.options.setdefault(long, [])
        assert isinstance(items, list)
        items.append(value)
    elif kind == OPT:  # --status
        if value not in STATUS_FORMATS:
            raise _parse_failure(
                f"--status={value}: expected --status, --status=table or --status=json"
            )
        setattr(parsed, option.target, value)
    elif option.target:
        setattr(parsed, option.target, value)
    else:
        parsed.options[long] = value


def parse_args(argv: list[str]) -> ParsedArgs:
    """Step 1: parse ``argv`` (without the program name) the way GLib GOption does.

    Raises :class:`CliError` (status 99, ``option parsing failed: ...`` on stderr) for an
    unknown option, a missing value or a bad integer.  ``-h``/``--help``/``--help-all``
    stop parsing and set ``show_help``.
    """
    parsed = ParsedArgs()
    index, count = 0, len(argv)
    while index < count:
        arg = argv[index]
        index += 1
        if arg == "--":
            parsed.command.extend(argv[index:])
            break
        if arg.startswith("--"):
            name, equal, value = arg[2:].partition("=")
            if not equal and name in _HELP_LONG:
                parsed.show_help = True
                return parsed
            entry = BY_LONG.get(name)
            if entry is None or (equal and entry.kind == FLAG):
                raise _parse_failure(f"Unknown option {arg}")
            if entry.kind == OPT and not equal:
                value = entry.placeholder.split("|")[0]  # the first documented value
            elif entry.kind != FLAG and not equal:
                if index >= count:
                    raise _parse_failure(f"Missing argument for --{name}")
                value = argv[index]
                index += 1
            _store(parsed, entry, f"--{name}", value)
        elif arg.startswith("-") and len(arg) > 1:
            position = 1
            while position < len(arg):
                letter = arg[position]
                position += 1
                if letter in _HELP_SHORT:
                    parsed.show_help = True
                    return parsed
                entry = BY_SHORT.get(letter)
                if entry is None:
                    raise _parse_failure(f"Unknown option {arg}")
                if entry.kind == FLAG:
                    _store(parsed, entry, f"-{letter}", "")
                    continue
                if position < len(arg):  # -xVALUE
                    value = arg[position:]
                elif index < count:  # -x VALUE
                    value = argv[index]
                    index += 1
                else:
                    raise _parse_failure(f"Missing argument for -{letter}")
                _store(parsed, entry, f"-{letter}", value)
                break
        else:
            parsed.command.append(arg)
    return parsed


# --------------------------------------------------------------------------------------
# Value rules shared by the command line and the configuration files


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


def _home_dir() -> str | None:
    home = os.environ.get("HOME")
    if home:
        return home
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_dir
    except (ImportError, KeyError):
        return None


# --------------------------------------------------------------------------------------
# Step 4: configuration layers


def _invalid_value(name: str, value: str) -> str:
    return f"{name}: '{value}' is an invalid value"


def choices_text(words: tuple[str, ...]) -> str:
    """``is not one of a, b or c``: why a word out of ``words`` was refused."""
    return f"is not {', '.join(words[:-1])} or {words[-1]}"


def _refused(name: str, value: str, valid: str, on_stdout: bool = False) -> CliError:
    """FLoM's ``NAME: 'VALUE' is an invalid value``, then which values are valid."""
    message = _invalid_value(name, value)
    return CliError(
        _GENERIC,
        stdout=message if on_stdout else "",
        stderr="" if on_stdout else message,
        explanation=f"flom: --{name}: valid values are {valid}",
    )


IGNORED = object()
"""What a value rule returns for a value that leaves the setting as it was."""


def _apply_options(s: Settings, options: dict[str, object], warnings: list[str]) -> None:
    """Apply the command line values in FLoM's order, validating each (reference 1.3)."""
    for option in COMMAND_LINE_ORDER:
        if option.long in options:
            value = _command_line_value(option, options[option.long], warnings)
            if value is not IGNORED:
                setattr(s, option.field, value)


def _command_line_value(option: Option, raw: object, warnings: list[str]) -> object:
    """The setting ``raw`` (a command line value of ``option``) gives, by the option's
    rule; :data:`IGNORED` leaves the setting as it was.  Raises :class:`CliError`."""
    name, rule = option.long, option.rule
    if option.kind == FLAG:  # -V
        return True if raw else IGNORED
    if option.kind == LIST:
        return parse_signals([str(item) for item in raw]) if isinstance(raw, list) else IGNORED
    if option.kind == INT:
        if not isinstance(raw, int) or isinstance(raw, bool):
            return IGNORED
        if rule == QUANTITY:
            if raw < 0:
                warnings.append(
                    f"Resource quantity ignored because negative values ({raw}) are meaningless"
                )
            return raw if raw > 0 else IGNORED
        if rule in (POSITIVE, IDLE_LIFESPAN):
            return abs(raw)
        if rule == POSITIVE_NOT_0:
            return abs(raw) or 1
        return raw
    if not isinstance(raw, str):
        return IGNORED
    if rule in (BOOLEAN, BOOLEAN_STDERR):
        flag = parse_bool(raw)
        if flag is None:
            raise _refused(name, raw, BOOLEAN_WORDS, on_stdout=rule == BOOLEAN)
        return flag
    if rule == RESOURCE_NAME:
        error = resource_name_error(raw)
        if error is not None:
            raise CliError(
                _GENERIC,
                stdout=error,
                stderr=f"flom_config_set_resource_name: ret_cod={_rc.INVALID_RESOURCE_NAME}",
                explanation="" if raw == RESERVED_NAME else f"flom: -r: {name_rule(raw)}",
            )
    elif rule == LOCK_MODE:
        try:
            return parse_lock_mode(raw)
        except ValueError:
            raise _refused(name, raw, lock_mode_choices()) from None
    elif rule == SOCKET_NAME:
        if not socket_name_ok(raw):
            raise CliError(
                _GENERIC,
                stderr=_invalid_value(name, raw)
                + f"\nflom_client_connect: ret_cod={_rc.BUFFER_OVERFLOW} "
                f"({_rc.strerror(_rc.BUFFER_OVERFLOW)})",
            )
    elif rule == DIRECTORY:
        if not openable_dir(raw):
            opendir_error = _rc.SYSCALL_ERRORS["opendir"]
            raise CliError(
                _GENERIC,
                stderr=_invalid_value(name, raw)
                + f"\nflom_client_connect: ret_cod={opendir_error} "
                f"({_rc.strerror(opendir_error)})",
            )
    elif rule == EXISTING_FILE:
        path = real_file(raw)
        if path is None:
            raise CliError(_GENERIC, stderr=f"{name}: '{raw}' is not a valid value")
        return path
    elif rule == GRANT_POLICY:
        policy = parse_grant_policy(raw)
        if policy is None:
            raise _refused(name, raw, " or ".join(GrantPolicy.ALL))
        return policy
    elif rule == LOCK_LOSS:
        loss = lock_loss_policy(raw)
        if loss is None:
            raise _refused(name, raw, " or ".join(LockLoss.ALL))
        return loss
    elif rule == ABSOLUTE_ON_COMMAND_LINE:
        return os.path.abspath(raw)
    elif rule == STATE_FILE:
        return state_file_path(raw)
    elif rule in (BACKEND, KEY_PREFIX):
        try:
            return etcd_value(rule, raw)
        except ValueError as exc:
            raise CliError(
                _GENERIC, stderr=_invalid_value(name, raw), explanation=f"flom: {exc}"
            ) from None
    return raw


def _with_warnings(error: CliError, warnings: list[str]) -> CliError:
    """Keep the warnings printed before an error (FLoM prints them as it goes)."""
    if warnings:
        error.stderr = "\n".join([*warnings, error.stderr] if error.stderr else warnings)
    return error


def _load_file(
    settings: Settings,
    path: str,
    required: bool,
    config_keys: dict[tuple[str, str], str],
    warnings: list[str],
) -> None:
    """Apply one configuration file; the reader is imported only when a file exists.
    Its warnings go to ``warnings``, the place of each key it set to ``config_keys``."""
    if required or os.path.exists(path):
        from .configfile import load_file

        try:
            file_warnings, lines = load_file(settings, path, required)
        except CliError as exc:
            raise _with_warnings(exc, warnings) from None
        warnings.extend(file_warnings)
        for place, line in lines.items():
            config_keys[place] = f"{path}:{line}"


def configured_settings(
    config_file: str | None = None,
    *,
    system_files: tuple[str, ...] = SYSTEM_CONFIG_FILES,
    home: str | None = None,
    config_keys: dict[tuple[str, str], str] | None = None,
) -> tuple[Settings, list[str]]:
    """The built-in defaults, then ``system_files``, ``~/.flom`` and ``config_file`` (which
    must exist): the settings before the command line, as libflom's handles get them.

    ``home`` replaces the home directory (default ``$HOME``, else the passwd entry);
    ``config_keys`` receives the ``FILE:LINE`` of each key set.  Returns the settings and
    the warnings to print on stderr; raises :class:`CliError`.
    """
    settings = Settings()
    warnings: list[str] = []
    places: dict[tuple[str, str], str] = {} if config_keys is None else config_keys
    for path in system_files:
        _load_file(settings, path, False, places, warnings)
    user_home = _home_dir() if home is None else home
    if user_home:
        _load_file(settings, os.path.join(user_home, USER_CONFIG_FILE), False, places, warnings)
    if config_file is not None:
        _load_file(settings, config_file, True, places, warnings)
    return settings, warnings


def load_settings(
    parsed: ParsedArgs,
    *,
    system_files: tuple[str, ...] = SYSTEM_CONFIG_FILES,
    home: str | None = None,
) -> tuple[Settings, list[str]]:
    """Step 4: defaults, then ``system_files``, ``~/.flom``, the ``-c`` file, the options.

    ``home`` replaces the home directory (default ``$HOME``, else the passwd entry).
    Returns the settings and the warnings to print on stderr; raises :class:`CliError`.
    """
    config_file = parsed.options.get("config-file")
    settings, warnings = configured_settings(
        config_file if isinstance(config_file, str) else None,
        system_files=system_files,
        home=home,
        config_keys=parsed.config_keys,
    )
    try:
        _apply_options(settings, parsed.options, warnings)
    except CliError as exc:
        raise _with_warnings(exc, warnings) from None
    return settings, warnings


class DaemonOption(Record):
    """A daemon-only setting the user gave: how to name it, the daemon's option for it,
    and whether it came from the command line (else from a configuration file)."""

    __slots__ = ("daemon_flag", "label", "on_command_line")

    def __init__(self, label: str, daemon_flag: str, on_command_line: bool) -> None:
        self.label = label
        self.daemon_flag = daemon_flag
        self.on_command_line = on_command_line


def daemon_only_options(parsed: ParsedArgs, settings: Settings) -> list[DaemonOption]:
    """The daemon-only settings (:data:`pyflom.options.DAEMON_ONLY_ORDER`) given on the
    command line or in a configuration file, built-in defaults aside: what a daemon already running
    ignores.  ``-d 0`` is left out (it means "start none", which holds)."""
    given = []
    for option in DAEMON_ONLY_ORDER:
        setting, long, group, key = option.field, option.long, option.group, option.key
        flag = option.daemon.flag if option.daemon is not None else ""
        if setting == "daemon_lifespan" and settings.daemon_lifespan == 0:
            continue
        if setting.startswith("multicast_") and not (
            settings.unicast_address and settings.multicast_address
        ):
            continue
        if long in parsed.options:
            short = option.short
            given.append(DaemonOption(f"-{short}" if short else f"--{long}", flag, True))
        elif (place := parsed.config_keys.get((group, key))) is not None:
            given.append(DaemonOption(f"[{group}]/{key} ({place})", flag, False))
    return given


# --------------------------------------------------------------------------------------
# Step 7: validation


_NOT_VALID = "Configuration is not valid, cannot go on!"


def validate(settings: Settings) -> tuple[Settings, list[str]]:
    """Step 7: check and complete ``settings`` (a new object is returned).

    Refuses a UNIX socket together with a network address and peer-id checking without
    the three TLS files (:class:`CliError`); fills in the default socket name; forces the
    lock mode to EX and the quantity to 1 where the resource type has no use for them
    (with a warning, returned for stderr, only when verbose).
    """
    s = settings.copy()
    if s.socket_name and (s.unicast_address or s.multicast_address):
        raise CliError(
            _GENERIC,
            stdout="ERROR: flom can not be configured for local (UNIX socket) and network "
            "(TCP-UDP/IP) communication at the same time.",
            stderr=_NOT_VALID,
        )
    if not (s.socket_name or s.unicast_address or s.multicast_address):
        s.socket_name = default_socket_name()
    warnings: list[str] = []
    kind = resource_type(s.resource_name) or ResourceType.SIMPLE
    if not uses_lock_mode(kind) and s.lock_mode != Settings.lock_mode:
        if s.verbose:
            warnings.append(
                f"WARNING: lock mode {s.lock_mode.name} is meaningless for {kind} "
                f"resource '{s.resource_name}': exclusive mode (EX) used"
            )
        s.lock_mode = Settings.lock_mode
    if kind != ResourceType.NUMERIC and s.resource_quantity != 1:
        if s.verbose:
            warnings.append(
                f"WARNING: quantity {s.resource_quantity} is meaningless for {kind} "
                f"resource '{s.resource_name}': quantity 1 used"
            )
        s.resource_quantity = 1
    if s.tls_check_peer_id and not (
        s.tls_certificate and s.tls_private_key and s.tls_ca_certificate
    ):
        raise _with_warnings(
            CliError(
                _GENERIC,
                stdout="ERROR: TLS check peer id can not be specified without full TLS "
                "configuration.",
                stderr=_NOT_VALID,
            ),
            warnings,
        )
    return s, warnings
