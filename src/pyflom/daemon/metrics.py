"""What a daemon started with ``--metrics=HOST:PORT`` counts for Prometheus.

The daemon calls :class:`DaemonMetrics` from its event loop, and only when metrics are
on (``daemon.metrics`` is None otherwise: one attribute test per event).  The counts are
plain Python numbers; :mod:`pyflom.daemon.exporter` turns them into metric families
when a scraper asks, on the same loop, so nothing here takes a lock or imports
prometheus_client.  Label sets are bounded: resource type, lock mode, reason code name,
TLS failure class, never a resource name.
"""

from __future__ import annotations

import errno
import functools
import socket
import time
from bisect import bisect_left

from .. import rc as _rc
from ..lockmodes import LockMode
from ..names import resource_type, uses_lock_mode
from ..netaddr import parse_host_port, show

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..core.resource import ConnId
    from ..core.table import Answer

WHERE = "--metrics / [Daemon]/MetricsAddress"
WAIT_BUCKETS_S = (0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)
SYNC_BUCKETS_S = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
INVALID = "invalid"  # the type label of a name that is no resource's
LABELS_CACHED = 4096  # (name, mode) pairs whose labels are remembered
_MODE_NAMES = tuple(mode.name for mode in sorted(LockMode))
_NOT_FINAL = frozenset((_rc.LOCK_ENQUEUED, _rc.LOCK_WAIT_RESOURCE))  # the request waits
_RC_NAMES = {
    value: name
    for name, value in vars(_rc).items()
    if name.isupper() and not name.startswith(("ES_", "_")) and type(value) is int
}

LISTEN_BACKLOG = 16
_NOT_HERE = frozenset((errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT))  # an address family off

Labels = tuple[str, str]  # (resource type, lock mode)


class MetricsSetupError(Exception):
    """The metrics endpoint cannot be opened: ``ident`` (FLM09xE) and, as the text, why
    and what to do."""

    def __init__(self, ident: str, reason: str) -> None:
        super().__init__(reason)
        self.ident = ident


def open_endpoint(address: str) -> list[socket.socket]:
    """Check that metrics can be served at ``address`` (``--metrics``) and listen there.
    Raises :class:`MetricsSetupError`: FLM090E without prometheus_client, FLM091E for
    an address that is not ``HOST:PORT``, FLM092E when it cannot be listened on."""
    try:
        host, port = parse_host_port(address, WHERE)
    except ValueError as exc:
        raise MetricsSetupError("FLM091E", str(exc)) from None
    try:
        import prometheus_client  # noqa: F401  (the extra; loaded for real by exporter.py)
    except ImportError as exc:
        raise MetricsSetupError("FLM090E", missing_extra_message(address, exc)) from None
    return open_listeners(host, port)


def missing_extra_message(address: str, exc: ImportError) -> str:
    """Why a daemon asked for metrics without prometheus_client does not start."""
    return (
        f"cannot serve metrics at {address}: the Python package prometheus_client is not "
        f"installed ({exc}); install it where pyflom runs with pip install 'pyflom[metrics]', "
        f"or leave out {WHERE}"
    )


def open_listeners(host: str, port: int) -> list[socket.socket]:
    """Listen on every address ``host`` names, port ``port`` (an address of a family the
    host lacks is skipped when another one works).  Raises :class:`MetricsSetupError`."""
    where = show((host, port))
    try:
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise MetricsSetupError(
            "FLM092E",
            f"cannot serve metrics at {where}: cannot resolve '{host}': "
            f"{getattr(exc, 'strerror', None) or exc}",
        ) from None
    addresses = list(dict.fromkeys((info[0], info[4]) for info in infos))
    families = {family for family, _ in addresses}
    listeners: list[socket.socket] = []
    failure: OSError | None = None
    for family, sockaddr in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and len(families) > 1:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
            sock.listen(LISTEN_BACKLOG)
        except OSError as exc:
            sock.close()
            if exc.errno in _NOT_HERE and len(addresses) > 1:
                failure = failure or exc
                continue
            for listener in listeners:
                listener.close()
            raise MetricsSetupError("FLM092E", _bind_failure(where, exc)) from None
        listeners.append(sock)
    if not listeners:
        raise MetricsSetupError("FLM092E", _bind_failure(where, failure))
    return listeners


def _bind_failure(where: str, exc: OSError | None) -> str:
    if exc is not None and exc.errno == errno.EADDRINUSE:
        return (
            f"cannot serve metrics at {where}: the port is already in use (another daemon "
            "or program listens there); give each daemon its own --metrics port"
        )
    reason = "no usable address" if exc is None else exc.strerror or str(exc)
    return f"cannot serve metrics at {where}: {reason}"


def rc_name(code: int) -> str:
    """The FLoM reason code ``code`` by name (``LOCK_BUSY``), its number when unknown."""
    return _RC_NAMES.get(code, str(code))


