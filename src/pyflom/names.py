"""Resource name grammar: which kind of resource a name denotes, as FLoM decides it."""

from __future__ import annotations

RESERVED_NAME = "_RESOURCE"


class ResourceType:
    """Kinds of resource, told apart by the shape of their name (plain strings: an Enum
    class costs the command more to create than it is worth here)."""

    SIMPLE = "simple"
    NUMERIC = "numeric"
    SET = "set"
    HIERARCHICAL = "hierarchical"
    SEQUENCE = "sequence"
    TIMESTAMP = "timestamp"


_ALNUM = r"[A-Za-z][A-Za-z0-9]*"
_PATTERNS = (
    (ResourceType.NUMERIC, _ALNUM + r"\[[0-9]+\]"),
    (ResourceType.SET, _ALNUM + r"(\." + _ALNUM + r")+"),
    (ResourceType.HIERARCHICAL, r"/[^/\n]+(/[^/\n]+)*"),
    (ResourceType.SEQUENCE, r"_[sS]_" + _ALNUM + r"\[[0-9]+\]"),
    (ResourceType.TIMESTAMP, r"_t_[%#A-Za-z][%#.:\\A-Za-z0-9]*\[[0-9]+\]"),
)


def _is_simple(name: str) -> bool:
    # str methods instead of a regex: the CLI's hot path never needs to import ``re``.
    return name == RESERVED_NAME or (name.isascii() and name.isalnum() and name[:1].isalpha())


def resource_type(name: str) -> str | None:
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


def invalid_name_reason(name: str) -> str:
    """Why ``name`` (for which :func:`resource_type` is None) is refused, with the fix
    where one is known."""
    reason = f"'{name}' is not a valid name for a resource"
    if name.startswith("/") and _has_dot_level(name):
        import posixpath

        fixed = posixpath.normpath(name)
        suggestion = "" if resource_type(fixed) is None else f" (write '{fixed}')"
        reason += (
            ": '.' and '..' are not allowed as levels of a hierarchical name, which would "
            f"then name another node than the path it spells{suggestion}"
        )
    return reason


def uses_lock_mode(kind: str) -> bool:
    """Lock modes apply to simple and hierarchical resources only (others are EX)."""
    return kind in (ResourceType.SIMPLE, ResourceType.HIERARCHICAL)


def locker_key(name: str, kind: str) -> str:
    """Name of the locker serving ``name``: hierarchical names share their first level."""
    if kind == ResourceType.HIERARCHICAL:
        return "/" + name.split("/", 2)[1]
    return name
