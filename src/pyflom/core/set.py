"""Set resources ``a.b.c``: each lock gets one free element of the set."""

from __future__ import annotations

from dataclasses import dataclass, field

from .resource import Holding, Request, Resource, Verdict


@dataclass
class SetResource(Resource):
    """One element per holder, handed out round-robin as FLoM does (reference 5.4): a
    rotating index moves one step after every grant, and a grant takes the first free
    element searching cyclically from it.  Duplicate names are distinct elements."""

    elements: list[str] = field(default_factory=list)
    taken: list[bool] = field(default_factory=list)
    index: int = 0

    def __post_init__(self) -> None:
        self.elements = self.name.split(".")
        self.taken = [False] * len(self.elements)

    def verdict(self, request: Request, now: float) -> Verdict:
        return Verdict.NOT_NOW if all(self.taken) else Verdict.GRANTABLE

    def take(self, request: Request, now: float) -> str | None:
        size = len(self.elements)
        for step in range(size):
            slot = (self.index + step) % size
            if not self.taken[slot]:
                break
        self.taken[slot] = True
        self.index = (self.index + 1) % size
        return self.elements[slot]

    def give_back(self, holding: Holding, rollback: bool) -> None:
        for slot, element in enumerate(self.elements):
            if element == holding.element and self.taken[slot]:
                self.taken[slot] = False
                return
