"""The six VMS lock modes, their compatibility matrix and their names."""

from __future__ import annotations

from enum import IntEnum


class LockMode(IntEnum):
    """VMS/DLM lock modes with FLoM's wire numbers."""

    NL = 0  # null lock
    CR = 1  # concurrent read
    CW = 2  # concurrent write
    PR = 3  # protected read
    PW = 4  # protected write
    EX = 5  # exclusive


LONG_NAMES = {
    LockMode.NL: "NullLock",
    LockMode.CR: "ConcurrentRead",
    LockMode.CW: "ConcurrentWrite",
    LockMode.PR: "ProtectedRead",
    LockMode.PW: "ProtectedWrite",
    LockMode.EX: "Exclusive",
}

# COMPATIBLE[held][requested]: rows are the mode already held, columns the one requested.
COMPATIBLE: tuple[tuple[bool, ...], ...] = (
    #   NL    CR     CW     PR     PW     EX
    (True, True, True, True, True, True),  # NL held
    (True, True, True, True, True, False),  # CR held
    (True, True, True, False, False, False),  # CW held
    (True, True, False, True, False, False),  # PR held
    (True, True, False, False, False, False),  # PW held
    (True, False, False, False, False, False),  # EX held
)

_BY_WORD = {mode.name.lower(): mode for mode in LockMode}
_BY_WORD.update({long.lower(): mode for mode, long in LONG_NAMES.items()})


def parse_lock_mode(text: str) -> LockMode:
    """Parse a lock mode given as a short (``PR``) or long (``ProtectedRead``) name.

    Case-insensitive, whole words only: ``xnly`` is refused (FLoM's substring match would
    read it as NL).  Raises ``ValueError`` for anything else.
    """
    try:
        return _BY_WORD[text.strip().lower()]
    except KeyError:
        raise ValueError(text) from None


def lock_mode_choices() -> str:
    """The valid lock modes, for messages: ``NL, CR, ... (or NullLock, ...)``."""
    return (
        ", ".join(mode.name for mode in LockMode)
        + " (or "
        + ", ".join(LONG_NAMES[mode] for mode in LockMode)
        + ")"
    )


MEANINGS = {
    LockMode.NL: "no access, only interest: never blocks anyone",
    LockMode.CR: "read while others may read and write (blocked by EX only)",
    LockMode.CW: "write while others may read and write (shared with NL, CR, CW)",
    LockMode.PR: "read while nobody writes (shared with NL, CR, PR)",
    LockMode.PW: "write while others may only read with CR (shared with NL, CR)",
    LockMode.EX: "nobody else holds it but NL (the default)",
}
_LIKELY = {"write": "EX", "w": "EX", "exclusive": "EX", "x": "EX", "lock": "EX"}
_LIKELY.update(dict.fromkeys(("read", "r", "shared", "s"), "PR"))


def invalid_lock_mode(value: object) -> str:
    """Why ``value`` is not a lock mode, with every valid mode and what it means."""
    guess = _LIKELY.get(value.strip().lower()) if isinstance(value, str) else None
    hint = f" (for {'one writer' if guess == 'EX' else 'readers'} write '{guess}')" if guess else ""
    modes = "; ".join(f"{mode.name} ({LONG_NAMES[mode]}): {MEANINGS[mode]}" for mode in LockMode)
    return f"{value!r} is not a lock mode{hint}; the modes are: {modes}"


def compatible(held: LockMode | int, requested: LockMode | int) -> bool:
    """True when ``requested`` may be granted next to a holder in mode ``held``."""
    return COMPATIBLE[held][requested]
