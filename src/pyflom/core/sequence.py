"""Sequence resources ``_s_name[N]`` and transactional ``_S_name[N]``."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .resource import Holding, Request, Resource, Verdict


@dataclass
class SequenceResource(Resource):
    """Hands out 1, 2, 3... to at most N holders at a time (reference 5.6).

    ``_S_`` is transactional: a value released with rollback (the command failed or was
    killed, or its client vanished) goes to a FIFO and is handed out again before any new
    value.  ``_s_`` never reuses a value.  N = 0 can never be granted (always busy).
    """

    slots: int = 0
    transactional: bool = False
    counter: int = 0
    returned: deque[int] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.slots = int(self.name[self.name.index("[") + 1 : -1])
        self.transactional = self.name.startswith("_S_")

    def verdict(self, request: Request, now: float) -> Verdict:
        return Verdict.GRANTABLE if len(self.holders) < self.slots else Verdict.NOT_NOW

    def take(self, request: Request, now: float) -> str | None:
        if self.returned:
            return str(self.returned.popleft())
        self.counter += 1
        return str(self.counter)

    def give_back(self, holding: Holding, rollback: bool) -> None:
        if rollback and self.transactional and holding.element is not None:
            self.returned.append(int(holding.element))
