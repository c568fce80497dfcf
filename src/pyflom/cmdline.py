"""FLoM-compatible command line: option parsing, configuration files, validation.

Steps 1, 4, 6 and 7 of FLoM's order of processing (reference 1.3): :func:`parse_args`
reads the arguments, :func:`load_settings` layers built-in defaults, the system file(s),
``~/.flom``, the ``-c`` file and the command line, :func:`pyflom.usage.verbose_dump` prints
the ``-V`` dump and :func:`validate` checks and completes the result.  Errors raise
:class:`CliError` carrying FLoM's exit status and texts.

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
* Options that only configure a daemon this command starts (:data:`DAEMON_ONLY_OPTIONS`)
  are reported by :func:`pyflom.cli.report_ignored_daemon_options` when the daemon was
  already running (FLoM ignores them silently).
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
from .names import RESERVED_NAME, ResourceType, resource_type, uses_lock_mode
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

_INT_MIN = -(2**31)
_INT_MAX = 2**31 - 1
_BLANKS = " \t\n\r\f\v"
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

_NONE = 0  # flag
_STR = 1  # string value
_INT = 2  # C int value
_LIST = 3  # repeatable string value
_OPT = 4  # flag with an optional value, given only as --name=VALUE (pyflom extension)

# (short, long, kind, value placeholder, help text); order = help order.
_OPTIONS: tuple[tuple[str, str, int, str, str], ...] = (
    ("v", "version", _NONE, "", "Print version information and exit"),
    ("V", "verbose", _NONE, "", "Print the effective configuration and progress messages"),
    ("c", "config-file", _STR, "FILE", "Read FILE after the system and user config files"),
    ("r", "resource-name", _STR, "NAME", "Resource to lock (default: _RESOURCE)"),
    ("o", "resource-timeout", _INT, "MS", "Wait at most MS ms for the lock (0 no wait, <0 ever)"),
    ("q", "resource-quantity", _INT, "N", "Units to lock on a numeric resource (default: 1)"),
    ("e", "resource-create", _STR, "yes|no", "May this request create the resource"),
    ("i", "resource-idle-lifespan", _INT, "MS", "Keep the idle resource alive for MS ms"),
    ("l", "lock-mode", _STR, "MODE", "Lock mode: NL, CR, CW, PR, PW or EX (default: EX)"),
    ("s", "socket-name", _STR, "PATH", "UNIX socket of the daemon (default: /tmp/flom-USER)"),
    ("d", "daemon-lifespan", _INT, "MS", "Idle life of a started daemon (0 none, <0 forever)"),
    ("a", "unicast-address", _STR, "HOST", "Reach the daemon over TCP at HOST"),
    ("p", "unicast-port", _INT, "PORT", "TCP port of the daemon (default: 28015)"),
    ("A", "multicast-address", _STR, "GROUP", "Discover the daemon with UDP multicast GROUP"),
    ("P", "multicast-port", _INT, "PORT", "UDP port of the discovery (default: 28015)"),
    ("m", "mount-point-vfs", _STR, "DIR", "Mount the daemon's status file system on DIR"),
    ("n", "network-interface", _STR, "IFACE", "Network interface for IPv6 link-local peers"),
    ("D", "discovery-attempts", _INT, "N", "Multicast discovery queries (default: 2)"),
    ("I", "discovery-timeout", _INT, "MS", "Wait per discovery query (default: 500)"),
    ("", "discovery-ttl", _INT, "N", "Hop limit of discovery datagrams (default: 1)"),
    ("", "tcp-keepalive-time", _INT, "S", "Idle seconds before keepalive probes (default: 60)"),
    ("", "tcp-keepalive-intvl", _INT, "S", "Seconds between keepalive probes (default: 10)"),
    ("", "tcp-keepalive-probes", _INT, "N", "Unanswered probes before a drop (default: 6)"),
    ("", "tls-certificate", _STR, "FILE", "PEM certificate of this peer"),
    ("", "tls-private-key", _STR, "FILE", "PEM private key of this peer"),
    ("", "tls-ca-certificate", _STR, "FILE", "PEM certificate of the certification authority"),
    ("", "tls-check-peer-id", _STR, "yes|no", "Check the peer's unique id against its cert CN"),
    ("", "ignore-signal", _LIST, "SIGNAL", "Ignore SIGNAL while the command runs (repeatable)"),
    ("", "signal-list", _NONE, "", "Print the signals known to --ignore-signal and exit"),
    ("t", "daemon-trace-file", _STR, "FILE", "Trace file of a daemon started by this command"),
    ("T", "command-trace-file", _STR, "FILE", "Trace file of this command"),
    ("", "append-trace-file", _STR, "yes|no", "Append to trace files instead of truncating"),
    ("x", "quiesce-exit", _NONE, "", "Ask the daemon to exit when it becomes idle"),
    ("X", "immediate-exit", _NONE, "", "Ask the daemon to exit immediately"),
    ("", "unique-id", _NONE, "", "Print the unique id of this host and exit"),
    ("", "debug-feature", _STR, "NAME", "Run a diagnostic feature and exit"),
    ("", "grant-policy", _STR, "flom|fifo", "Grant order of a started daemon (default: flom)"),
    ("", "tls-trace", _STR, "FILE", "Append an annotated trace of the TLS records to FILE"),
    ("", "tls-keylog", _STR, "FILE", "Append TLS session keys to FILE (for Wireshark)"),
    ("", "state-file", _STR, "FILE", "Keep sequences and generations of a started daemon here"),
    ("", "lock-loss", _STR, "terminate|keep", "If the lock is lost: end the command (default)"),
    ("", "lock-loss-grace", _INT, "MS", "SIGKILL the command MS ms after SIGTERM (default 5000)"),
    ("", "status", _OPT, "table|json", "Show who holds and who waits (with -r: one resource)"),
)
_BY_LONG = {entry[1]: entry for entry in _OPTIONS}
STATUS_FORMATS = ("table", "json")
_BY_SHORT = {entry[0]: entry for entry in _OPTIONS if entry[0]}
_HELP_SHORT = "h?"
_HELP_LONG = ("help", "help-all")


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


def _c_int(text: str) -> int | None:
    """``text`` as a decimal number (C ``strtol`` syntax, nothing after), else None."""
    body = text.lstrip(_BLANKS)
    digits = body[1:] if body[:1] in ("+", "-") else body
    if not digits or not (digits.isascii() and digits.isdigit()):
        return None
    return int(body)


def _store(
    parsed: ParsedArgs, entry: tuple[str, str, int, str, str], shown: str, value: str
) -> None:
    long, kind = entry[1], entry[2]
    if kind == _NONE:
        if long == "version":
            parsed.show_version = True
        elif long == "signal-list":
            parsed.show_signal_list = True
        elif long == "unique-id":
            parsed.show_unique_id = True
        elif long == "quiesce-exit":
            parsed.quiesce_exit = True
        elif long == "immediate-exit":
            parsed.immediate_exit = True
        else:
            parsed.options[long] = True
    elif kind == _INT:
        number = _c_int(value)
        if number is None:
            raise _parse_failure(f"Cannot parse integer value \u201c{value}\u201d for {shown}")
        if not _INT_MIN <= number <= _INT_MAX:
            raise _parse_failure(f"Integer value \u201c{value}\u201d for {shown} out of range")
        parsed.options[long] = number
    elif kind == _LIST:
        items = parsed.options.setdefault(long, [])
        assert isinstance(items, list)
        items.append(value)
    elif long == "debug-feature":
        parsed.debug_feature = value
    elif long == "status":
        if value not in STATUS_FORMATS:
            raise _parse_failure(
                f"--status={value}: expected --status, --status=table or --status=json"
            )
        parsed.status_format = value
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
            entry = _BY_LONG.get(name)
            if entry is None or (equal and entry[2] == _NONE):
                raise _parse_failure(f"Unknown option {arg}")
            if entry[2] == _OPT and not equal:
                value = entry[3].split("|")[0]  # the first documented value
            elif entry[2] != _NONE and not equal:
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
                entry = _BY_SHORT.get(letter)
                if entry is None:
                    raise _parse_failure(f"Unknown option {arg}")
                if entry[2] == _NONE:
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
    word = text.strip(_BLANKS).lower()
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
        word = item.strip(_BLANKS)
        if word.isascii() and word.isdigit():
            if 1 <= int(word) <= len(SIGNAL_NAMES):
                numbers.add(int(word))
        elif word in _SIGNAL_NUMBERS:
            numbers.add(_SIGNAL_NUMBERS[word])
    return sorted(numbers)


def _resource_name_error(name: str) -> str | None:
    if name == RESERVED_NAME:
        return f"ERROR: '{RESERVED_NAME}' is a reserved resource name and can not be set by user"
    if resource_type(name) is None:
        return f"ERROR: '{name}' is not a valid name for a resource"
    return None


def _socket_name_ok(name: str) -> bool:
    return len(os.fsencode(name)) < UNIX_PATH_MAX


def _openable_dir(path: str) -> bool:
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


def _real_file(path: str) -> str | None:
    if not path:
        return None
    try:
        return os.path.realpath(path, strict=True)
    except (OSError, ValueError):
        return None


def state_file_path(text: str) -> str | None:
    """A ``--state-file``/``StateFile`` value as stored: absolute, or None when empty."""
    return os.path.abspath(text) if text else None


def _grant_policy(text: str) -> str | None:
    word = text.strip(_BLANKS).lower()
    return word if word in GrantPolicy.ALL else None


def lock_loss_policy(text: str) -> str | None:
    """``terminate`` or ``keep`` (case-insensitive), else None."""
    word = text.strip(_BLANKS).lower()
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


def _apply_options(s: Settings, options: dict[str, object], warnings: list[str]) -> None:
    """Apply the command line values in FLoM's order, validating each (reference 1.3)."""

    def text(name: str) -> str | None:
        value = options.get(name)
        return value if isinstance(value, str) else None

    def number(name: str) -> int | None:
        value = options.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def boolean(name: str, on_stdout: bool) -> bool | None:
        value = text(name)
        if value is None:
            return None
        flag = parse_bool(value)
        if flag is None:
            raise _refused(name, value, BOOLEAN_WORDS, on_stdout)
        return flag

    def existing_file(name: str) -> str | None:
        value = text(name)
        if value is None:
            return None
        path = _real_file(value)
        if path is None:
            raise CliError(_GENERIC, stderr=f"{name}: '{value}' is not a valid value")
        return path

    if (value := text("daemon-trace-file")) is not None:
        s.daemon_trace_file = value
    if (value := text("command-trace-file")) is not None:
        s.command_trace_file = value
    if options.get("verbose"):
        s.verbose = True
    if (value := text("resource-name")) is not None:
        error = _resource_name_error(value)
        if error is not None:
            raise CliError(
                _GENERIC,
                stdout=error,
                stderr=f"flom_config_set_resource_name: ret_cod={_rc.INVALID_RESOURCE_NAME}",
            )
        s.resource_name = value
    if (count := number("resource-quantity")) is not None:
        if count < 0:
            warnings.append(
                f"Resource quantity ignored because negative values ({count}) are meaningless"
            )
        elif count > 0:
            s.resource_quantity = count
    if (count := number("resource-timeout")) is not None:
        s.resource_timeout = count
    if (value := text("lock-mode")) is not None:
        try:
            s.lock_mode = parse_lock_mode(value)
        except ValueError:
            raise _refused("lock-mode", value, lock_mode_choices()) from None
    if (flag := boolean("resource-create", on_stdout=True)) is not None:
        s.resource_create = flag
    if (count := number("resource-idle-lifespan")) is not None:
        s.resource_idle_lifespan = abs(count)
    if (value := text("socket-name")) is not None:
        if not _socket_name_ok(value):
            raise CliError(
                _GENERIC,
                stderr=_invalid_value("socket-name", value)
                + f"\nflom_client_connect: ret_cod={_rc.BUFFER_OVERFLOW} "
                f"({_rc.strerror(_rc.BUFFER_OVERFLOW)})",
            )
        s.socket_name = value
    if (count := number("daemon-lifespan")) is not None:
        s.daemon_lifespan = count
    if (value := text("unicast-address")) is not None:
        s.unicast_address = value
    if (count := number("unicast-port")) is not None:
        s.unicast_port = abs(count)
    if (value := text("multicast-address")) is not None:
        s.multicast_address = value
    if (count := number("multicast-port")) is not None:
        s.multicast_port = abs(count)
    if (value := text("mount-point-vfs")) is not None:
        if not _openable_dir(value):
            opendir_error = _rc.SYSCALL_ERRORS["opendir"]
            raise CliError(
                _GENERIC,
                stderr=_invalid_value("mount-point-vfs", value)
                + f"\nflom_client_connect: ret_cod={opendir_error} "
                f"({_rc.strerror(opendir_error)})",
            )
        s.mount_point_vfs = value
    if (value := text("network-interface")) is not None:
        s.network_interface = value
    if (count := number("discovery-attempts")) is not None:
        s.discovery_attempts = abs(count) or 1
    if (count := number("discovery-timeout")) is not None:
        s.discovery_timeout = abs(count)
    if (count := number("discovery-ttl")) is not None:
        s.discovery_ttl = abs(count) or 1
    if (count := number("tcp-keepalive-time")) is not None:
        s.tcp_keepalive_time = abs(count)
    if (count := number("tcp-keepalive-intvl")) is not None:
        s.tcp_keepalive_intvl = abs(count)
    if (count := number("tcp-keepalive-probes")) is not None:
        s.tcp_keepalive_probes = abs(count)
    signals = options.get("ignore-signal")
    if isinstance(signals, list):
        s.ignored_signals = parse_signals([str(item) for item in signals])
    if (path := existing_file("tls-certificate")) is not None:
        s.tls_certificate = path
    if (path := existing_file("tls-private-key")) is not None:
        s.tls_private_key = path
    if (path := existing_file("tls-ca-certificate")) is not None:
        s.tls_ca_certificate = path
    if (flag := boolean("tls-check-peer-id", on_stdout=True)) is not None:
        s.tls_check_peer_id = flag
    if (flag := boolean("append-trace-file", on_stdout=False)) is not None:
        s.append_trace_file = flag
    if (value := text("grant-policy")) is not None:
        policy = _grant_policy(value)
        if policy is None:
            raise _refused("grant-policy", value, " or ".join(GrantPolicy.ALL))
        s.grant_policy = policy
    if (value := text("lock-loss")) is not None:
        loss = lock_loss_policy(value)
        if loss is None:
            raise _refused("lock-loss", value, " or ".join(LockLoss.ALL))
        s.lock_loss = loss
    if (count := number("lock-loss-grace")) is not None:
        s.lock_loss_grace = abs(count)
    if (value := text("tls-trace")) is not None:
        s.tls_trace_file = os.path.abspath(value)
    if (value := text("tls-keylog")) is not None:
        s.tls_keylog_file = os.path.abspath(value)
    if (value := text("state-file")) is not None:
        s.state_file = state_file_path(value)


