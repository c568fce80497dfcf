"""What outlives one daemon: fencing-token generations and, with a state file, sequences.

Sans-IO.  The lock table changes these objects as it grants and releases; when a daemon
keeps a state file, :meth:`DurableState.take_changes` hands over what changed since the
last call, and the daemon must make that durable *before* it sends the answers of the
same event (a grant must never be answered with a number a restarted daemon could hand
out again).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

US_PER_S = 1_000_000
GENERATION_RESERVE = 10**9
"""How far (in generations, i.e. clock microseconds: ~17 min) a state file reserves
generations ahead of the last one handed out, so that it is written rarely for them."""


def clock_us(now: float) -> int:
    """``now`` (wall-clock seconds since the epoch) in whole microseconds."""
    return int(now * US_PER_S)


class GenerationCounter:
    """Fencing tokens: each is ``max(previous + 1, now in whole µs since the epoch)``.

    Strictly increasing.  Because it follows the clock, a daemon started after another
    one continues above it, as long as the clock was not set back by more than the time
    in between.  With ``reserve`` (a state file) no value ever exceeds ``ceiling``, a
    bound that is made durable before use: a value that would pass it first moves it to
    ``value + reserve`` and sets ``ceiling_changed``.
    """

    __slots__ = ("ceiling", "ceiling_changed", "last", "reserve")

    def __init__(self, floor: int = 0, reserve: int = 0) -> None:
        self.last = floor  # every value handed out is above this
        self.reserve = reserve
        self.ceiling: int | None = floor + reserve if reserve else None
        self.ceiling_changed = False

    def next(self, now: float) -> int:
        """The generation of a grant made at ``now`` (wall-clock seconds)."""
        value = max(self.last + 1, clock_us(now))
        self.last = value
        if self.ceiling is not None and value > self.ceiling:
            self.ceiling = value + self.reserve
            self.ceiling_changed = True
        return value


@dataclass(slots=True)
class SequenceState:
    """A sequence's counter (the last new value handed out) and its rolled-back values,
    handed out again first, oldest first (``_S_`` only)."""

    counter: int = 0
    returned: deque[int] = field(default_factory=deque)


@dataclass(slots=True)
class DurableChanges:
    """What must be durable before answers are sent: the new generation ceiling (None:
    unchanged) and the new state of each changed sequence, by resource name."""

    ceiling: int | None = None
    sequences: dict[str, SequenceState] = field(default_factory=dict)


class DurableState:
    """The state a daemon with a state file keeps across resource expiry and restarts.

    ``generation_floor``: every generation handed out will be above it (a restarted
    daemon passes ``max(stored ceiling, now in µs)``).  ``sequences``: the counters
    loaded from the file, by resource name.
    """

    def __init__(
        self,
        generation_floor: int = 0,
        sequences: dict[str, SequenceState] | None = None,
        reserve: int = GENERATION_RESERVE,
    ) -> None:
        if reserve <= 0:
            raise ValueError("a durable generation counter needs a positive reserve")
        self.generations = GenerationCounter(generation_floor, reserve)
        self.sequences: dict[str, SequenceState] = dict(sequences or {})
        self._changed: set[str] = set()

    def sequence(self, name: str) -> SequenceState:
        """The state of sequence ``name`` (a new one, at 0, the first time)."""
        state = self.sequences.get(name)
        if state is None:
            state = self.sequences[name] = SequenceState()
        return state

    def changed(self, name: str) -> None:
        """Sequence ``name`` changed: report it in the next :meth:`take_changes`."""
        self._changed.add(name)

    def take_changes(self) -> DurableChanges | None:
        """What changed since the last call (None: nothing), as copies."""
        generations = self.generations
        if not self._changed and not generations.ceiling_changed:
            return None
        changes = DurableChanges(
            generations.ceiling if generations.ceiling_changed else None,
            {name: _copy(self.sequences[name]) for name in sorted(self._changed)},
        )
        self._changed.clear()
        generations.ceiling_changed = False
        return changes

    def snapshot(self) -> DurableChanges:
        """The whole state (for rewriting the file); sequences never used are left out."""
        return DurableChanges(
            self.generations.ceiling,
            {
                name: _copy(state)
                for name, state in sorted(self.sequences.items())
                if state.counter or state.returned
            },
        )


def _copy(state: SequenceState) -> SequenceState:
    return SequenceState(state.counter, deque(state.returned))
