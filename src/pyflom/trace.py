"""Command-side tracing: FLoM's ``FLOM_TRACE_MASK`` switch and ``-T`` trace file.

When the mask is set (any non-zero value; FLoM's module bits are accepted but pyflom
traces all modules alike) or a command trace file is configured, the messages a
client sends and receives are written one per line, in FLoM's trace line format.  The
text is for people, not an interface.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO

_out: TextIO | None = None


def _mask() -> int:
    text = os.environ.get("FLOM_TRACE_MASK", "")
    try:
        return int(text, 0)
    except ValueError:
        return 0


def configure(trace_file: str | None = None, append: bool = False) -> None:
    """Trace to ``trace_file`` if given, else to stderr when ``FLOM_TRACE_MASK`` is set."""
    global _out
    if trace_file:
        _out = open(trace_file, "a" if append else "w", buffering=1)  # noqa: SIM115
    elif _mask():
        _out = sys.stderr


def enabled() -> bool:
    """True when trace lines are written somewhere."""
    return _out is not None


def trace(text: str) -> None:
    """Write one trace line (``YYYY-MM-DD HH:MM:SS.uuuuuu [pid] text``)."""
    if _out is None:
        return
    now = time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
    _out.write(f"{stamp}.{int(now % 1 * 1e6):06d} [{os.getpid()}] {text}\n")
