"""The daemon's Prometheus endpoint (``--metrics=HOST:PORT``): prometheus_client's own
WSGI application, served from the daemon's event loop.

Imported only by a daemon started with ``--metrics`` (it loads prometheus_client, the
``metrics`` extra).  A scrape runs the collectors on the loop, so they read the
daemon's state without locks or threads; what they build is bounded (label sets of
types, modes, reason codes and TLS classes).  A scraper cannot hold up lock handling:
one request per connection, read within the daemon's stall timeout (10 s, as for its
clients) and :data:`MAX_REQUEST_BYTES`, the answer written without waiting (a reader
that has not taken it within the stall timeout is cut off), at most :data:`MAX_SCRAPES`
at once.  Only ``/metrics`` and ``/`` are served.
"""

from __future__ import annotations

import asyncio
import platform
import socket
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import make_wsgi_app
from prometheus_client.registry import Collector

from .. import __version__
from ..netaddr import show
from .log import DaemonLog
from .metrics import DaemonMetrics, Histogram

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .server import LockDaemon

PATHS = ("/metrics", "/")
MAX_REQUEST_BYTES = 8192  # request line and headers
MAX_SCRAPES = 8  # connections served at once; more are closed at once


class DaemonCollector(Collector):
    """The daemon's metric families, made from its counts and state when scraped."""

    def __init__(self, metrics: DaemonMetrics, daemon: LockDaemon) -> None:
        self.metrics = metrics
        self.daemon = daemon

    def collect(self) -> Iterator[Metric]:
        metrics, daemon = self.metrics, self.daemon
        yield _counter(
            "flom_grants",
            "Locks granted, by resource type and lock mode",
            ("type", "mode"),
            metrics.grants,
        )
        yield _counter(
            "flom_releases",
            "Locks released, by resource type, lock mode and how (unlock, disconnect)",
            ("type", "mode", "how"),
            metrics.releases,
        )
        yield _counter(
            "flom_refusals",
            "Lock requests refused, by reason code name, resource type and lock mode",
            ("reason", "type", "mode"),
            metrics.refusals,
        )
        yield _counter(
            "flom_waits_abandoned",
            "Waiting lock requests whose client left (a timeout, a signal)",
            ("type", "mode"),
            metrics.abandoned,
        )
        yield _histogram(
            "flom_lock_wait_seconds",
            "Time from a lock request to its grant",
            metrics.wait,
        )
        holding = waiting = 0
        what = daemon.backend.what
        for conn_id in daemon.connections:
            state = what(conn_id)
            if state is not None:
                if state[1] == "holding":
                    holding += 1
                else:
                    waiting += 1
        yield GaugeMetricFamily("flom_holders", "Connections holding a lock", value=holding)
        yield GaugeMetricFamily(
            "flom_waiters",
            "Connections waiting for a lock (or for its resource to be created)",
            value=waiting,
        )
        yield GaugeMetricFamily(
            "flom_connections", "Client connections open", value=len(daemon.connections)
        )
        resources = getattr(daemon.backend, "resources", None)
        if resources is not None:  # the memory backend
            yield GaugeMetricFamily(
                "flom_resources", "Live resources in the daemon's memory", value=len(resources)
            )
        yield _counter(
            "flom_tls_handshake_failures",
            "Client TLS failures, by diagnosis class (docs/tls-troubleshooting.md)",
            ("class",),
            {(ident,): count for ident, count in metrics.tls_failures.items()},
        )
        if daemon.state is not None:
            sync = HistogramMetricFamily(
                "flom_state_file_sync_seconds",
                "State file writes made durable: append (write, fdatasync) or rewrite",
                labels=("op",),
            )
            for op in ("append", "rewrite"):
                histogram = metrics.state_sync.get(op)
                if histogram is not None:
                    sync.add_metric([op], _buckets(histogram), histogram.total)
            yield sync
        info = GaugeMetricFamily(
            "flom_build_info",
            "pyflom version, Python version and lock backend of this daemon",
            labels=("version", "python", "backend"),
        )
        backend = "memory" if daemon.etcd is None else "etcd"
        info.add_metric([__version__, platform.python_version(), backend], 1)
        yield info


