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


def compatible(held: LockMode | int, requested: LockMode | int) -> bool:
    """True when ``requested`` may be granted next to a holder in mode ``held``."""
    return COMPATIBLE[held][requested]
