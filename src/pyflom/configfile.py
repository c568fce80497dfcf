"""Configuration files: FLoM's GKeyFile subset, read into :class:`Settings`.

Imported only when a configuration file exists (the command's hot path stays small).
``[Group]``, ``Key=Value``, ``#`` comments, case-sensitive keys, unknown groups/keys
ignored with a warning (file, line, the closest known name: :mod:`difflib` is imported only
then), ``;``-separated lists, last duplicate wins; see :mod:`pyflom.cmdline` for the
product decisions (quirks Q5, Q6, Q7, Q8); the value rules are :mod:`pyflom.valuerules`.
"""

from __future__ import annotations

from . import rc as _rc
from .options import CONFIG_FILE_ORDER, INT, LIST, RESOURCE_NAME, Option
from .settings import Settings
from .valuerules import (
    BLANKS,
    IGNORED,
    INT_MAX,
    INT_MIN,
    CliError,
    Refused,
    c_int,
    int_value,
    parse_signals,
    string_value,
)

_GENERIC = _rc.ES_GENERIC_ERROR


class _BadConfig(Exception):
    """A semantic error in a configuration file: ``detail`` goes to stdout first (FLoM's
    line), ``why`` completes pyflom's ``FILE:LINE: [Group] Key='value' ...`` line."""

    def __init__(self, detail: str = "", rc: int = _rc.INVALID_OPTION, why: str = "") -> None:
        super().__init__(detail)
        self.detail = detail
        self.rc = rc
        self.why = why