def _with_warnings(error: CliError, warnings: list[str]) -> CliError:
    """Keep the warnings printed before an error (FLoM prints them as it goes)."""
    if warnings:
        error.stderr = "\n".join([*warnings, error.stderr] if error.stderr else warnings)
    return error


def _load_file(
    settings: Settings, path: str, required: bool, parsed: ParsedArgs, warnings: list[str]
) -> None:
    """Apply one configuration file; the reader is imported only when a file exists.
    Its warnings go to ``warnings``, the place of each key it set to ``parsed``."""
    if required or os.path.exists(path):
        from .configfile import load_file

        try:
            file_warnings, lines = load_file(settings, path, required)
        except CliError as exc:
            raise _with_warnings(exc, warnings) from None
        warnings.extend(file_warnings)
        for place, line in lines.items():
            parsed.config_keys[place] = f"{path}:{line}"


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
    settings = Settings()
    warnings: list[str] = []
    for path in system_files:
        _load_file(settings, path, False, parsed, warnings)
    user_home = _home_dir() if home is None else home
    if user_home:
        _load_file(settings, os.path.join(user_home, USER_CONFIG_FILE), False, parsed, warnings)
    config_file = parsed.options.get("config-file")
    if isinstance(config_file, str):
        _load_file(settings, config_file, True, parsed, warnings)
    try:
        _apply_options(settings, parsed.options, warnings)
    except CliError as exc:
        raise _with_warnings(exc, warnings) from None
    return settings, warnings


