"""Hierarchical resources ``/a/b/c``: a tree of nodes sharing one first level."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from ..lockmodes import COMPATIBLE
from .resource import Holding, Request, Resource, Verdict


def path_of(name: str) -> tuple[str, ...]:
    """``/a/b/c`` → ``("a", "b", "c")``."""
    return tuple(name.split("/")[1:])


def related(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """True when one path is the other or an ancestor of it."""
    shorter = min(len(a), len(b))
    return a[:shorter] == b[:shorter]


@dataclass
class HierarchicalResource(Resource):
    """Every name with the same first level, e.g. ``/a``, ``/a/b``, ``/a/x/y`` (reference
    5.5).  A lock on a node must be compatible, by lock mode, with every holder on its
    ancestors, on the node itself and on its descendants; other branches do not matter."""

    def verdict(self, request: Request, now: float) -> Verdict:
        path = path_of(request.name)
        mode = request.mode
        for holding in self.holders.values():
            held = holding.request
            if not COMPATIBLE[held.mode][mode] and related(path, path_of(held.name)):
                return Verdict.NOT_NOW
        return Verdict.GRANTABLE

    def take(self, request: Request, now: float) -> str | None:
        return None

    def give_back(self, holding: Holding, rollback: bool) -> None:
        pass

    def class_key(self, request: Request) -> Hashable:
        return (request.name, request.mode)
