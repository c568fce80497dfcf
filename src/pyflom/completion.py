"""Bash completion for ``flom`` and ``flom-tls``, generated from their option tables.

``python -m pyflom.completion > completions/flom.bash`` regenerates the committed script
(installed as ``share/bash-completion/completions/flom``); a test fails when the
committed file differs from :func:`render`.  The script needs bash 4 and nothing else;
with the bash-completion package loaded, the words after ``flom ... -- command`` are
completed as for ``command``.  Not imported by the ``flom`` command.
"""

from __future__ import annotations

import shlex
import sys

from . import __version__
from .cmdline import SIGNAL_NAMES
from .debugfeatures import FEATURES
from .lockmodes import LONG_NAMES, LockMode
from .options import FLAG, OPT, OPTIONS

# How the value of an option is completed, by its placeholder in the option table (a
# placeholder with ``|`` lists the values themselves).  A new placeholder must be added
# here: :func:`render` refuses an unknown one.
_FILES = "files"
_DIRS = "dirs"
_NOTHING = "nothing"
_BY_PLACEHOLDER: dict[str, str | tuple[str, ...]] = {
    "FILE": _FILES,
    "PATH": _FILES,
    "DIR": _DIRS,
    "HOST": "hostnames",
    "HOST:PORT": _NOTHING,
    "IFACE": "interfaces",
    "MODE": tuple(mode.name for mode in LockMode) + tuple(LONG_NAMES[m] for m in LockMode),
    "SIGNAL": tuple(SIGNAL_NAMES.values()),
    "NAME": _NOTHING,
    "GROUP": _NOTHING,
    "MS": _NOTHING,
    "N": _NOTHING,
    "PORT": _NOTHING,
    "S": _NOTHING,
    "URL": ("memory", "etcd://"),
    "PREFIX": _NOTHING,
    "USER": _NOTHING,
}
_BY_LONG: dict[str, str | tuple[str, ...]] = {"debug-feature": tuple(sorted(FEATURES))}

_ACTIONS = {
    _FILES: 'compopt -o filenames 2>/dev/null; _flom_reply -f -- "$2"',
    _DIRS: 'compopt -o filenames 2>/dev/null; _flom_reply -d -- "$2"',
    "hostnames": '_flom_reply -A hostname -- "$2"',
    "interfaces": '_flom_reply -W "$(command ls /sys/class/net 2>/dev/null)" -- "$2"',
}


def _value_completion(long: str, placeholder: str) -> str | tuple[str, ...]:
    if long in _BY_LONG:
        return _BY_LONG[long]
    if "|" in placeholder:
        return tuple(placeholder.split("|"))
    try:
        return _BY_PLACEHOLDER[placeholder]
    except KeyError:
        raise ValueError(f"--{long}: no completion for the placeholder {placeholder!r}") from None


def _words(words: tuple[str, ...] | list[str]) -> str:
    return shlex.quote(" ".join(words))


def _case(patterns: list[str], body: str) -> str:
    return f"        {'|'.join(patterns)}) {body} ;;"


