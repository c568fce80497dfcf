"""Access rules: who may lock which resources, read the status, stop the daemon.

A daemon started with ``--access-rules FILE`` (``[Daemon]/AccessRules``) grants each
request only when a rule of that file allows it; without the option everyone who reaches
the daemon may do everything (FLoM's behaviour).  The file has one rule a line::

    # who             rights              resources (for 'lock' only)
    uid:0             lock,status,stop    *
    uid:alice         lock                db /jobs/ batch*
    gid:staff         status
    net:10.1.0.0/16   lock                /web/
    cn:deployer       lock,stop           *
    *                 status

Who: ``uid:N|NAME`` and ``gid:N|NAME`` (a UNIX-socket client, by the credentials the
kernel gives for the socket: its effective uid, its effective gid or one of its
supplementary groups, as they were when it connected),
``cn:NAME`` (a TLS client, by the CN of its certificate, which the daemon's CA vouches
for), ``net:CIDR`` (a TCP client, by its IP address), ``*`` (anyone).
Rights: ``lock``, ``status``, ``stop`` (``-x`` and ``-X``), comma-separated.
Resources: ``*`` any; ``PREFIX*`` any name that starts with PREFIX (a string prefix:
``/a*`` matches ``/ab``); ``/a/b/`` any hierarchical name below ``/a/b`` (a path
prefix: ``/a/b/c``, not ``/a/b`` itself nor ``/a/bc``); else exactly that name.

Rules only grant (the union of every rule that matches the peer; their order does not
matter): what no rule grants is refused.  :func:`allowed` is the whole decision; the
daemon works out what a connection may do once (:func:`grants_of`) and keeps it.
"""

from __future__ import annotations

import ipaddress
import shlex
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from ..names import resource_type

LOCK = "lock"
STATUS = "status"
STOP = "stop"
RIGHTS = (LOCK, STATUS, STOP)
ANY = "*"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_UCRED = struct.Struct("3i")  # SO_PEERCRED: pid, uid, gid
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)  # Linux >= 4.13: a gid_t array
MAX_PEER_GROUPS = 256  # groups read at most (1024 bytes: the most socket.getsockopt takes)


class AccessRulesError(Exception):
    """The rules file cannot be used: the message names the file, the line and why."""


@dataclass(frozen=True)
class Peer:
    """Who a client is, as the rules see it: its uid and gid (UNIX socket), its
    certificate's CN (TLS), its IP address (TCP); None for what does not apply."""

    uid: int | None = None
    gid: int | None = None
    cn: str | None = None
    address: Address | None = None
    groups: frozenset[int] = frozenset()  # supplementary groups (UNIX socket)

    def describe(self) -> str:
        """``uid 1001 (gid 1001)``, ``127.0.0.1``, ``127.0.0.1 with certificate CN 'x'``."""
        parts = []
        if self.uid is not None:
            parts.append(f"uid {self.uid}" + ("" if self.gid is None else f" (gid {self.gid})"))
        if self.address is not None:
            parts.append(str(self.address))
        if self.cn is not None:
            parts.append(f"certificate CN '{self.cn}'")
        return " with ".join(parts) or "an unknown peer"


@dataclass(frozen=True)
class Rule:
    """One line of the rules file: who (``kind`` and ``value``), the ``rights`` it
    grants, and for ``lock`` the resource patterns."""

    line: int
    kind: str  # "uid", "gid", "cn", "net" or "*"
    value: int | str | Network | None
    rights: frozenset[str]
    resources: tuple[str, ...]

    def concerns(self, peer: Peer) -> bool:
        """Does the rule's "who" match ``peer``?"""
        kind, value = self.kind, self.value
        if kind == ANY:
            return True
        if kind == "uid":
            return peer.uid is not None and peer.uid == value
        if kind == "gid":
            return peer.gid == value or value in peer.groups
        if kind == "cn":
            return peer.cn is not None and peer.cn == value
        assert isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network)
        address = peer.address
        return address is not None and address.version == value.version and address in value


