"""A light base for value objects with slots: equality, hash and repr from the fields.

Hand-written instead of ``@dataclass``: the command imports its users (the codec, the
command line) on every run, and dataclasses (with ``inspect``) would cost more than
the lock round trip.
"""

from __future__ import annotations


class Record:
    """Fields are the ``__slots__``; equal records have equal fields (same class)."""

    __slots__: tuple[str, ...] = ()

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash((type(self).__name__, *self._fields()))

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({args})"
