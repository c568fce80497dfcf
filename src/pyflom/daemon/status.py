"""The daemon's status document: every resource, its holders and its waiters.

One JSON document (:func:`status_slices`, or :func:`encode_status` at once) built from
the lock table and the connections, the single source of ``flom --status`` and the
status file system (``-m``).  Its shape, version 1::

    {"pyflom_status": 1,
     "daemon": {"pid", "peer_id", "started", "now", "connections", "lifespan_ms", "tls",
                "lock_delay_s"},
     "resources": [{"id", "name", "type", "holders": [...], "waiters": [...]}],
     "incubator": [{"connection", "peer", ..., "name", "type", "since", "waiting_s"}]}

Every holder and waiter has ``connection`` (the daemon's number for it), ``peer``
(FLoM's peer name: ``ip/port``, or ``localhost/`` on a UNIX socket), ``pid`` and
``user`` (the client process and its uid, UNIX sockets only, else null),
``certificate_cn`` (TLS), ``name`` (the requested name: hierarchical requests differ
from their resource's), ``mode`` (short lock-mode name, simple and hierarchical
resources, else null) and ``quantity`` (numeric resources, else null).  ``lock_delay_s``
is the time left of the daemon's lock-delay (it grants nothing: its predecessor died
holding locks), null when none.  Holders add
``element``, ``generation``, ``since`` and ``held_s``; waiters ``position`` (1 = next)
``since`` and ``waiting_s``.  Times are seconds since the epoch.  A peer that the
daemon's access rules let lock some resources but not read the whole status gets only
those resources' part, and ``daemon`` then has ``"view": "lockable"`` (docs/access.md).

The JSON text is written directly, not through dicts and :func:`json.dumps`: a queue of
10000 waiters is then encoded in a few tens of milliseconds, in slices between which the
daemon serves other clients.  Who a connection is (its peer, process and uid) is worked out once in
its life.  The text is what ``json.dumps(document, separators=(",", ":"))`` would give
(ASCII, members in the order above), but for ``held_s`` and ``waiting_s``, written
with six decimals (the same numbers: they are rounded to the microsecond).
"""

from __future__ import annotations

import json
import math
import os
import socket
import struct
from json.encoder import encode_basestring_ascii as _string
from typing import Any, Protocol

from ..core.table import LockTable
from ..lockmodes import LockMode
from ..names import ResourceType, locker_key, resource_type, uses_lock_mode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ..core.backend import LockBackend
    from ..core.resource import Request
    from .connection import ClientConnection
    from .tls import DaemonTls


class DaemonView(Protocol):
    """What the status document shows of a daemon (the server; never imported here)."""

    backend: LockBackend
    connections: dict[int, ClientConnection]
    peer_id: str
    started: float
    lifespan_ms: int
    tls: DaemonTls | None
    lock_delay_until: float | None


STATUS_VERSION = 1
_UCRED = struct.Struct("3i")  # pid, uid, gid
_UNKNOWN_PEER = '"peer":"?","pid":null,"user":null,"certificate_cn":null,"connection":'


def _scalar(value: object) -> str:
    """``value`` (None, a bool, a number or a string) as :func:`json.dumps` writes it."""
    if value is None:
        return "null"
    if type(value) is str:
        return _string(value)
    if type(value) is int or (type(value) is float and math.isfinite(value)):
        return repr(value)
    return json.dumps(value)  # True, False, NaN, infinities, subclasses


def peer_name(sock: socket.socket) -> str:
    """FLoM's name for a client: ``ip/port`` over TCP, ``localhost/`` on a UNIX socket."""
    if sock.family == socket.AF_UNIX:
        return "localhost/"
    try:
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


def _who(conn_id: object, conn: ClientConnection) -> str:
    """The JSON members ``peer`` .. ``connection`` of ``conn``: its peer (FLoM's name,
    ``ip/port`` over TCP, ``localhost/`` on a UNIX socket), the client's pid and uid
    (UNIX sockets only) and its certificate's CN."""
    sock = conn.sock
    peer = peer_name(sock)
    pid, uid = peer_process(sock)
    return (
        f'"peer":{_string(peer)},"pid":{_scalar(pid)},"user":{_scalar(uid)},'
        f'"certificate_cn":{_scalar(conn.peer_common_name)},"connection":{_scalar(conn_id)}'
    )


