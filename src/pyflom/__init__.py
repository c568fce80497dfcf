"""pyflom: Free Lock Manager for shell commands and programs (FLoM 1.7.2 compatible).

The library surface::

    import pyflom

    with pyflom.lock("R", mode="PR", timeout=2.0) as handle:
        ...  # handle.generation: the fencing token

    with pyflom.one_of("red", "green", "blue") as handle:  # other kinds: explicitly
        print(handle.locked_element)

    handle = pyflom.Handle("R", lock_mode="EX")
    handle.lock()
    handle.unlock()

    async with pyflom.aio.lock("R", timeout=2.0):  # asyncio (pyflom.aio)
        ...
"""

from __future__ import annotations

TYPE_CHECKING = False  # no runtime import of ``typing``: the command imports this package

__version__ = "0.1.0"

__all__ = [
    "ConnectionFailed",
    "DurationWarning",
    "FlomError",
    "Handle",
    "HandleState",
    "InvalidResourceName",
    "InvalidSequence",
    "LockBusy",
    "LockCantWait",
    "LockImpossible",
    "LockMode",
    "LockTimeout",
    "LockUnavailable",
    "ModeName",
    "NotAllowed",
    "ProtocolError",
    "ResourceKind",
    "Settings",
    "__version__",
    "aio",
    "lock",
    "one_of",
    "semaphore",
    "sequence",
    "timestamp",
]
# issue 17 (lib-life): the library's lost locks and self-deadlocks (both in .errors)
__all__ += ["LockLost", "SelfDeadlock"]

if TYPE_CHECKING:
    from . import aio as aio
    from .client import Handle, HandleState, lock, one_of, semaphore, sequence, timestamp
    from .durations import DurationWarning
    from .errors import (
        ConnectionFailed,
        FlomError,
        InvalidResourceName,
        InvalidSequence,
        LockBusy,
        LockCantWait,
        LockImpossible,
        LockLost,
        LockTimeout,
        LockUnavailable,
        NotAllowed,
        ProtocolError,
        SelfDeadlock,
    )
    from .lockmodes import LockMode
    from .settings import Settings
    from .typed import ModeName, ResourceKind
else:
    # Lazy: ``import pyflom.cli`` must not pay for what the command does not use.  Out
    # of sight of type checkers, so that a misspelt name is an error to them.
    _HOMES = {
        "aio": None,  # the asyncio library (imports asyncio): loaded on first use
        "Handle": "client",
        "HandleState": "client",
        "lock": "client",
        "one_of": "client",
        "semaphore": "client",
        "sequence": "client",
        "timestamp": "client",
        "DurationWarning": "durations",
        "LockMode": "lockmodes",
        "ModeName": "typed",
        "ResourceKind": "typed",
        "Settings": "settings",
    }

    def __getattr__(name):
        if name in __all__ and name != "__version__":
            from importlib import import_module

            home = _HOMES.get(name, "errors")
            if home is None:
                return import_module(f".{name}", __name__)
            return getattr(import_module(f".{home}", __name__), name)
        raise AttributeError(f"module 'pyflom' has no attribute {name!r}")

    def __dir__():
        return sorted(set(globals()) | set(__all__))