def _counter(
    name: str, documentation: str, labels: tuple[str, ...], counts: dict[Any, int]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for key, count in sorted(counts.items()):
        family.add_metric(list(key), count)
    return family


def _buckets(histogram: Histogram) -> list[tuple[str, float]]:
    """Prometheus's ``le`` labels: ``0.5``, ``1.0``, ``+Inf``."""
    return [
        ("+Inf" if bound == float("inf") else repr(bound), count)
        for bound, count in histogram.cumulative()
    ]


def _histogram(name: str, documentation: str, histogram: Histogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(
        name, documentation, buckets=_buckets(histogram), sum_value=histogram.total
    )


def registry_of(metrics: DaemonMetrics, daemon: LockDaemon) -> CollectorRegistry:
    """A registry of the daemon's own (none of the process-wide default registry's):
    its metric families, the process's (CPU, memory, descriptors, start time) and
    Python's version."""
    registry = CollectorRegistry(auto_describe=True)  # names known: ?name[]= filters
    registry.register(DaemonCollector(metrics, daemon))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


class MetricsServer:
    """Serves ``/metrics`` on the daemon's loop from ``listeners``."""

    def __init__(
        self,
        listeners: list[socket.socket],
        registry: CollectorRegistry,
        log: DaemonLog,
        timeout_s: float,
    ) -> None:
        self.listeners = listeners
        self.app = make_wsgi_app(registry)
        self.log = log
        self.timeout_s = timeout_s  # to read a request, and to write its answer
        self.active = 0
        self._servers: list[asyncio.AbstractServer] = []

    @classmethod
    async def serve(cls, daemon: LockDaemon, listeners: list[socket.socket]) -> MetricsServer:
        """Count ``daemon``'s events (a :class:`DaemonMetrics` as ``daemon.metrics``, its
        state file's syncs) and serve them on ``listeners``."""
        metrics = daemon.metrics = DaemonMetrics()
        if daemon.state is not None:
            daemon.state.on_sync = metrics.state_synced
        registry = registry_of(metrics, daemon)
        server = cls(listeners, registry, daemon.log, daemon.options.stall_timeout_s)
        await server.start()
        return server

    async def start(self) -> None:
        """Accept scrapes (the listeners are bound already: :func:`.metrics.open_endpoint`)."""
        for listener in self.listeners:
            server = await asyncio.start_server(self._serve, sock=listener, limit=MAX_REQUEST_BYTES)
            self._servers.append(server)
            self.log.notice(
                f"FLM093N serving Prometheus metrics at http://{show(listener.getsockname())}"
                "/metrics"
            )

    def close(self) -> None:
        """Stop accepting scrapes."""
        for server in self._servers:
            server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.active >= MAX_SCRAPES:
            writer.transport.abort()
            return
        self.active += 1
        try:
            async with asyncio.timeout(self.timeout_s):
                head = await reader.readuntil(b"\r\n\r\n")
            writer.write(self.respond(head))
            async with asyncio.timeout(self.timeout_s):
                await writer.drain()
            writer.close()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            writer.transport.abort()  # slow, oversized or gone: no answer
        finally:
            self.active -= 1

    def respond(self, head: bytes) -> bytes:
        """The whole HTTP response to the request ``head`` (request line and headers)."""
        lines = head.decode("latin-1").split("\r\n")
        words = lines[0].split(" ")
        if len(words) != 3 or not words[2].startswith("HTTP/1."):
            return _response("400 Bad Request", [], b"a HTTP/1.x request line was expected\n")
        method, target, _ = words
        path, _, query = target.partition("?")
        if path not in PATHS:
            return _response("404 Not Found", [], b"only /metrics is served here\n")
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "SERVER_PROTOCOL": "HTTP/1.1",
        }
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if colon and name.strip().lower() in ("accept", "accept-encoding"):
                environ["HTTP_" + name.strip().upper().replace("-", "_")] = value.strip()
        answer: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]]) -> None:
            answer[:] = [status, headers]

        try:
            body = b"".join(self.app(environ, start_response))
        except Exception as exc:
            self.log.error(f"FLM094E metrics scrape failed: {type(exc).__name__}: {exc}")
            return _response("500 Internal Server Error", [], b"see the daemon's log\n")
        status, headers = answer
        return _response(status, headers, b"" if method == "HEAD" else body)


def _response(status: str, headers: Iterable[tuple[str, str]], body: bytes) -> bytes:
    lines = [f"HTTP/1.1 {status}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if not any(name.lower() == "content-type" for name, _ in headers):
        lines.append("Content-Type: text/plain; charset=utf-8")
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + body