# Settings that only configure a daemon this command starts (what pyflom.spawn.daemon_argv
# passes on and the client itself never uses): (setting, command line option, config
# group, config key, the daemon's option).  TLS, keepalive, interface and addresses are
# used by the client too; -A/-P only when -a is given as well (the client then uses TCP).
DAEMON_ONLY_OPTIONS = (
    ("daemon_lifespan", "daemon-lifespan", "Daemon", "Lifespan", "--lifespan"),
    ("grant_policy", "grant-policy", "Daemon", "GrantPolicy", "--grant-policy"),
    ("state_file", "state-file", "Daemon", "StateFile", "--state-file"),
    ("mount_point_vfs", "mount-point-vfs", "Daemon", "MountPointVFS", "--mount-point-vfs"),
    ("daemon_trace_file", "daemon-trace-file", "Trace", "DaemonTraceFile", "--trace-file"),
    ("multicast_address", "multicast-address", "Daemon", "MulticastAddress", "--multicast-address"),
    ("multicast_port", "multicast-port", "Daemon", "MulticastPort", "--multicast-port"),
)


class DaemonOption(Record):
    """A daemon-only setting the user gave: how to name it, the daemon's option for it,
    and whether it came from the command line (else from a configuration file)."""

    __slots__ = ("daemon_flag", "label", "on_command_line")

    def __init__(self, label: str, daemon_flag: str, on_command_line: bool) -> None:
        self.label = label
        self.daemon_flag = daemon_flag
        self.on_command_line = on_command_line


def daemon_only_options(parsed: ParsedArgs, settings: Settings) -> list[DaemonOption]:
    """The daemon-only settings (:data:`DAEMON_ONLY_OPTIONS`) given on the command line or
    in a configuration file, built-in defaults aside: what a daemon already running
    ignores.  ``-d 0`` is left out (it means "start none", which holds)."""
    given = []
    for setting, option, group, key, flag in DAEMON_ONLY_OPTIONS:
        if setting == "daemon_lifespan" and settings.daemon_lifespan == 0:
            continue
        if setting.startswith("multicast_") and not (
            settings.unicast_address and settings.multicast_address
        ):
            continue
        if option in parsed.options:
            short = _BY_LONG[option][0]
            given.append(DaemonOption(f"-{short}" if short else f"--{option}", flag, True))
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