@dataclass(frozen=True)
class Grants:
    """What one peer may do: the union of the rules that match it."""

    status: bool
    stop: bool
    lock: tuple[str, ...]  # resource patterns

    def may_lock(self, name: str) -> bool:
        """May the peer lock the resource ``name``?"""
        return any(matches(pattern, name) for pattern in self.lock)

    def allows(self, right: str, resource: str | None = None) -> bool:
        """May the peer use ``right`` (on ``resource``, for ``lock``)?"""
        if right == LOCK:
            return resource is not None and self.may_lock(resource)
        return self.status if right == STATUS else self.stop


def grants_of(rules: Iterable[Rule], peer: Peer) -> Grants:
    """What ``peer`` may do under ``rules``."""
    rights: set[str] = set()
    patterns: list[str] = []
    for rule in rules:
        if rule.concerns(peer):
            rights |= rule.rights
            if LOCK in rule.rights:
                patterns.extend(p for p in rule.resources if p not in patterns)
    return Grants(STATUS in rights, STOP in rights, tuple(patterns))


def allowed(rules: Iterable[Rule], peer: Peer, right: str, resource: str | None = None) -> bool:
    """May ``peer`` use ``right`` (one of :data:`RIGHTS`; for ``lock``, on the resource
    named ``resource``) under ``rules``?  The whole access decision, pure."""
    return grants_of(rules, peer).allows(right, resource)


def matches(pattern: str, name: str) -> bool:
    """Does the resource pattern ``pattern`` (see the module's doc) cover ``name``?"""
    if pattern == ANY:
        return True
    if pattern.endswith("*"):
        return name.startswith(pattern[:-1])
    if pattern.endswith("/"):
        # A path prefix: strictly below, every further level a real one ('.', '..' and
        # empty levels are refused by the name grammar anyway; never matched here).
        if not name.startswith(pattern) or len(name) == len(pattern):
            return False
        return all(level not in ("", ".", "..") for level in name[len(pattern) :].split("/"))
    return name == pattern


# -- the rules file -----------------------------------------------------------------------

_WHO_FORMS = "uid:N|NAME, gid:N|NAME, cn:NAME, net:CIDR or *"


def parse_rules(text: str, source: str) -> tuple[Rule, ...]:
    """The rules of ``text`` (read from ``source``, named in errors); raises
    :class:`AccessRulesError` naming the line and the problem."""
    rules = []
    for number, raw in enumerate(text.splitlines(), 1):
        try:
            words = shlex.split(raw, comments=True)
        except ValueError as exc:
            raise AccessRulesError(f"{source}:{number}: {exc}") from None
        if not words:
            continue
        try:
            rules.append(_rule(number, words))
        except ValueError as exc:
            raise AccessRulesError(f"{source}:{number}: {exc}") from None
    if not rules:
        raise AccessRulesError(
            f"{source}: no rule: the daemon would refuse everything to everyone (write "
            "'* lock,status,stop *' to allow everyone, or leave --access-rules out)"
        )
    return tuple(rules)


def _rule(line: int, words: list[str]) -> Rule:
    if len(words) < 2:
        raise ValueError(
            f"expected 'WHO RIGHTS [RESOURCES...]', got {' '.join(words)!r} (no rights)"
        )
    who, rights_text, resources = words[0], words[1], tuple(words[2:])
    kind, value = _who(who)
    rights = frozenset(rights_text.split(","))
    unknown = sorted(rights - set(RIGHTS))
    if unknown:
        raise ValueError(
            f"unknown right {unknown[0]!r} (the rights are {', '.join(RIGHTS)}, "
            "comma-separated without blanks)"
        )
    if LOCK in rights and not resources:
        raise ValueError(
            "'lock' needs the resources it grants: one or more names or patterns "
            "('*' for any resource)"
        )
    if LOCK not in rights and resources:
        raise ValueError(
            f"resources ({' '.join(resources)}) are given without the 'lock' right: "
            "'status' and 'stop' concern the whole daemon"
        )
    for pattern in resources:
        _check_pattern(pattern)
    return Rule(line, kind, value, rights, resources)


