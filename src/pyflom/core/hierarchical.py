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

    ``counts[mode]`` counts holders in ``mode`` on the node itself, ``counts[6 + mode]``
    on its descendants; bit ``mode`` of ``here_mask``/``below_mask`` is set while the
    count is not zero.  A node with both masks at 0 holds nothing and is pruned.
    ``children`` is created with the first child.  The root (the empty path) counts
    nothing: every name has at least one component.
    """

    __slots__ = ("below_mask", "children", "counts", "here_mask")

    def __init__(self) -> None:
        self.children: dict[str, _Node] | None = None
        self.counts = [0] * 12
        self.here_mask = 0
        self.below_mask = 0


@dataclass
class HierarchicalResource(Resource):
    """Every name with the same first level, e.g. ``/a``, ``/a/b``, ``/a/x/y`` (reference
    5.5).  A lock on a node must be compatible, by lock mode, with every holder on its
    ancestors, on the node itself and on its descendants; other branches do not matter.

    Holders are indexed in a trie of path components, so a verdict walks the request's
    path once: O(depth), whatever the number of holders.
    """

    _root: _Node = field(default_factory=_Node, repr=False)
    _parsed: tuple[str, tuple[str, ...]] = ("", ())  # the last name parsed, and its path

    def _path(self, name: str) -> tuple[str, ...]:
        """``path_of(name)``; a grant parses the same name twice (verdict, take)."""
        parsed = self._parsed
        if parsed[0] == name:
            return parsed[1]
        path = path_of(name)
        self._parsed = (name, path)
        return path

    def verdict(self, request: Request, now: float) -> Verdict:
        conflicts = CONFLICTS[request.mode]
        node = self._root
        parsed = self._parsed
        for part in parsed[1] if parsed[0] == request.name else self._path(request.name):
            children = node.children
            if children is None or (child := children.get(part)) is None:
                return Verdict.GRANTABLE  # nobody holds this node or anything below it
            node = child
            if node.here_mask & conflicts:  # an ancestor, or the node itself
                return Verdict.NOT_NOW
        if node.below_mask & conflicts:  # a descendant
            return Verdict.NOT_NOW
        return Verdict.GRANTABLE

    def take(self, request: Request, now: float) -> str | None:
        mode = request.mode
        bit = 1 << mode
        below = 6 + mode
        parent = self._root
        node = None
        parsed = self._parsed
        for part in parsed[1] if parsed[0] == request.name else self._path(request.name):
            if node is not None:  # an ancestor of the node taken
                node.counts[below] += 1
                node.below_mask |= bit
                parent = node
            children = parent.children
            if children is None:
                children = parent.children = {}
            node = children.get(part)
            if node is None:
                node = children[part] = _Node()
        assert node is not None
        node.counts[mode] += 1
        node.here_mask |= bit
        return None

    def give_back(self, holding: Holding, rollback: bool) -> None:
        mode = holding.request.mode
        bit = 1 << mode
        below = 6 + mode
        path = self._path(holding.request.name)
        nodes = [self._root]
        for part in path:
            children = nodes[-1].children
            assert children is not None
            nodes.append(children[part])
        target = nodes[-1]
        target.counts[mode] -= 1
        if not target.counts[mode]:
            target.here_mask &= ~bit
        for node in nodes[1:-1]:
            node.counts[below] -= 1
            if not node.counts[below]:
                node.below_mask &= ~bit
        for depth in range(len(path), 0, -1):  # prune what nobody holds any more
            node = nodes[depth]
            if node.here_mask or node.below_mask:
                break
            parent = nodes[depth - 1]
            assert parent.children is not None
            del parent.children[path[depth - 1]]
            if not parent.children:
                parent.children = None

    def class_key(self, request: Request) -> Hashable:
        return (request.name, request.mode)
