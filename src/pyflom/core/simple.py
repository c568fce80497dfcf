"""Simple resources: one name, six VMS lock modes."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

from ..lockmodes import COMPATIBLE
from .resource import Holding, Request, Resource, Verdict


@dataclass
class SimpleResource(Resource):
    """A named resource locked in one of the six modes (reference 5.2)."""

    held: list[int] = field(default_factory=lambda: [0] * 6)  # holders per mode

    def verdict(self, request: Request, now: float) -> Verdict:
        held = self.held
        row = request.mode
        for mode in range(6):
            if held[mode] and not COMPATIBLE[mode][row]:
                return Verdict.NOT_NOW
        return Verdict.GRANTABLE

    def take(self, request: Request, now: float) -> str | None:
        self.held[request.mode] += 1
        return None

    def give_back(self, holding: Holding, rollback: bool) -> None:
        self.held[holding.request.mode] -= 1

    def class_key(self, request: Request) -> Hashable:
        return request.mode