class KeyFileError(Exception):
    """A file that cannot be loaded as a key file: ``reason``, at ``line`` (0: the file)."""

    def __init__(self, reason: str, line: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    return exc.strerror or str(exc)


def read_key_file(path: str) -> _KeyFile:
    """The GKeyFile at ``path`` (raw, still escaped values, with their line numbers).

    Raises :class:`KeyFileError` when the file cannot be read or is not a key file."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise KeyFileError(_os_reason(exc)) from None
    try:
        text = data.decode("utf-8-sig")
    except ValueError:
        raise KeyFileError("not UTF-8 text") from None
    keys = _KeyFile()
    current: dict[str, str] | None = None
    group = ""
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.lstrip(BLANKS)
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            end = line.find("]")
            name = line[1:end]
            if end < 0 or line[end + 1 :].strip(" \t\r") or not _group_name_ok(name):
                raise KeyFileError(f"'{line.rstrip()}' is not a [Group] header", number)
            group = name
            current = keys.groups.setdefault(name, {})
            keys.group_lines.setdefault(name, number)
            continue
        key, equal, value = line.partition("=")
        key = key.rstrip(BLANKS)
        if not equal or not _key_name_ok(key):
            raise KeyFileError(
                f"'{line.rstrip()}' is neither Key=Value, a [Group] header nor a # comment",
                number,
            )
        if current is None:
            raise KeyFileError(f"key {key} comes before the first [Group] header", number)
        current[key] = value.strip(BLANKS)
        keys.lines[group, key] = number
    return keys


def _key_name_ok(key: str) -> bool:
    # ``Key`` or a localised ``Key[locale]`` (kept as a distinct, unused key)
    name, bracket, locale = key.partition("[")
    if not name or "]" in name:
        return False
    return not bracket or (locale.endswith("]") and "[" not in locale and "]" not in locale[:-1])


def _group_name_ok(name: str) -> bool:
    return bool(name) and "[" not in name and all(ch >= " " and ch != "\x7f" for ch in name)


_BAD_ESCAPE = "has a bad escape sequence (GKeyFile knows \\s \\n \\t \\r \\\\)"
_ESCAPES = {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


def _unescape(value: str, separator: str | None = None) -> list[str]:
    """GKeyFile string unescaping; with ``separator`` a list split on unescaped
    separators (a trailing separator adds no empty item)."""
    pieces: list[str] = []
    chars: list[str] = []
    index = 0
    while index < len(value):
        char = value[index]
        index += 1
        if char == "\\":
            if index >= len(value):
                raise _BadConfig(why=_BAD_ESCAPE)
            escaped = value[index]
            index += 1
            if escaped in _ESCAPES:
                chars.append(_ESCAPES[escaped])
            elif separator is not None and escaped == separator:
                chars.append(escaped)
            else:
                raise _BadConfig(why=_BAD_ESCAPE)
        elif char == separator:
            pieces.append("".join(chars))
            chars = []
        else:
            chars.append(char)
    if separator is None or chars:
        pieces.append("".join(chars))
    return pieces


class _KeyFile:
    """Typed access to the groups of one configuration file.

    Remembers the line of each key and group, every key asked for (the keys
    :func:`_apply_key_file` reads are the keys pyflom knows) and the last key read (the
    one a :class:`_BadConfig` is about)."""

    def __init__(self) -> None:
        self.groups: dict[str, dict[str, str]] = {}
        self.lines: dict[tuple[str, str], int] = {}
        self.group_lines: dict[str, int] = {}
        self.asked: dict[str, list[str]] = {}
        self.last: tuple[str, str] = ("", "")

    def raw(self, group: str, key: str) -> str | None:
        self.asked.setdefault(group, []).append(key)
        self.last = (group, key)
        return self.groups.get(group, {}).get(key)

    def string(self, group: str, key: str) -> str | None:
        raw = self.raw(group, key)
        return None if raw is None else _unescape(raw)[0]

    def strings(self, group: str, key: str) -> list[str] | None:
        raw = self.raw(group, key)
        return None if raw is None else _unescape(raw, ";")

    def integer(self, group: str, key: str) -> int | None:
        raw = self.raw(group, key)
        if raw is None:
            return None
        # strtol: a number, then the end or a blank (what follows a blank is ignored)
        end = next((i for i, char in enumerate(raw) if char in BLANKS), len(raw))
        number = c_int(raw[:end])
        if number is None or not INT_MIN <= number <= INT_MAX:
            raise _BadConfig(
                f"Key file contains key \u201c{key}\u201d in group \u201c{group}\u201d "
                "which has a value that cannot be interpreted.",
                why=f"is not a whole number from {INT_MIN} to {INT_MAX}",
            )
        return number


def _apply_key_file(settings: Settings, keys: _KeyFile) -> None:
    """Apply one file's keys in FLoM's order (reference 2.2); raise :class:`_BadConfig`."""
    for option in CONFIG_FILE_ORDER:
        value = _config_value(option, keys)
        if value is not IGNORED:
            setattr(settings, option.field, value)


def _config_value(option: Option, keys: _KeyFile) -> object:
    """The setting ``option``'s key gives, by the option's rule; :data:`IGNORED` when the
    key is missing or its value leaves the setting as it was."""
    group, key, rule = option.group, option.key, option.rule
    if option.kind == INT:
        number = keys.integer(group, key)
        return IGNORED if number is None else int_value(rule, number, False, [])
    if option.kind == LIST:
        items = keys.strings(group, key)
        return IGNORED if items is None else parse_signals(items)
    text = keys.string(group, key)
    if text is None:
        return IGNORED
    try:
        return string_value(rule, text, False)
    except Refused as refusal:
        detail = refusal.flom_line if rule == RESOURCE_NAME else ""
        raise _BadConfig(detail, rc=refusal.rc, why=refusal.why) from None


def _unknown_names(path: str, keys: _KeyFile) -> list[str]:
    """Warnings for the groups and keys of ``keys`` that pyflom does not know (asked for
    none of them): FLoM ignores them silently, a typo deserves better."""
    known_groups = list(keys.asked)
    warnings = []
    for group, entries in keys.groups.items():
        line = keys.group_lines[group]
        if group not in keys.asked:
            hint = _suggestion(group, known_groups, "[{}]")
            warnings.append(
                f"flom: {path}:{line}: unknown group [{group}]{hint}; its keys are ignored"
            )
            continue
        known = keys.asked[group]
        for key in entries:
            if key.partition("[")[0] in known:
                continue  # the key itself, or a localised Key[locale] (unused, as in FLoM)
            elsewhere = [other for other, names in keys.asked.items() if key in names]
            if elsewhere:
                hint = f" (it belongs in [{elsewhere[0]}])"
            else:
                hint = _suggestion(key, known, "{}")
            warnings.append(
                f"flom: {path}:{keys.lines[group, key]}: unknown key {key} in [{group}]"
                f"{hint}; it is ignored"
            )
    return warnings


def _suggestion(word: str, candidates: list[str], form: str) -> str:
    """`` (did you mean X?)`` for the candidate closest to ``word`` (case-insensitive:
    GKeyFile names are case-sensitive, ``name`` is not ``Name``), else ``""``."""
    import difflib  # only when something is misspelt

    folded = {candidate.lower(): candidate for candidate in candidates}
    close = difflib.get_close_matches(word.lower(), list(folded), n=1)
    return f" (did you mean {form.format(folded[close[0]])}?)" if close else ""


def load_file(
    settings: Settings, path: str, required: bool
) -> tuple[list[str], dict[tuple[str, str], int]]:
    """Apply the configuration file at ``path``; a missing, unreadable or malformed file
    is an error only when ``required`` (the ``-c`` file), else a warning.

    Returns the warnings for stderr and the line of each key the file set."""
    try:
        keys = read_key_file(path)
    except KeyFileError as exc:
        where = f"configuration file '{path}'"
        if exc.line:
            where += f", line {exc.line}"
        if required:
            raise CliError(
                _GENERIC,
                stdout=f"ERROR: error while loading file '{path}'",
                stderr=f"flom_config_init: ret_cod={_rc.G_KEY_FILE_LOAD_FROM_FILE_ERROR}",
                explanation=f"flom: {where}: {exc.reason}",
            ) from None
        return [f"flom: {where}: {exc.reason}; the file is ignored"], {}
    try:
        _apply_key_file(settings, keys)
    except _BadConfig as exc:
        lines = [exc.detail] if exc.detail else []
        lines.append(f"ERROR: invalid configuration found in file '{path}'")
        group, key = keys.last
        value = keys.groups[group][key]
        raise CliError(
            _GENERIC,
            stdout="\n".join(lines),
            stderr=f"flom_config_init: ret_cod={exc.rc}",
            explanation=f"flom: {path}:{keys.lines[group, key]}: [{group}] {key}='{value}' "
            f"{exc.why}",
        ) from None
    return _unknown_names(path, keys), keys.lines
