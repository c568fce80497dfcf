"""Where the etcd cluster is and how a gateway talks to it: :class:`EtcdConfig`.

Standard library only: a command that merely reads the configuration never imports the
etcd client.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..netaddr import parse_host_port
from ..settings import (
    DEFAULT_ETCD_KEY_PREFIX as DEFAULT_KEY_PREFIX,
)
from ..settings import (
    DEFAULT_ETCD_LEASE_TTL_S as DEFAULT_LEASE_TTL_S,
)
from ..settings import (
    DEFAULT_LOCK_LOSS_GRACE_MS,
)

URL_SCHEME = "etcd://"
DEFAULT_ETCD_PORT = 2379
MEMORY_BACKEND = "memory"
DEFAULT_DIAL_TIMEOUT_S = 5.0
DEFAULT_REQUEST_TIMEOUT_S = 2.0

# The lease rule (docs/ha.md, "Lease TTL and lock-loss grace"). A gateway that cannot
# renew its lease must close its holders' connections in time for their commands to be
# ended (SIGTERM, then SIGKILL after the lock-loss grace) before etcd lets the lease
# expire and grants the lock elsewhere:
#   TTL >= grace + LEASE_MARGIN_S + RENEWAL_WINDOW_S
LEASE_MARGIN_S = 2.0
"""Slack for the client noticing the closed connection, scheduling and clock rates."""
RENEWAL_WINDOW_S = 3.0
"""The least time a gateway keeps trying to renew its lease before it drops its holders."""

Endpoint = tuple[str, int]


def min_lease_ttl_s(lock_loss_grace_ms: int = DEFAULT_LOCK_LOSS_GRACE_MS) -> int:
    """The shortest lease TTL (whole seconds) that is safe with this lock-loss grace."""
    return math.ceil(lock_loss_grace_ms / 1000 + LEASE_MARGIN_S + RENEWAL_WINDOW_S)


def holder_drop_deadline_s(lease_ttl_s: float, lock_loss_grace_ms: int) -> float:
    """How long after sending its last *successful* lease renewal a gateway may go on
    serving its holders: past that it must close their connections (the lease expires at
    the earliest ``lease_ttl_s`` after that renewal was sent)."""
    return lease_ttl_s - lock_loss_grace_ms / 1000 - LEASE_MARGIN_S


def lease_ttl_error(lease_ttl_s: int, lock_loss_grace_ms: int) -> str | None:
    """Why ``lease_ttl_s`` is unsafe with ``lock_loss_grace_ms`` (None if it is safe)."""
    least = min_lease_ttl_s(lock_loss_grace_ms)
    if lease_ttl_s >= least:
        return None
    return (
        f"the etcd lease TTL of {lease_ttl_s} s is too short for a lock-loss grace of "
        f"{lock_loss_grace_ms} ms: a gateway cut off from etcd could not end its holders' "
        f"commands before their locks are granted elsewhere; use a LeaseTTL of at least "
        f"{least} s (grace + {LEASE_MARGIN_S + RENEWAL_WINDOW_S:g} s) or a shorter "
        f"LockLossGrace"
    )


def format_endpoint(endpoint: Endpoint) -> str:
    """``host:port``, with an IPv6 address in brackets."""
    host, port = endpoint
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_endpoints(text: str, where: str = "etcd endpoints") -> tuple[Endpoint, ...]:
    """``h1:2379,h2,[::1]:2379`` (commas or semicolons) as (host, port) pairs; the port is
    2379 when left out. Raises ValueError naming ``where`` and the bad part."""
    items = text.replace(";", ",").split(",")
    if items and not items[-1].strip() and len(items) > 1:
        items = items[:-1]  # a trailing separator, as in a GKeyFile list
    if any(not item.strip() for item in items):
        raise ValueError(f"{where}: an empty endpoint (two commas in a row, or a stray comma)")
    endpoints = tuple(parse_host_port(item, where, DEFAULT_ETCD_PORT) for item in items)
    seen: set[Endpoint] = set()
    for endpoint in endpoints:
        if endpoint in seen:
            raise ValueError(f"{where}: {format_endpoint(endpoint)} is given twice")
        seen.add(endpoint)
    return endpoints


def backend_setting(text: str) -> str | None:
    """The ``[Daemon]/Backend`` value ``text`` means: None for the memory backend
    (``memory`` or empty), else the etcd URL written canonically.  Raises ValueError
    saying what to write."""
    word = text.strip()
    if not word or word.lower() == MEMORY_BACKEND:
        return None
    if not is_etcd_url(word):
        raise ValueError(
            f"backend '{text}' is not known: write {MEMORY_BACKEND} (the default: the daemon "
            f"keeps its locks) or {URL_SCHEME}HOST[:PORT][,HOST[:PORT]...] (an etcd cluster)"
        )
    return URL_SCHEME + ",".join(format_endpoint(e) for e in parse_etcd_url(word))


def key_prefix_setting(text: str) -> str:
    """The ``[Etcd]/KeyPrefix`` value ``text`` means (ending with ``/``).  Raises
    ValueError saying what to write."""
    if not text.startswith("/") or any(ch.isspace() for ch in text):
        raise ValueError(
            f"etcd key prefix '{text}' must start with '/' and contain no blank, "
            f"e.g. {DEFAULT_KEY_PREFIX} or /pyflom/production/"
        )
    return text if text.endswith("/") else text + "/"


def is_etcd_url(text: str) -> bool:
    """True if ``text`` names the etcd backend (``etcd://...``)."""
    return text.lower().startswith(URL_SCHEME)


def parse_etcd_url(url: str) -> tuple[Endpoint, ...]:
    """The endpoints of ``etcd://h1:2379,h2:2379,[::1]:2379`` (port 2379 by default).

    Raises ValueError with a message saying what is wrong and the expected form."""
    form = f"expected {URL_SCHEME}HOST[:PORT][,HOST[:PORT]...]"
    if not is_etcd_url(url):
        raise ValueError(f"backend '{url}' is not an etcd URL: {form}")
    rest = url[len(URL_SCHEME) :]
    if not rest.strip():
        raise ValueError(f"backend '{url}' names no endpoint: {form}")
    if "/" in rest or "?" in rest or "#" in rest:
        raise ValueError(
            f"backend '{url}': a path or query is not supported ({form}); "
            f"set the key prefix with [Etcd]/KeyPrefix"
        )
    if "@" in rest:
        raise ValueError(
            f"backend '{url}': credentials do not belong in the URL; "
            f"use [Etcd]/User and [Etcd]/Password"
        )
    return parse_endpoints(rest, f"backend '{url}'")


@dataclass(frozen=True)
class EtcdConfig:
    """How a gateway reaches its etcd cluster.

    ``endpoints``: (host, port) of the members' client URLs. ``key_prefix``: every key
    pyflom writes starts with it (one prefix per independent lock space). ``lease_ttl_s``:
    the gateway's lease; checked against ``lock_loss_grace_ms`` (the clients'
    [Monitor]/LockLossGrace, from the same system configuration). ``dial_timeout_s``:
    bound on reaching the cluster at start; ``request_timeout_s``: per-attempt deadline
    of one etcd request. TLS: ``ca_file`` (turns TLS on), ``cert_file``/``key_file``
    (client certificate). ``user``/``password``: etcd authentication.
    Invalid values raise ValueError with a message meant for the user.
    """

    endpoints: tuple[Endpoint, ...]
    key_prefix: str = DEFAULT_KEY_PREFIX
    lease_ttl_s: int = DEFAULT_LEASE_TTL_S
    lock_loss_grace_ms: int = DEFAULT_LOCK_LOSS_GRACE_MS
    dial_timeout_s: float = DEFAULT_DIAL_TIMEOUT_S
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    user: str | None = None
    password: str | None = None

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise ValueError("the etcd backend needs at least one endpoint")
        prefix = self.key_prefix
        if not prefix.startswith("/"):
            raise ValueError(f"etcd key prefix '{prefix}' must start with '/'")
        if not prefix.endswith("/"):
            object.__setattr__(self, "key_prefix", prefix + "/")
        error = lease_ttl_error(self.lease_ttl_s, self.lock_loss_grace_ms)
        if error is not None:
            raise ValueError(error)
        for name in ("dial_timeout_s", "request_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"etcd {name} must be positive, not {getattr(self, name)}")
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("etcd client certificate: give both CertFile and KeyFile, or neither")
        if self.cert_file and not self.ca_file:
            raise ValueError(
                "etcd client certificate without CaFile: set [Etcd]/CaFile to the CA that "
                "signed the etcd members' certificates"
            )
        if bool(self.user) != (self.password is not None):
            raise ValueError("etcd authentication: give both User and Password, or neither")

    @property
    def tls(self) -> bool:
        return bool(self.ca_file)

    @property
    def endpoint_names(self) -> tuple[str, ...]:
        """``host:port`` of each endpoint (IPv6 in brackets)."""
        return tuple(format_endpoint(e) for e in self.endpoints)

    @property
    def url(self) -> str:
        """The ``etcd://`` URL of the endpoints."""
        return URL_SCHEME + ",".join(self.endpoint_names)

    def __repr__(self) -> str:  # never print the password
        secret = "***" if self.password is not None else None
        return (
            f"EtcdConfig({self.url}, key_prefix={self.key_prefix!r}, "
            f"lease_ttl_s={self.lease_ttl_s}, tls={self.tls}, user={self.user!r}, "
            f"password={secret})"
        )