class _Peers:
    """The JSON members ``peer`` .. ``connection`` of each connection, worked out once
    in its life and kept on it (its certificate's CN is known before its first request)."""

    def __init__(self, connections: dict[int, ClientConnection]) -> None:
        self._connections = connections

    def __call__(self, conn_id: object) -> str:
        conn: ClientConnection | None = self._connections.get(conn_id)  # type: ignore[call-overload]
        if conn is None:
            return _UNKNOWN_PEER + _scalar(conn_id)
        described = conn.described
        if described is None:
            described = conn.described = _who(conn_id, conn)
        return described


class _Requests:
    """The JSON members ``name``, ``mode`` and ``quantity`` of a request (the same for
    every request alike, so worked out once per document)."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str, int, int], str] = {}

    def __call__(self, kind: str, request: Request) -> str:
        key = (kind, request.name, request.mode, request.quantity)
        members = self._known.get(key)
        if members is None:
            mode = LockMode(request.mode).name if uses_lock_mode(kind) else None
            quantity = request.quantity if kind == ResourceType.NUMERIC else None
            members = self._known[key] = (
                f'"name":{_string(request.name)},"mode":{_scalar(mode)},'
                f'"quantity":{_scalar(quantity)}'
            )
        return members


ENTRIES_PER_SLICE = 1000  # holders and waiters encoded between two turns of the loop


def status_slices(
    daemon: DaemonView,
    now: float,
    resource: str | None = None,
    visible: Callable[[str], bool] | None = None,
) -> Iterator[bytes | None]:
    """Encode the status document of ``daemon`` at ``now`` (epoch seconds) as compact
    JSON, in slices: ``None`` after each :data:`ENTRIES_PER_SLICE` entries (the daemon
    serves others, then goes on), the whole document last.

    The state is copied when the first slice is asked for (references only, a fraction
    of a millisecond for 10000 waiters): the document is that moment's, whatever
    happens while it is written.  With ``resource``, only the resource that name locks
    (and its incubated requests).  With ``visible`` (a peer the access rules let see only
    the resources it may lock), only the holders, waiters and incubated requests whose
    name ``visible`` accepts, and the resources that have some or whose name it accepts;
    the ``daemon`` member then says ``"view": "lockable"``."""
    table = daemon.backend
    assert isinstance(table, LockTable), "a gateway's status comes from gateway_status()"
    only = None
    if resource is not None:
        asked = resource_type(resource)
        only = "" if asked is None else locker_key(resource, asked)
    selected = table.resources.values() if only is None else [table.resources.get(only)]
    frozen = [
        (
            res.uid,
            res.name,
            res.kind or resource_type(res.name) or ResourceType.SIMPLE,
            # Keys and values apart: no tuple per entry for the garbage collector to track
            # (thousands of them would trigger a full collection, a long pause).
            list(res.holders),
            list(res.holders.values()),
            list(res.waiting),  # arrival order, which is the order of the queue
            list(res.waiting.values()),
        )
        for res in selected
        if res is not None
        and (
            visible is None
            or visible(res.name)
            or any(visible(h.request.name) for h in res.holders.values())
            or any(visible(w.request.name) for w in res.waiting.values())
        )
    ]
    incubating = [
        (conn_id, request, since, its_kind)
        for conn_id, request, since in table.incubating()
        if (its_kind := resource_type(request.name) or ResourceType.SIMPLE)
        and (only is None or locker_key(request.name, its_kind) == only)
        and (visible is None or visible(request.name))
    ]
    about = json.dumps(_about(daemon, now, visible), separators=(",", ":"))
    peers = _Peers(daemon.connections)
    fields = _Requests()
    resources = []
    budget = ENTRIES_PER_SLICE
    for uid, name, kind, holding_conns, holdings, waiting_conns, waiting in frozen:
        holders = []
        for conn_id, holding in zip(holding_conns, holdings, strict=True):
            if visible is not None and not visible(holding.request.name):
                continue
            holders.append(
                f"{{{peers(conn_id)},{fields(kind, holding.request)},"
                f'"element":{_scalar(holding.element)},"generation":{holding.generation!r},'
                f'"since":{holding.since!r},"held_s":{max(0.0, now - holding.since):.6f}}}'
            )
            budget -= 1
            if budget <= 0:
                budget = ENTRIES_PER_SLICE
                yield None
        waiters = []
        for position, (conn_id, waiter) in enumerate(zip(waiting_conns, waiting, strict=True), 1):
            if visible is not None and not visible(waiter.request.name):
                continue  # its place in the queue still counts in the others' positions
            waiters.append(
                f"{{{peers(conn_id)},{fields(kind, waiter.request)},"
                f'"position":{position},"since":{waiter.since!r},'
                f'"waiting_s":{max(0.0, now - waiter.since):.6f}}}'
            )
            budget -= 1
            if budget <= 0:
                budget = ENTRIES_PER_SLICE
                yield None
        resources.append(
            f'{{"id":{_scalar(uid)},"name":{_string(name)},"type":{_string(kind)},'
            f'"holders":[{",".join(holders)}],"waiters":[{",".join(waiters)}]}}'
        )
        budget -= 1
        if budget <= 0:
            budget = ENTRIES_PER_SLICE
            yield None
    incubator = [
        f'{{{peers(conn_id)},{fields(kind, request)},"type":{_string(kind)},'
        f'"since":{since!r},"waiting_s":{max(0.0, now - since):.6f}}}'
        for conn_id, request, since, kind in incubating
    ]
    yield (
        f'{{"pyflom_status":{STATUS_VERSION},"daemon":{about},'
        f'"resources":[{",".join(resources)}],"incubator":[{",".join(incubator)}]}}'
    ).encode("ascii")


def _about(
    daemon: DaemonView, now: float, visible: Callable[[str], bool] | None = None
) -> dict[str, Any]:
    """The document's ``daemon`` member (``view``: only with a partial view)."""
    about = {
        "pid": os.getpid(),
        "peer_id": daemon.peer_id,
        "started": daemon.started,
        "now": now,
        "connections": len(daemon.connections),
        "lifespan_ms": daemon.lifespan_ms,
        "tls": daemon.tls is not None,
        "lock_delay_s": None
        if daemon.lock_delay_until is None
        else max(0.0, daemon.lock_delay_until - now),
    }
    if visible is not None:
        about["view"] = "lockable"
    return about


