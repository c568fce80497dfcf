"""Sequence resources ``_s_name[N]`` and transactional ``_S_name[N]``."""

from __future__ import annotations

from dataclasses import dataclass, field

from .durable import DurableState, SequenceState
from .resource import Holding, Request, Resource, Verdict


@dataclass
class SequenceResource(Resource):
    """Hands out 1, 2, 3... to at most N holders at a time (reference 5.6).

    ``_S_`` is transactional: a value released with rollback (the command failed or was
    killed, or its client vanished) goes to a FIFO and is handed out again before any new
    value.  ``_s_`` never reuses a value.  N = 0 can never be granted (always busy).

    The counter lives in ``state``; with :meth:`keep_in` it lives in a
    :class:`DurableState` instead, which outlives the resource and reports each change.
    """

    slots: int = 0
    transactional: bool = False
    state: SequenceState = field(default_factory=SequenceState)
    durable: DurableState | None = None

    def __post_init__(self) -> None:
        self.slots = int(self.name[self.name.index("[") + 1 : -1])
        self.transactional = self.name.startswith("_S_")

    def keep_in(self, durable: DurableState) -> None:
        """Continue the counter ``durable`` keeps for this name, and report changes to it."""
        self.state = durable.sequence(self.key)
        self.durable = durable

    def verdict(self, request: Request, now: float) -> Verdict:
        return Verdict.GRANTABLE if len(self.holders) < self.slots else Verdict.NOT_NOW

    def take(self, request: Request, now: float) -> str | None:
        state = self.state
        if state.returned:
            value = state.returned.popleft()
        else:
            state.counter += 1
            value = state.counter
        if self.durable is not None:
            self.durable.changed(self.key)
        return str(value)

    def give_back(self, holding: Holding, rollback: bool) -> None:
        if rollback and self.transactional and holding.element is not None:
            self.state.returned.append(int(holding.element))
            if self.durable is not None:
                self.durable.changed(self.key)
