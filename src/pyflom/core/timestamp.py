"""Timestamp resources ``_t_FORMAT[N]``: each grant hands out the current time, formatted.

FORMAT is an ``strftime`` format rendered in local time, plus FLoM's fractions of a
second: ``#`` followed by k ``f`` (k = 1..6) becomes ``.`` and the first k digits of the
microseconds (reference 5.7).  The *grain* is the resolution the format renders; one
resource issues at most one value per grain, so no two values it hands out come from the
same grain.

Decisions (differences from FLoM are marked *fix*):

* Fractions are found first, anywhere in the format, as the reference describes FLoM's
  textual replacement (longest first): ``#fffffff`` is a 6-digit fraction followed by a literal
  ``f``; ``%#f`` is a literal ``%`` followed by a 1-digit fraction.  A ``#`` not followed
  by ``f`` is literal text (or a glibc flag inside a conversion, as in ``%#Z``).
* A specifier sets the grain only in its plain form ``%S`` (no flags, width or E/O
  modifier), as FLoM's substring test.  *fix*: ``%%S`` is a literal "%S", not seconds
  (FLoM takes it for a 1 s grain and then hands out the same string every time).  A ``%``
  that starts no conversion (``%.``, ``%:z``, a trailing ``%``) is literal text.
* *fix*: a conversion width above :data:`MAX_WIDTH` is refused (rc -25): a huge width
  makes ``strftime`` produce nothing at all, so every value would be the empty string.
* *fix* (Q19): grains are aligned to the wall clock the values are rendered in (local
  time), not to the epoch.  FLoM's epoch-aligned hour grains let two grants in one local
  hour get the same ``%H`` in zones such as +05:30.  Grains are counted on the local
  timeline, and a grant needs a *later* grain, so when the clock is set back (end of
  daylight saving time) the resource waits until local time has passed its last value
  instead of repeating values.  Formats with a plain ``%s`` render the epoch itself, so
  they count grains on the epoch timeline and ignore changes of UTC offset.  Any clock
  set back (epoch too) makes the resource wait rather than repeat.  ``now`` is rounded
  to the microsecond once, and both the grain test and the value use that instant.
* N = 0 is busy forever (``NOT_NOW``), like FLoM's ``_s_x[0]`` (Q19): waiting clients
  wait until their timeout, ``-o 0`` clients get "busy".
* Values are distinct between grains but repeat with the format's own period (``%S``
  alone comes back every minute): use a format that names the date (or ``%s``) when
  values must be unique for longer than that.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import ClassVar

from .. import rc
from .resource import Holding, Request, Resource, ResourceInitError, Verdict

US = 1_000_000  # microseconds per second
MAX_WIDTH = 64  # widest strftime field width accepted (e.g. ``%10s``)

_FRACTION = re.compile(r"#(f{1,6})")
_CONVERSION = re.compile(
    r"%(?:%|(?P<flags>[_\-0^#]*)(?P<width>[0-9]*)(?P<mod>[EO]?)(?P<conv>[A-Za-z]))"
)
_SECOND_SPECIFIERS = frozenset("crsSTX")
_MINUTE_SPECIFIERS = frozenset("MR")
_HOUR_SPECIFIERS = frozenset("HI")


@dataclass(frozen=True, slots=True)
class TimestampFormat:
    """A parsed FORMAT: the pieces to render and the grain they resolve.

    ``parts`` holds ``strftime`` text (with every stray ``%`` escaped) and, as ints, the
    digit counts of the fractions.  ``epoch`` says that grains are counted on the epoch
    timeline (the format contains ``%s``) rather than on local time.
    """

    text: str
    parts: tuple[str | int, ...]
    grain_us: int
    epoch: bool

    @classmethod
    def parse(cls, text: str) -> TimestampFormat:
        """Parse FORMAT; raise :class:`ResourceInitError` (rc -25) if it cannot be used."""
        parts: list[str | int] = []
        plain: set[str] = set()
        fractions: list[int] = []
        start = 0
        for match in _FRACTION.finditer(text):
            parts.append(_strftime_text(text, text[start : match.start()], plain))
            digits = len(match.group(1))
            parts.append(digits)
            fractions.append(digits)
            start = match.end()
        parts.append(_strftime_text(text, text[start:], plain))
        if fractions:
            grain_us = 10 ** (6 - max(fractions))
        elif plain & _SECOND_SPECIFIERS:
            grain_us = US
        elif plain & _MINUTE_SPECIFIERS:
            grain_us = 60 * US
        elif plain & _HOUR_SPECIFIERS:
            grain_us = 3600 * US
        else:
            raise ResourceInitError(
                f"timestamp format '{text}' does not show the time of day finely enough: "
                "it needs a fraction of a second (#f to #ffffff) or one of %S %s %T %X %c %r "
                "(seconds), %M %R (minutes) or %H %I (hours), e.g. '%Y%m%d%H%M%S'",
                rc.INVALID_TIMESTAMP_FORMAT,
            )
        return cls(
            text=text,
            parts=tuple(p for p in parts if p != ""),
            grain_us=grain_us,
            epoch="s" in plain,
        )

    def render(self, sec: int, usec: int, local: time.struct_time | None = None) -> str:
        """The value for the instant ``sec`` + ``usec`` µs since the epoch (local time)."""
        if local is None:
            local = time.localtime(sec)
        fraction = f"{usec:06d}"
        template = "".join(p if isinstance(p, str) else "." + fraction[:p] for p in self.parts)
        return time.strftime(template, local)


def _strftime_text(whole: str, segment: str, plain: set[str]) -> str:
    """``segment`` made safe for ``strftime``; adds its plain specifiers to ``plain``."""
    out: list[str] = []
    i = 0
    while (j := segment.find("%", i)) >= 0:
        out.append(segment[i:j])
        match = _CONVERSION.match(segment, j)
        if match is None:  # a % that starts no conversion: literal
            out.append("%%")
            i = j + 1
            continue
        conv, width = match.group("conv"), match.group("width")
        if width and int(width) > MAX_WIDTH:
            raise ResourceInitError(
                f"timestamp format '{whole}' asks for a field {int(width)} characters wide "
                f"in '{match.group()}'; at most {MAX_WIDTH} is accepted",
                rc.INVALID_TIMESTAMP_FORMAT,
            )
        if conv is not None and not (match.group("flags") or width or match.group("mod")):
            plain.add(conv)
        out.append(match.group())
        i = match.end()
    out.append(segment[i:])
    return "".join(out)


def _split_instant(now: float) -> tuple[int, int]:
    """``now`` (epoch seconds) as whole seconds and microseconds, rounded to 1 µs."""
    sec, usec = divmod(round(now * US), US)
    return sec, usec


@dataclass
class TimestampResource(Resource):
    """Hands the current time, formatted, to at most N holders at a time (reference 5.7).

    A request is grantable iff fewer than N hold a value and the current grain is later
    than the grain of the last value issued.  Queued requests are granted by a release
    or by :meth:`tick` at :meth:`next_deadline`, the start of the next grain.
    """

    timed: ClassVar[bool] = True

    slots: int = field(init=False, default=0)
    fmt: TimestampFormat = field(init=False)
    last_grain: int | None = field(init=False, default=None)  # grain of the last value
    _last_offset: int = field(init=False, default=0)  # UTC offset (s) of the last value

    def __post_init__(self) -> None:
        body, bracket, count = self.name.rpartition("[")
        if not (body.startswith("_t_") and bracket and count[:-1].isdigit()):
            raise ResourceInitError(
                f"'{self.name}' is not a timestamp resource name (_t_FORMAT[N])",
                rc.INVALID_RESOURCE_NAME,
            )
        self.slots = int(count[:-1])
        self.fmt = TimestampFormat.parse(body[3:])

    # -- time ---------------------------------------------------------------------------
    def _timeline_us(self, sec: int, usec: int, offset: int) -> int:
        """The instant on the timeline grains are counted on (local or epoch), in µs."""
        return (sec if self.fmt.epoch else sec + offset) * US + usec

    def grain_of(self, now: float) -> int:
        """Index of the grain ``now`` falls in."""
        sec, usec = _split_instant(now)
        offset = 0 if self.fmt.epoch else time.localtime(sec).tm_gmtoff
        return self._timeline_us(sec, usec, offset) // self.fmt.grain_us

    def _epoch_us(self, timeline_us: int) -> int:
        """The earliest-known epoch instant (µs) at which the timeline reaches
        ``timeline_us`` (local time is ambiguous or missing around offset changes)."""
        if self.fmt.epoch:
            return timeline_us
        offset = self._last_offset
        guesses: list[int] = []
        for _ in range(4):
            guess = timeline_us - offset * US
            actual = time.localtime(guess // US).tm_gmtoff
            if actual == offset:
                return guess
            guesses.append(guess)
            offset = actual
        # Oscillating: the local instant falls in a gap (clock set forward); the later
        # guess is the first instant past it.
        return max(guesses)

    # -- the resource protocol ----------------------------------------------------------
    def verdict(self, request: Request, now: float) -> Verdict:
        if len(self.holders) >= self.slots:
            return Verdict.NOT_NOW
        if self.last_grain is not None and self.grain_of(now) <= self.last_grain:
            return Verdict.NOT_NOW
        return Verdict.GRANTABLE

    def take(self, request: Request, now: float) -> str | None:
        sec, usec = _split_instant(now)
        local = time.localtime(sec)
        self._last_offset = local.tm_gmtoff
        timeline = self._timeline_us(sec, usec, local.tm_gmtoff)
        self.last_grain = timeline // self.fmt.grain_us
        return self.fmt.render(sec, usec, local)

    def give_back(self, holding: Holding, rollback: bool) -> None:
        pass  # the slot is the holder entry itself; values are never reused

    def next_deadline(self) -> float | None:
        """Start of the grain after the last value, while someone waits for a free slot."""
        if self.last_grain is None or not self.waiting or len(self.holders) >= self.slots:
            return None
        epoch_us = self._epoch_us((self.last_grain + 1) * self.fmt.grain_us)
        deadline = epoch_us / US
        for _ in range(3):  # never early because of float rounding
            if self.grain_of(deadline) > self.last_grain:
                break
            epoch_us += 1
            deadline = epoch_us / US
        return deadline