@functools.lru_cache(maxsize=LABELS_CACHED)
def labels_of(name: str, mode: int | None) -> Labels:
    """The (type, mode) labels of a request for ``name`` in ``mode``: the mode the lock
    table applies (EX where modes do not apply, NL when none was sent)."""
    found = resource_type(name)
    kind: str = INVALID if found is None else found
    if found is not None and not uses_lock_mode(found):
        return kind, "EX"
    if mode is None:
        return kind, "NL"
    return kind, _MODE_NAMES[mode] if 0 <= mode < len(_MODE_NAMES) else str(mode)


class Histogram:
    """Observations counted in buckets (upper bounds ``bounds``, then +Inf) and summed."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        """Count ``value`` (seconds) in the first bucket whose bound it does not pass."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations up to it) pairs, +Inf last, as Prometheus wants."""
        pairs, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            pairs.append((bound, running))
        return pairs


class DaemonMetrics:
    """The daemon's counters and histograms, fed by its event hooks."""

    __slots__ = (
        "_asked",
        "_held",
        "abandoned",
        "grants",
        "refusals",
        "releases",
        "state_sync",
        "tls_failures",
        "wait",
    )

    def __init__(self) -> None:
        self.grants: dict[Labels, int] = {}
        self.releases: dict[tuple[str, str, str], int] = {}  # (type, mode, how)
        self.refusals: dict[tuple[str, str, str], int] = {}  # (reason, type, mode)
        self.abandoned: dict[Labels, int] = {}  # waiters whose connection ended
        self.tls_failures: dict[str, int] = {}  # by diagnosis class (TLS-...)
        self.wait = Histogram(WAIT_BUCKETS_S)  # from the request to its grant
        self.state_sync: dict[str, Histogram] = {}  # "append" / "rewrite"
        self._asked: dict[ConnId, tuple[float, Labels]] = {}  # requests not answered yet
        self._held: dict[ConnId, Labels] = {}  # what each holder holds

    # -- lock events ---------------------------------------------------------------------
    def asked(self, conn: ConnId, name: str, mode: int | None) -> None:
        """A lock request came on ``conn``."""
        self._asked[conn] = (time.monotonic(), labels_of(name, mode))

    def answered(self, answers: list[Answer]) -> None:
        """The answers the daemon sends: grants and refusals end a request (a queued
        one goes on waiting).  A request no longer known (its connection ended) is
        not counted: its answer goes nowhere either."""
        asked, now = self._asked, time.monotonic()
        for answer in answers:
            code = answer.rc
            if code in _NOT_FINAL:
                continue
            entry = asked.pop(answer.conn, None)
            if entry is None:
                continue
            since, labels = entry
            if code == _rc.OK:
                grants = self.grants
                grants[labels] = grants.get(labels, 0) + 1
                self._held[answer.conn] = labels
                wait, waited = self.wait, now - since  # Histogram.observe, inlined
                wait.counts[bisect_left(wait.bounds, waited)] += 1
                wait.total += waited
            else:
                key = (rc_name(code), *labels)
                self.refusals[key] = self.refusals.get(key, 0) + 1

    def refused(
        self, conn: ConnId, code: int, name: str | None = None, mode: int | None = None
    ) -> None:
        """A lock request refused outside the lock table (access rules, lock-delay,
        a stopping daemon): the one :meth:`asked` saw, else ``name`` in ``mode``."""
        entry = self._asked.pop(conn, None)
        if entry is not None:
            labels = entry[1]
        elif name is not None:
            labels = labels_of(name, mode)
        else:
            return
        key = (rc_name(code), *labels)
        self.refusals[key] = self.refusals.get(key, 0) + 1

    def released(self, conn: ConnId, how: str = "unlock") -> None:
        """``conn`` released its lock: by an unlock request, or ``"disconnect"``."""
        labels = self._held.pop(conn, None)
        if labels is not None:
            key = (*labels, how)
            self.releases[key] = self.releases.get(key, 0) + 1

    def gone(self, conn: ConnId) -> None:
        """``conn`` ended: what it held is released, what it waited for abandoned."""
        entry = self._asked.pop(conn, None)
        if entry is not None:
            labels = entry[1]
            self.abandoned[labels] = self.abandoned.get(labels, 0) + 1
        if conn in self._held:
            self.released(conn, "disconnect")

    # -- other events --------------------------------------------------------------------
    def tls_failed(self, ident: str) -> None:
        """A client's TLS failed, of diagnosis class ``ident`` (``TLS-UNTRUSTED-PEER``)."""
        self.tls_failures[ident] = self.tls_failures.get(ident, 0) + 1

    def state_synced(self, op: str, seconds: float) -> None:
        """The state file took ``seconds`` to ``op`` (append and fdatasync, or rewrite)."""
        histogram = self.state_sync.get(op)
        if histogram is None:
            histogram = self.state_sync[op] = Histogram(SYNC_BUCKETS_S)
        histogram.observe(seconds)
