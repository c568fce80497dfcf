"""The library's log: the ``pyflom.client`` logger (a child of ``pyflom``), as Python
libraries do; no handler is added.

Only when the program uses :mod:`logging` at all (it is imported): the ``flom``
command never imports it, and a record nobody could have asked for is not built.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from logging import Logger

NAME = "pyflom.client"
DEBUG, INFO, WARNING = 10, 20, 30  # logging's levels, without importing it

_logger: Logger | None = None


def logger(level: int) -> Logger | None:
    """The library's logger when it logs ``level``, else None (logging not imported, or
    the level is not enabled)."""
    global _logger
    log = _logger
    if log is None:
        logging = sys.modules.get("logging")
        if logging is None:
            return None
        log = _logger = logging.getLogger(NAME)
    return log if log.isEnabledFor(level) else None
