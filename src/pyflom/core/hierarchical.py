"""Hierarchical resources ``/a/b/c``: a tree of nodes sharing one first level."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

from ..lockmodes import COMPATIBLE
from .resource import Holding, Request, Resource, Verdict


def path_of(name: str) -> tuple[str, ...]:
    """``/a/b/c`` → ``("a", "b", "c")``."""
    return tuple(name.split("/")[1:])


def related(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """True when one path is the other or an ancestor of it."""
    shorter = min(len(a), len(b))
    return a[:shorter] == b[:shorter]


# CONFLICTS[requested]: bit ``held`` is set when a holder in mode ``held`` blocks it.
CONFLICTS: tuple[int, ...] = tuple(
    sum(1 << held for held in range(6) if not COMPATIBLE[held][requested]) for requested in range(6)
)


class _Node:
    """One node of the holders' trie: who holds it, and who holds something below it.

    ``here``/``below`` count holders per lock mode on the node itself and on its
    descendants; the ``*_mask`` bit of a mode is set while its count is not zero.
    ``count`` is every holder on the node or below: a node at 0 is pruned.
    """

    __slots__ = ("below", "below_mask", "children", "count", "here", "here_mask")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.here = [0] * 6
        self.below = [0] * 6
        self.here_mask = 0
        self.below_mask = 0
        self.count = 0


@dataclass
class HierarchicalResource(Resource):
    """Every name with the same first level, e.g. ``/a``, ``/a/b``, ``/a/x/y`` (reference
    5.5).  A lock on a node must be compatible, by lock mode, with every holder on its
    ancestors, on the node itself and on its descendants; other branches do not matter.

    Holders are indexed in a trie of path components, so a verdict walks the request's
    path once: O(depth), whatever the number of holders.
    """

    _root: _Node = field(default_factory=_Node, repr=False)

    def verdict(self, request: Request, now: float) -> Verdict:
        conflicts = CONFLICTS[request.mode]
        node = self._root
        for part in path_of(request.name):
            child = node.children.get(part)
            if child is None:
                return Verdict.GRANTABLE  # nobody holds this node or anything below it
            node = child
            if node.here_mask & conflicts:  # an ancestor, or the node itself
                return Verdict.NOT_NOW
        if node.below_mask & conflicts:  # a descendant
            return Verdict.NOT_NOW
        return Verdict.GRANTABLE

    def take(self, request: Request, now: float) -> str | None:
        mode, bit = request.mode, 1 << request.mode
        node = self._root
        for part in path_of(request.name):
            node.count += 1
            node.below[mode] += 1
            node.below_mask |= bit
            child = node.children.get(part)
            if child is None:
                child = node.children[part] = _Node()
            node = child
        node.count += 1
        node.here[mode] += 1
        node.here_mask |= bit
        return None

    def give_back(self, holding: Holding, rollback: bool) -> None:
        mode, bit = holding.request.mode, 1 << holding.request.mode
        path = path_of(holding.request.name)
        nodes = [self._root]
        for part in path:
            nodes.append(nodes[-1].children[part])
        target = nodes[-1]
        target.count -= 1
        target.here[mode] -= 1
        if not target.here[mode]:
            target.here_mask &= ~bit
        for node in nodes[:-1]:
            node.count -= 1
            node.below[mode] -= 1
            if not node.below[mode]:
                node.below_mask &= ~bit
        for depth in range(len(path), 0, -1):  # prune what nobody holds any more
            if nodes[depth].count:
                break
            del nodes[depth - 1].children[path[depth - 1]]

    def class_key(self, request: Request) -> Hashable:
        return (request.name, request.mode)
