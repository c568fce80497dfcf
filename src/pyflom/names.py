"""Resource name grammar: which kind of resource a name denotes, as FLoM decides it."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

    from .typed import ResourceKind

RESERVED_NAME = "_RESOURCE"


class ResourceType:
    """Kinds of resource, told apart by the shape of their name (plain strings: an Enum
    class costs the command more to create than it is worth here)."""

    SIMPLE: Final = "simple"
    NUMERIC: Final = "numeric"
    SET: Final = "set"
    HIERARCHICAL: Final = "hierarchical"
    SEQUENCE: Final = "sequence"
    TIMESTAMP: Final = "timestamp"


_ALNUM = r"[A-Za-z][A-Za-z0-9]*"
_PATTERNS: tuple[tuple[ResourceKind, str], ...] = (
    (ResourceType.NUMERIC, _ALNUM + r"\[[0-9]+\]"),
    (ResourceType.SET, _ALNUM + r"(\." + _ALNUM + r")+"),
    (ResourceType.HIERARCHICAL, r"/[^/\n]+(/[^/\n]+)*"),
    (ResourceType.SEQUENCE, r"_[sS]_" + _ALNUM + r"\[[0-9]+\]"),
    (ResourceType.TIMESTAMP, r"_t_[%#A-Za-z][%#.:\\A-Za-z0-9]*\[[0-9]+\]"),
)


def _is_simple(name: str) -> bool:
    # str methods instead of a regex: the CLI's hot path never needs to import ``re``.
    return name == RESERVED_NAME or (name.isascii() and name.isalnum() and name[:1].isalpha())


def resource_type(name: str) -> ResourceKind | None:
    """Return the type of resource ``name`` denotes, or None if it is not a valid name."""
    if _is_simple(name):
        return ResourceType.SIMPLE
    import re  # only for the less common kinds of name

    for kind, pattern in _PATTERNS:
        if re.fullmatch(pattern, name):
            if kind == ResourceType.HIERARCHICAL and _has_dot_level(name):
                return None  # '/a/./b' would be another node than '/a/b': refused
            return kind
    return None


def _has_dot_level(name: str) -> bool:
    """True when a level of the hierarchical ``name`` is ``.`` or ``..``."""
    return any(level in (".", "..") for level in name.split("/"))


KINDS: tuple[ResourceKind, ...] = (
    ResourceType.SIMPLE,
    ResourceType.HIERARCHICAL,
    ResourceType.SET,
    ResourceType.NUMERIC,
    ResourceType.SEQUENCE,
    ResourceType.TIMESTAMP,
)
NAME_RULE = (
    "a resource name is ASCII letters and digits starting with a letter ('mylock'), or "
    "levels after '/' ('/orders/123', a hierarchical name)"
)


def invalid_name_reason(name: str, *, rule: bool = True) -> str:
    """Why ``name`` (for which :func:`resource_type` is None) is refused, with the fix
    where one is known; ``rule=False``: without the naming rule and suggested spelling
    (FLoM's line, which the command prints, says the rule apart)."""
    reason = f"'{name}' is not a valid name for a resource"
    if name.startswith("/") and _has_dot_level(name):
        import posixpath

        fixed = posixpath.normpath(name)
        suggestion = "" if resource_type(fixed) is None else f" (write '{fixed}')"
        reason += (
            ": '.' and '..' are not allowed as levels of a hierarchical name, which would "
            f"then name another node than the path it spells{suggestion}"
        )
    elif rule:
        reason += ": " + name_rule(name)
    return reason


def name_rule(name: str) -> str:
    """The naming rule and a spelling of the refused ``name`` that works."""
    if name.startswith("/"):
        levels = [level for level in name.split("/") if level not in ("", ".", "..")]
        fixed = "/" + "/".join(levels)
        return (
            "a hierarchical name is levels after '/', each level not empty and without "
            "'/' at the end" + (f"; write '{fixed}'" if levels else "")
        )
    spellings = []
    if "/" in name and resource_type("/" + name) == ResourceType.HIERARCHICAL:
        spellings.append(f"'/{name}' (a hierarchical name)")
    simple = simple_spelling(name)
    if simple:
        spellings.append(f"'{simple}'")
    return NAME_RULE + ("; write " + " or ".join(spellings) if spellings else "")


def simple_spelling(name: str) -> str:
    """``name`` as a simple name: its ASCII letters and digits, after a letter ('' when
    it has none)."""
    simple = "".join(c for c in name if c.isascii() and c.isalnum())
    return "r" + simple if simple[:1].isdigit() else simple


def check_kind(kind: str | None) -> None:
    """Raise ``ValueError`` unless ``kind`` is a kind of resource (or None)."""
    if kind is not None and kind not in KINDS:
        raise ValueError(
            f"kind={kind!r} is not a kind of resource: use one of "
            + ", ".join(repr(k) for k in KINDS)
            + " (or None: simple or hierarchical)"
        )


def _brackets(name: str) -> tuple[str, str]:
    """``'pool[3]'`` -> ``('pool', '3')``."""
    head, _, size = name.rpartition("[")
    return head, size[:-1]


def _meaning(name: str, kind: str) -> tuple[str, str]:
    """What ``name`` of ``kind`` means, and how to ask for that kind by name."""
    if kind == ResourceType.SET:
        elements = name.split(".")
        listed = ", ".join(f"'{e}'" for e in elements[:-1]) + f" and '{elements[-1]}'"
        args = ", ".join(f"'{e}'" for e in elements)
        return (
            f"a lock on ONE of {listed}, where the mode is ignored",
            f"pass kind='set' or use pyflom.one_of({args})",
        )
    if kind == ResourceType.NUMERIC:
        head, units = _brackets(name)
        return (
            f"a semaphore of {units} units, where the mode is ignored",
            f"pass kind='numeric' or use pyflom.semaphore('{head}', {units})",
        )
    if kind == ResourceType.SEQUENCE:
        head, size = _brackets(name)
        transactional = ", transactional=True" if head[1] == "S" else ""
        return (
            f"a counter handing out 1, 2, 3... to at most {size} holders at a time",
            f"pass kind='sequence' or use pyflom.sequence('{head[3:]}', {size}{transactional})",
        )
    if kind == ResourceType.TIMESTAMP:
        head, size = _brackets(name)
        return (
            f"unique timestamps formatted as '{head[3:]}', at most {size} holders at a time",
            f"pass kind='timestamp' or use pyflom.timestamp('{head[3:]}', {size})",
        )
    if kind == ResourceType.HIERARCHICAL:
        return "a node of a tree of locks", "pass kind='hierarchical' or kind=None"
    return "a lock with modes", "pass kind='simple' or kind=None"


def kind_mismatch(name: str, kind: str | None) -> str | None:
    """Why ``name`` may not be locked as a resource of ``kind`` (None: a simple or
    hierarchical one, the kinds where lock modes apply), or None when it may.  A kind is
    asked for explicitly: a name never changes kind by its shape alone."""
    check_kind(kind)
    actual = resource_type(name)
    if actual is None:
        return invalid_name_reason(name)
    if kind == actual or (kind is None and uses_lock_mode(actual)):
        return None
    meaning, how = _meaning(name, actual)
    if kind is None:
        reason = f"'{name}' would name a {actual} resource ({meaning}); for a {actual} {how}"
        if actual == ResourceType.SET:
            reason += (
                f"; for a lock named like a file write '{name.replace('.', '')}' or "
                f"'/{name}' (a hierarchical name)"
            )
        elif actual == ResourceType.NUMERIC:
            reason += f"; for a plain lock write '{''.join(_brackets(name))}'"
        return reason
    return (
        f"'{name}' names a {actual} resource ({meaning}), not a {kind} one: {how}; "
        f"a {kind} resource is named {_SHAPES[kind]}"
    )


_SHAPES = {
    ResourceType.SIMPLE: "by ASCII letters and digits starting with a letter ('mylock')",
    ResourceType.HIERARCHICAL: "by levels after '/' ('/orders/123')",
    ResourceType.SET: "by two elements or more joined by '.' ('red.green.blue')",
    ResourceType.NUMERIC: "'name[UNITS]' ('pool[3]')",
    ResourceType.SEQUENCE: "'_s_name[HOLDERS]', or '_S_name[HOLDERS]' when transactional",
    ResourceType.TIMESTAMP: "'_t_FORMAT[HOLDERS]' ('_t_%H:%M:%S#fff[1]')",
}


def uses_lock_mode(kind: str) -> bool:
    """Lock modes apply to simple and hierarchical resources only (others are EX)."""
    return kind in (ResourceType.SIMPLE, ResourceType.HIERARCHICAL)


def locker_key(name: str, kind: str) -> str:
    """Name of the locker serving ``name``: hierarchical names share their first level."""
    if kind == ResourceType.HIERARCHICAL:
        return "/" + name.split("/", 2)[1]
    return name
