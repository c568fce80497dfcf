"""FLoM-compatible command line: option parsing, configuration files, validation.

Steps 1, 4, 6 and 7 of FLoM's order of processing (reference 1.3): :func:`parse_args`
reads the arguments, :func:`load_settings` layers built-in defaults, the system file(s),
``~/.flom``, the ``-c`` file and the command line, :func:`pyflom.usage.verbose_dump` prints
the ``-V`` dump and :func:`validate` checks and completes the result.  Errors raise
:class:`CliError` carrying FLoM's exit status and texts.  The options and their settings
are the table of :mod:`pyflom.options`, the rules their values follow are
:mod:`pyflom.valuerules` (shared with :mod:`pyflom.configfile`, which does not import this
module); :func:`configured_settings` gives the settings before the command line (what the
library's handles start from).

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
from .lockmodes import parse_lock_mode
from .names import RESERVED_NAME, ResourceType, name_rule, resource_type, uses_lock_mode
from .options import (
    BACKEND,
    BOOLEAN,
    BY_LONG,
    BY_SHORT,
    COMMAND_LINE_ORDER,
    DAEMON_ONLY_ORDER,
    DIRECTORY,
    EXISTING_FILE,
    FLAG,
    HOST_PORT,
    INT,
    KEY_PREFIX,
    LIST,
    OPT,
    OPTIONS,
    RESOURCE_NAME,
    SOCKET_NAME,
    Option,
)
from .record import Record
from .settings import Settings, default_socket_name
from .valuerules import (
    IGNORED,
    INT_MAX,
    INT_MIN,
    Refused,
    c_int,
    int_value,
    parse_signals,
    string_value,
)
from .valuerules import (
    SIGNAL_NAMES as SIGNAL_NAMES,  # re-exported: pyflom.cmdline.SIGNAL_NAMES
)
from .valuerules import (
    CliError as CliError,  # re-exported: pyflom.cmdline.CliError
)

SYSTEM_CONFIG_FILES = ("/etc/flom.conf", "/usr/local/etc/flom.conf")
"""System-wide configuration files, loaded in this order before ``~/.flom``."""

USER_CONFIG_FILE = ".flom"
"""Name of the user's configuration file, in the home directory."""

_GENERIC = _rc.ES_GENERIC_ERROR


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


def _refused(name: str, value: str, valid: str, on_stdout: bool = False) -> CliError:
    """FLoM's ``NAME: 'VALUE' is an invalid value``, then which values are valid."""
    message = _invalid_value(name, value)
    return CliError(
        _GENERIC,
        stdout=message if on_stdout else "",
        stderr="" if on_stdout else message,
        explanation=f"flom: --{name}: valid values are {valid}",
    )


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
    if option.kind == FLAG:  # -V
        return True if raw else IGNORED
    if option.kind == LIST:
        return parse_signals([str(item) for item in raw]) if isinstance(raw, list) else IGNORED
    if option.kind == INT:
        if not isinstance(raw, int) or isinstance(raw, bool):
            return IGNORED
        return int_value(option.rule, raw, True, warnings)
    if not isinstance(raw, str):
        return IGNORED
    try:
        return string_value(option.rule, raw, True)
    except Refused as refusal:
        raise _command_line_refusal(option, raw, refusal) from None


def _command_line_refusal(option: Option, raw: str, refusal: Refused) -> CliError:
    """FLoM's texts (and exit status) for a command line value its rule refused."""
    name, rule = option.long, option.rule
    if rule == RESOURCE_NAME:
        return CliError(
            _GENERIC,
            stdout=refusal.flom_line,
            stderr=f"flom_config_set_resource_name: ret_cod={_rc.INVALID_RESOURCE_NAME}",
            explanation="" if raw == RESERVED_NAME else f"flom: -r: {name_rule(raw)}",
        )
    if rule in (SOCKET_NAME, DIRECTORY):
        failure = _rc.BUFFER_OVERFLOW if rule == SOCKET_NAME else _rc.SYSCALL_ERRORS["opendir"]
        return CliError(
            _GENERIC,
            stderr=_invalid_value(name, raw)
            + f"\nflom_client_connect: ret_cod={failure} ({_rc.strerror(failure)})",
        )
    if rule == EXISTING_FILE:
        return CliError(_GENERIC, stderr=f"{name}: '{raw}' is not a valid value")
    if rule in (BACKEND, KEY_PREFIX, HOST_PORT):
        return CliError(
            _GENERIC, stderr=_invalid_value(name, raw), explanation=f"flom: {refusal.reason}"
        )
    return _refused(name, raw, refusal.valid, on_stdout=rule == BOOLEAN)


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


# What each kind of resource without lock modes gives its holders, for the -l note.
_KIND_GIVES = {
    ResourceType.NUMERIC: "its holders share the N units of NAME[N], -q at a time",
    ResourceType.SET: "each holder gets one of its dot-separated elements",
    ResourceType.SEQUENCE: "each holder gets the next number",
    ResourceType.TIMESTAMP: "each holder gets a timestamp of its own",
}


def ignored_lock_mode(parsed: ParsedArgs, settings: Settings) -> str | None:
    """The stderr line for a ``-l`` given on the command line for a resource kind where
    lock modes do not apply (FLoM ignores the mode silently), else None.  Not when ``-V``
    printed FLoM's own warning about it already."""
    mode = parsed.options.get("lock-mode")
    if not isinstance(mode, str):
        return None
    name = settings.resource_name
    kind = resource_type(name) or ResourceType.SIMPLE
    warned = settings.verbose and parse_lock_mode(mode) != Settings.lock_mode  # by validate
    if uses_lock_mode(kind) or warned:
        return None
    hint = " (for a simple lock, give a name without dots)" if kind == ResourceType.SET else ""
    return (
        f"flom: -l {mode} is ignored: '{name}' is a {kind} resource ({_KIND_GIVES[kind]}); "
        f"lock modes apply to simple and hierarchical resources only{hint}"
    )
