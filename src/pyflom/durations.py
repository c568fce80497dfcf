"""One story for durations in the Python API: seconds.

Every keyword argument of :func:`pyflom.lock`, :class:`pyflom.Handle` and
:mod:`pyflom.aio` that is a duration (``timeout``, ``idle_lifespan``,
``daemon_lifespan``) is in **seconds**, an ``int``, a ``float`` or a
:class:`datetime.timedelta`, as in Python's own ``socket.settimeout`` or
``threading.Lock.acquire``.  ``timeout=None`` waits forever and ``timeout=0`` does not
wait.  Milliseconds stay where FLoM has them: the ``flom`` command's options, the
configuration files and :class:`pyflom.Settings`, and libflom's handle properties
(``Handle.resource_timeout``, ``resource_idle_lifespan``, ``daemon_lifespan``).

A whole number of seconds of 1000 or more looks like milliseconds given by mistake
(``timeout=2000`` would wait 33 minutes): it is taken as given, with a
:class:`DurationWarning` that says how to write either meaning.
"""

from __future__ import annotations

import warnings

TYPE_CHECKING = False
if TYPE_CHECKING:
    import datetime

    Seconds = float | int | datetime.timedelta

SUSPICIOUS_S = 1000  # a whole number of seconds from here on looks like milliseconds


class DurationWarning(UserWarning):
    """A duration in seconds that looks like milliseconds given by mistake."""


def to_ms(value: Seconds, what: str) -> int:
    """``value`` seconds as whole milliseconds (rounded up, so that 0.0001 s still waits).

    Raises ``ValueError`` for a negative or non-finite value and ``TypeError`` for
    anything but a number or a ``timedelta``; warns (:class:`DurationWarning`) for a
    whole number of seconds of :data:`SUSPICIOUS_S` or more.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        total = getattr(value, "total_seconds", None)
        if total is None:
            raise TypeError(
                f"{what} must be a number of seconds or a timedelta, not {type(value).__name__}"
            )
        value = float(total())
    elif (isinstance(value, int) or float(value).is_integer()) and value >= SUSPICIOUS_S:
        warnings.warn(
            f"{what}={value!r} is in seconds ({value / 60:.0f} minutes); if you meant "
            f"{value} milliseconds, write {what}={value / 1000:g}",
            DurationWarning,
            stacklevel=_caller_level(),
        )
    seconds = float(value)
    if not seconds >= 0 or seconds == float("inf"):
        raise ValueError(f"{what} must be a finite number of seconds >= 0, not {value!r}")
    ms = seconds * 1000
    whole = int(ms)
    return whole + 1 if ms > whole else whole


def _caller_level() -> int:
    """The ``stacklevel`` of the first caller outside pyflom, seen from :func:`to_ms`:
    the warning names the line of the program that gave the duration."""
    import os
    import sys

    package = os.path.dirname(__file__) + os.sep
    frame = sys._getframe(2)  # the caller of to_ms (_caller_level's caller is 1)
    level = 2
    while frame.f_back is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    return level
