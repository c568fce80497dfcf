"""pyflom: Free Lock Manager for shell commands and programs (FLoM 1.7.2 compatible).

The library surface::

    import pyflom

    with pyflom.lock("R", mode="PR", timeout=2.0) as handle:
        ...

    handle = pyflom.Handle("red.green.blue")
    element = handle.lock()
    handle.unlock()

    async with pyflom.aio.lock("R", timeout=2.0):  # asyncio (pyflom.aio)
        ...
"""

from __future__ import annotations

TYPE_CHECKING = False  # no runtime import of ``typing``: the command imports this package
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"

__all__ = [
    "ConnectionFailed",
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
    "NotAllowed",
    "ProtocolError",
    "Settings",
    "__version__",
    "lock",
]
# issue 17 (lib-life): the library's lost locks and self-deadlocks (both in .errors)
__all__ += ["LockLost", "SelfDeadlock"]

if TYPE_CHECKING:
    from .client import Handle, HandleState, lock
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
        NotAllowed,
        ProtocolError,
        SelfDeadlock,
    )
    from .lockmodes import LockMode
    from .settings import Settings

_HOMES = {
    "Handle": "client",
    "HandleState": "client",
    "lock": "client",
    "LockMode": "lockmodes",
    "Settings": "settings",
}


def __getattr__(name: str) -> Any:
    # Lazy: ``import pyflom.cli`` must not pay for what the command does not use.
    if name == "aio":  # the asyncio library (imports asyncio): loaded on first use
        from importlib import import_module

        return import_module(".aio", __name__)
    if name in __all__ and name != "__version__":
        from importlib import import_module

        module = import_module(f".{_HOMES.get(name, 'errors')}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'pyflom' has no attribute {name!r}")
