"""Numeric resources ``name[N]``: a pool of N units; a lock takes ``quantity`` of them."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from .resource import Holding, Request, Resource, Verdict


@dataclass
class NumericResource(Resource):
    """A counting semaphore of N units (reference 5.3).  A request for more units than
    the pool has can never be granted (``NEVER``: FLoM's rc 6, whatever ``wait`` says);
    a small request may overtake a big queued one under FLoM's grant order."""

    capacity: int = 0
    used: int = 0

    def __post_init__(self) -> None:
        self.capacity = int(self.name[self.name.index("[") + 1 : -1])

    def verdict(self, request: Request, now: float) -> Verdict:
        if request.quantity > self.capacity:
            return Verdict.NEVER
        if self.capacity - self.used >= request.quantity:
            return Verdict.GRANTABLE
        return Verdict.NOT_NOW

    def take(self, request: Request, now: float) -> str | None:
        self.used += request.quantity
        return None

    def give_back(self, holding: Holding, rollback: bool) -> None:
        self.used -= holding.request.quantity

    def class_key(self, request: Request) -> Hashable:
        return request.quantity