def _flom_functions() -> list[str]:
    value_cases: dict[str | tuple[str, ...], list[str]] = {}
    short_to_long: list[str] = []
    takes_value: list[str] = []  # -x and --name forms whose next word is the value
    optional_value: list[str] = []  # --name whose value is given only after "="
    names = ["-h", "--help"]
    for option in OPTIONS:
        short, long, kind, placeholder = option.short, option.long, option.kind, option.placeholder
        names += ([f"-{short}"] if short else []) + [f"--{long}"]
        if short:
            short_to_long.append(_case([f"-{short}"], f"REPLY=--{long}"))
        if kind == FLAG:
            continue
        if kind != OPT:
            takes_value += ([f"-{short}"] if short else []) + [f"--{long}"]
        else:
            optional_value.append(f"--{long}")
        value_cases.setdefault(_value_completion(long, placeholder), []).append(f"--{long}")
    cases: list[str] = []
    for completion, options in value_cases.items():
        if completion == _NOTHING:
            continue
        if isinstance(completion, tuple):
            body = f'_flom_reply -W {_words(completion)} -- "$2"'
        else:
            body = _ACTIONS[completion]
        cases.append(_case(options, body))
    short_values = "".join(w[1] for w in takes_value if len(w) == 2)
    return [
        "# _flom_reply COMPGEN-ARGUMENTS: COMPREPLY from compgen, one word a line.",
        "_flom_reply() {",
        '    mapfile -t COMPREPLY < <(compgen "$@")',
        "}",
        "",
        "# _flom_long OPTION: the long name of OPTION in REPLY.",
        "_flom_long() {",
        "    case $1 in",
        *short_to_long,
        "        *) REPLY=$1 ;;",
        "    esac",
        "}",
        "",
        "# _flom_value OPTION TEXT: complete TEXT as a value of OPTION (its long name).",
        "_flom_value() {",
        "    COMPREPLY=()",
        "    case $1 in",
        *cases,
        "    esac",
        "}",
        "",
        "_flom() {",
        "    local cur=${COMP_WORDS[COMP_CWORD]} word pending= need_eq=0 cmd=0 i prefix=",
        "    COMPREPLY=()",
        "    # Which option waits for a value, where the command starts: the words before.",
        "    for (( i = 1; i < COMP_CWORD; i++ )); do",
        "        word=${COMP_WORDS[i]}",
        "        if [[ -n $pending ]]; then",
        '            if [[ $word == "=" ]]; then need_eq=0; continue; fi',
        "            if (( ! need_eq )); then pending=; continue; fi",
        "            pending=",
        "        fi",
        "        case $word in",
        "            --)",
        "                if (( COMP_CWORD == i + 1 )); then",
        '                    _flom_reply -c -- "$cur"',
        "                elif declare -F _command_offset >/dev/null; then",
        "                    _command_offset $(( i + 1 ))",
        "                else",
        "                    compopt -o filenames 2>/dev/null",
        '                    _flom_reply -f -- "$cur"',
        "                fi",
        "                return 0 ;;",
        f'            {"|".join(takes_value)}) _flom_long "$word"; pending=$REPLY; need_eq=0 ;;',
        f"            {'|'.join(optional_value)}) pending=$word; need_eq=1 ;;",
        "            -*) ;;",
        "            *) (( cmd )) || cmd=$i ;;",
        "        esac",
        "    done",
        '    if [[ -n $pending && $cur == "=" ]]; then',
        '        _flom_value "$pending" ""',
        "    elif [[ -n $pending ]] && (( ! need_eq )); then",
        '        _flom_value "$pending" "$cur"',
        "    elif [[ $cur == --*=* ]]; then",
        '        prefix=${cur%%=*}=; _flom_value "${cur%%=*}" "${cur#*=}"',
        f"    elif [[ $cur == -[{short_values}]?* ]]; then",
        '        _flom_long "${cur:0:2}"; prefix=${cur:0:2}; _flom_value "$REPLY" "${cur:2}"',
        "    elif [[ $cur == -* ]]; then",
        f'        _flom_reply -W {_words(names)} -- "$cur"',
        "    elif (( cmd )); then",
        "        compopt -o filenames 2>/dev/null",
        '        _flom_reply -f -- "$cur"',
        "    else",
        '        _flom_reply -c -- "$cur"',
        "    fi",
        '    if [[ -n $prefix ]]; then COMPREPLY=("${COMPREPLY[@]/#/$prefix}"); fi',
        "    return 0",
        "}",
        "complete -F _flom flom",
    ]


def _tls_functions() -> list[str]:
    from .tls.tool import SUBCOMMANDS  # cryptography: only when generating

    option_cases: list[str] = []
    value_cases: list[str] = []
    for name, command in SUBCOMMANDS.items():
        flags = ["-h", "--help"]
        for argument in command.arguments:
            options = argument.options
            option_flags = [flag for flag in argument.flags if flag.startswith("-")]
            flags += option_flags
            if not option_flags or options.get("action") in ("store_true", "store_false"):
                continue
            patterns = [f"{name}:{flag}" for flag in option_flags]
            if "choices" in options:
                body = f'_flom_reply -W {_words(list(options["choices"]))} -- "$cur"'
            elif "dir" in argument.flags[0]:
                body = 'compopt -o filenames 2>/dev/null; _flom_reply -d -- "$cur"'
            elif options.get("metavar") == "FILE" or options.get("type") is not None:
                if options.get("type") is int:
                    body = "COMPREPLY=()"
                else:
                    body = 'compopt -o filenames 2>/dev/null; _flom_reply -f -- "$cur"'
            else:
                body = "COMPREPLY=()"
            value_cases.append(_case(patterns, body + "; return 0"))
        option_cases.append(_case([name], f"words={_words(flags)}"))
    return [
        "_flom_tls() {",
        "    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} words=",
        "    local sub=${COMP_WORDS[1]}",
        "    COMPREPLY=()",
        "    if (( COMP_CWORD == 1 )); then",
        f'        _flom_reply -W {_words(["-h", "--help", *SUBCOMMANDS])} -- "$cur"',
        "        return 0",
        "    fi",
        '    case "$sub:$prev" in',
        *value_cases,
        "    esac",
        "    case $sub in",
        *option_cases,
        "    esac",
        "    if [[ $cur == -* ]]; then",
        '        _flom_reply -W "$words" -- "$cur"',
        "    else",
        "        compopt -o filenames 2>/dev/null",
        '        _flom_reply -f -- "$cur"',
        "    fi",
        "    return 0",
        "}",
        "complete -F _flom_tls flom-tls",
    ]


def render() -> str:
    """The whole completion script."""
    lines = [
        f"# bash completion for flom and flom-tls (pyflom {__version__})",
        '# Generated by "python -m pyflom.completion" from the option tables; do not edit.',
        "",
        *_flom_functions(),
        "",
        *_tls_functions(),
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    """Print the script (``python -m pyflom.completion > completions/flom.bash``)."""
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