def gateway_status(
    daemon: DaemonView,
    cluster: dict[str, Any],
    gateway: str,
    backend: str,
    now: float,
    visible: Callable[[str], bool] | None = None,
) -> bytes:
    """The status document of a gateway (the etcd backend): ``cluster`` is what every
    gateway's clients hold and wait for (:meth:`pyflom.etcd.backend.EtcdBackend.status`).
    Each holder and waiter names its ``gateway``; this gateway's own connections are
    described as on a memory daemon (peer, pid, user, certificate CN), the others' have
    their connection number only.  ``daemon`` adds ``backend`` and ``gateway``.
    ``visible``: as for :func:`status_slices`."""
    peers = _Peers(daemon.connections)

    def entry(about: dict[str, Any]) -> dict[str, Any]:
        conn = str(about.get("connection"))
        mine = about.get("gateway") == gateway and conn.isdigit()
        described = json.loads("{" + (peers(int(conn)) if mine else _UNKNOWN_PEER + "null") + "}")
        return {**described, **about, "connection": int(conn) if mine else conn}

    def shown(about: dict[str, Any]) -> bool:
        return visible is None or visible(str(about.get("name")))

    resources = [
        {
            **res,
            "holders": [entry(h) for h in res["holders"] if shown(h)],
            "waiters": [entry(w) for w in res["waiters"] if shown(w)],
        }
        for res in cluster["resources"]
    ]
    document = {
        "pyflom_status": STATUS_VERSION,
        "daemon": {**_about(daemon, now, visible), "backend": backend, "gateway": gateway},
        "resources": [r for r in resources if r["holders"] or r["waiters"] or shown(r)],
        "incubator": [entry(i) for i in cluster["incubator"] if shown(i)],
    }
    return json.dumps(document, separators=(",", ":")).encode("ascii")


def encode_status(daemon: DaemonView, now: float, resource: str | None = None) -> bytes:
    """The whole status document at once (see :func:`status_slices`)."""
    for part in status_slices(daemon, now, resource):
        if part is not None:
            return part
    raise AssertionError("status_slices ended without a document")
