"""The daemon's status document: every resource, its holders and its waiters.

One plain dict (JSON-ready) built from the lock table and the connections, the single
source of ``flom --status`` and the status file system (``-m``).  Its shape, version 1::

    {"pyflom_status": 1,
     "daemon": {"pid", "peer_id", "started", "now", "connections", "lifespan_ms", "tls"},
     "resources": [{"id", "name", "type", "holders": [...], "waiters": [...]}],
     "incubator": [{"connection", "peer", ..., "name", "type", "since", "waiting_s"}]}

Every holder and waiter has ``connection`` (the daemon's number for it), ``peer``
(FLoM's peer name: ``ip/port``, or ``localhost/`` on a UNIX socket), ``pid`` and
``user`` (the client process and its uid, UNIX sockets only, else null),
``certificate_cn`` (TLS), ``name`` (the requested name: hierarchical requests differ
from their resource's), ``mode`` (short lock-mode name, simple and hierarchical
resources, else null) and ``quantity`` (numeric resources, else null).  Holders add
``element``, ``generation``, ``since`` and ``held_s``; waiters ``position`` (1 = next)
``since`` and ``waiting_s``.  Times are seconds since the epoch.
"""

from __future__ import annotations

import os
import socket
import struct

from ..lockmodes import LockMode
from ..names import ResourceType, locker_key, resource_type, uses_lock_mode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..core.resource import Request
    from .connection import ClientConnection
    from .server import LockDaemon

STATUS_VERSION = 1
_UCRED = struct.Struct("3i")  # pid, uid, gid


def peer_name(sock: socket.socket) -> str:
    """FLoM's name for a client: ``ip/port`` over TCP, ``localhost/`` on a UNIX socket."""
    try:
        if sock.family == socket.AF_UNIX:
            return "localhost/"
        host, port = sock.getpeername()[:2]
    except OSError:
        return "?"
    return f"{host}/{port}"


def peer_process(sock: socket.socket) -> tuple[int | None, int | None]:
    """The (pid, uid) of a UNIX-socket client, (None, None) otherwise."""
    if sock.family != socket.AF_UNIX:
        return None, None
    try:
        pid, uid, _ = _UCRED.unpack(
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        )
    except OSError:
        return None, None
    return pid, uid


class _Peers:
    """Who each connection is, worked out once per connection and document."""

    def __init__(self, connections: dict[int, ClientConnection]) -> None:
        self._connections = connections
        self._known: dict[object, dict[str, object]] = {}

    def __call__(self, conn_id: object) -> dict[str, object]:
        known = self._known.get(conn_id)
        if known is None:
            conn = self._connections.get(conn_id)  # type: ignore[call-overload]
            if conn is None:
                known = {"peer": "?", "pid": None, "user": None, "certificate_cn": None}
            else:
                pid, uid = peer_process(conn.sock)
                known = {
                    "peer": peer_name(conn.sock),
                    "pid": pid,
                    "user": uid,
                    "certificate_cn": conn.peer_common_name,
                }
            self._known[conn_id] = known
        return known


def _request_fields(kind: str, request: Request) -> dict[str, object]:
    return {
        "name": request.name,
        "mode": LockMode(request.mode).name if uses_lock_mode(kind) else None,
        "quantity": request.quantity if kind == ResourceType.NUMERIC else None,
    }


def build_status(daemon: LockDaemon, now: float, resource: str | None = None) -> dict[str, object]:
    """The status document of ``daemon`` at ``now`` (epoch seconds); with ``resource``,
    only the resource that name locks (and its incubated requests)."""
    table = daemon.table
    peers = _Peers(daemon.connections)
    only = None
    if resource is not None:
        kind = resource_type(resource)
        only = "" if kind is None else locker_key(resource, kind)
    resources = []
    selected = table.resources.values() if only is None else [table.resources.get(only)]
    for res in selected:
        if res is None:
            continue
        kind = res.kind or resource_type(res.name) or ResourceType.SIMPLE
        holders = []
        for conn_id, holding in res.holders.items():
            entry = dict(peers(conn_id))
            entry["connection"] = conn_id
            entry.update(_request_fields(kind, holding.request))
            entry["element"] = holding.element
            entry["generation"] = holding.generation
            entry["since"] = holding.since
            entry["held_s"] = round(max(0.0, now - holding.since), 6)
            holders.append(entry)
        waiters = []
        # ``waiting`` keeps arrival order, which is the order of the queue.
        for position, (conn_id, waiter) in enumerate(res.waiting.items(), 1):
            entry = dict(peers(conn_id))
            entry["connection"] = conn_id
            entry.update(_request_fields(kind, waiter.request))
            entry["position"] = position
            entry["since"] = waiter.since
            entry["waiting_s"] = round(max(0.0, now - waiter.since), 6)
            waiters.append(entry)
        resources.append(
            {"id": res.uid, "name": res.name, "type": kind, "holders": holders, "waiters": waiters}
        )
    incubator = []
    for conn_id, request, since in table.incubating():
        kind = resource_type(request.name) or ResourceType.SIMPLE
        if only is not None and locker_key(request.name, kind) != only:
            continue
        entry = dict(peers(conn_id))
        entry["connection"] = conn_id
        entry.update(_request_fields(kind, request))
        entry["type"] = kind
        entry["since"] = since
        entry["waiting_s"] = round(max(0.0, now - since), 6)
        incubator.append(entry)
    return {
        "pyflom_status": STATUS_VERSION,
        "daemon": {
            "pid": os.getpid(),
            "peer_id": daemon.peer_id,
            "started": daemon.started,
            "now": now,
            "connections": len(daemon.connections),
            "lifespan_ms": daemon.lifespan_ms,
            "tls": daemon.tls is not None,
        },
        "resources": resources,
        "incubator": incubator,
    }
