"""Texts the command prints on request: help, version, signal list, the ``-V`` dump.

Kept out of :mod:`pyflom.cmdline` so that an ordinary run does not load them.
"""

from __future__ import annotations

from .cmdline import SIGNAL_NAMES
from .options import (
    BOOLEAN,
    BOOLEAN_STDERR,
    FLAG,
    INT,
    LOCK_MODE,
    OPT,
    OPTIONS,
    SIGNALS,
    VERBOSE_DUMP_ORDER,
)
from .settings import Settings


def verbose_dump(settings: Settings) -> str:
    """The ``-V`` configuration dump (reference 1.7), one ``\\n``-terminated line per
    setting (:data:`pyflom.options.VERBOSE_DUMP_ORDER`), then pyflom's own:
    ``[Daemon]/GrantPolicy``, ``[Daemon]/StateFile``, ``[Monitor]/LockLoss``,
    ``[Monitor]/LockLossGrace``."""
    lines = []
    for option in VERBOSE_DUMP_ORDER:
        value = getattr(settings, option.field)
        if option.rule in (BOOLEAN, BOOLEAN_STDERR, LOCK_MODE):
            shown = str(int(value))
        elif option.kind == INT:
            shown = str(value)
        elif option.rule == SIGNALS:
            names = ";".join(SIGNAL_NAMES[n] for n in value if n in SIGNAL_NAMES)
            shown = f"'{names}'"
        else:
            shown = f"'{'' if value is None else value}'"
        lines.append(f"[{option.group}]/{option.key}={shown}\n")
    return "".join(lines)


def help_text() -> str:
    """The GLib-style ``--help`` text (usage line, help options, application options)."""
    rows: list[tuple[str, str]] = [("-h, --help", "Show help options")]
    for option in OPTIONS:
        left = f"-{option.short}, --{option.long}" if option.short else f"    --{option.long}"
        if option.kind == OPT:
            left += f"[={option.placeholder}]"
        elif option.kind != FLAG:
            left += f"={option.placeholder}"
        rows.append((left, option.help))
    width = max(len(left) for left, _ in rows) + 4
    lines = [
        "Usage:",
        "  flom [OPTION\u2026] [-- command to execute]",
        "",
        "Help Options:",
        f"  {rows[0][0]:<{width}}{rows[0][1]}",
        "",
        "Application Options:",
    ]
    lines += [f"  {left:<{width}}{description}" for left, description in rows[1:]]
    return "\n".join(lines) + "\n"


def _version() -> str:
    try:
        from . import __version__ as version
    except ImportError:
        return "0.1.0"
    return str(version) or "0.1.0"


def version_text() -> str:
    """The ``-v`` block: pyflom's name, licence and version (no trailing newline)."""
    return "\n".join(
        (
            "pyflom: Free Lock Manager (FLoM 1.7.2 compatible, in Python)",
            "Copyright (c) the pyflom team",
            "License: GPL (GNU General Public License) version 2 or later",
            f"Package name: pyflom; package version: {_version()}; compatible with: FLoM 1.7.2",
            "TLS supported protocol(s): those of the Python ssl module",
        )
    )


def signal_list_text() -> str:
    """The ``--signal-list`` table: ``N) NAME<TAB>``, a newline after every fourth entry
    and one at the end (reference 1.8)."""
    parts: list[str] = []
    for number, name in SIGNAL_NAMES.items():
        parts.append(f"{number}) {name}\t")
        if number % 4 == 0:
            parts.append("\n")
    parts.append("\n")
    return "".join(parts)