def _who(text: str) -> tuple[str, int | str | Network | None]:
    if text == ANY:
        return ANY, None
    kind, colon, value = text.partition(":")
    if not colon or not value or kind not in ("uid", "gid", "cn", "net"):
        raise ValueError(f"{text!r} is not a peer: write {_WHO_FORMS}")
    if kind == "cn":
        return kind, value
    if kind == "net":
        try:
            return kind, ipaddress.ip_network(value)
        except ValueError as exc:
            raise ValueError(
                f"{text!r}: {exc} (write an address or a network, e.g. net:10.1.0.0/16)"
            ) from None
    if value.isdigit():
        return kind, int(value)
    return kind, _id_of(kind, value)


def _id_of(kind: str, name: str) -> int:
    """The uid of user ``name`` / the gid of group ``name`` (when the rules are read)."""
    import grp
    import pwd

    try:
        return pwd.getpwnam(name).pw_uid if kind == "uid" else grp.getgrnam(name).gr_gid
    except KeyError:
        what = "user" if kind == "uid" else "group"
        raise ValueError(
            f"no {what} named {name!r} on this host (give its number: {kind}:N)"
        ) from None


def _check_pattern(pattern: str) -> None:
    if pattern == ANY:
        return
    if "*" in pattern[:-1]:
        raise ValueError(
            f"resource pattern {pattern!r}: '*' may only end a pattern (a prefix) or "
            "stand alone (any resource)"
        )
    if pattern.endswith("*"):
        return
    if pattern.endswith("/"):
        if resource_type(pattern[:-1]) is None or not pattern.startswith("/"):
            raise ValueError(
                f"resource pattern {pattern!r}: a path prefix is a hierarchical name "
                "followed by '/' (e.g. /jobs/ for every name below /jobs)"
            )
        return
    if resource_type(pattern) is None:
        raise ValueError(
            f"{pattern!r} is not a resource name (write an exact name, PREFIX* for a "
            "prefix, /path/ for the names below a path, or * for any resource)"
        )


@dataclass(frozen=True)
class AccessRules:
    """The rules of one file, as read at start (or at the last SIGHUP)."""

    path: str
    rules: tuple[Rule, ...]

    @classmethod
    def load(cls, path: str) -> AccessRules:
        """Read and check ``path``; raises :class:`AccessRulesError` saying why not."""
        try:
            with open(path, encoding="utf-8") as file:
                text = file.read()
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise AccessRulesError(f"cannot read the access rules file '{path}': {why}") from None
        return cls(path, parse_rules(text, path))


def peer_of(sock: socket.socket, common_name: str | None) -> Peer:
    """Who is behind ``sock`` (``common_name``: its TLS certificate's CN, if any)."""
    if sock.family == socket.AF_UNIX:
        try:
            _, uid, gid = _UCRED.unpack(
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
            )
        except OSError:
            return Peer(cn=common_name)
        return Peer(uid=uid, gid=gid, cn=common_name, groups=_peer_groups(sock))
    try:
        address: Address | None = ipaddress.ip_address(sock.getpeername()[0].split("%")[0])
    except (OSError, ValueError):
        address = None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # a dual-stack listener's IPv4 client
    return Peer(address=address, cn=common_name)


def _peer_groups(sock: socket.socket) -> frozenset[int]:
    """The supplementary groups of a UNIX-socket client when it connected (empty where
    the kernel does not tell them)."""
    try:
        data = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 4 * MAX_PEER_GROUPS)
    except OSError:
        return frozenset()
    return frozenset(struct.unpack(f"{len(data) // 4}I", data[: len(data) // 4 * 4]))
