"""Ask a daemon who holds and who waits (``flom --status``), and show the answer.

The query is a pyflom extension of FLoM's protocol (verb 6): it travels like a lock
request (UNIX socket, TCP, TLS with the same files and peer-id check) and never starts
a daemon.  The answer is the daemon's status document, described in
:mod:`pyflom.daemon.status`.
"""

from __future__ import annotations

import json
import os
import socket
import time

from . import codec
from . import rc as _rc
from .errors import FlomError, LockTimeout, ProtocolError
from .settings import Settings

MAX_STATUS_BYTES = 256 << 20  # the largest status answer a client takes
STATUS_TIMEOUT_S = 30.0
WAIT_REPORT_TIMEOUT_S = 5.0

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

    from .transport import Channel
    from .typed import StatusDocument


def query_status(
    settings: Settings, resource: str | None = None, timeout_s: float = STATUS_TIMEOUT_S
) -> StatusDocument:
    """The status document of the daemon ``settings`` name (only ``resource``'s part
    when given): a dict, typed as :class:`pyflom.typed.StatusDocument`.  Raises
    :class:`FlomError`: :class:`~pyflom.errors.ConnectionFailed` when no daemon runs
    there, :class:`ProtocolError` when the daemon does not answer status queries (FLoM's
    C daemon) or refused this one."""
    from .transport import open_channel
    from .uniqueid import peer_id

    channel = open_channel(settings, may_start_daemon=False)
    try:
        peer = _local_peer(channel)
        if peer is not None and not _pyflom_daemon(*peer):
            # FLoM C's daemon exits on a message it does not know, dropping every lock.
            raise ProtocolError(
                f"{NO_STATUS_QUERIES}: the process serving this socket (pid {peer[0]}, "
                f"{peer[1]}) is not pyflom's daemon, probably FLoM C's, which has no "
                "status query and would stop on one, dropping its locks; nothing was asked",
                rc=_rc.PROTOCOL_ERROR,
            )
        channel.accept_large_messages(MAX_STATUS_BYTES)
        channel.send(codec.StatusRequest(peer_id(), resource))
        try:
            answer = channel.receive(time.monotonic() + timeout_s)
        except LockTimeout:
            raise ProtocolError(
                f"the daemon sent no status within {timeout_s:g} s", rc=_rc.NETWORK_TIMEOUT
            ) from None
        except ProtocolError as exc:
            if peer is not None or (exc.refused and _TLS_CLOSED not in str(exc)):
                raise  # pyflom's daemon refused (plain to TLS...), or a named TLS alert
            # A daemon of another host: FLoM C's, or one that refused this client.
            raise ProtocolError(
                f"the daemon ended the connection without a status: {NO_STATUS_QUERIES} "
                "(probably FLoM C, which has none, and whose daemon stops on one); "
                f"or else: {exc}",
                rc=exc.rc,
            ) from exc
        if isinstance(answer, codec.StatusAnswer) and answer.rc == _rc.NOT_ALLOWED:
            from .errors import NotAllowed
            from .notallowed import refusal

            raise NotAllowed(refusal("read the status", channel, settings))
    finally:
        channel.close(graceful=False)
    if not isinstance(answer, codec.StatusAnswer):
        raise ProtocolError(f"unexpected answer to a status query: {type(answer).__name__}")
    if answer.rc != _rc.OK:
        raise FlomError(
            f"the daemon refused the status query: {_rc.strerror(answer.rc)}", rc=answer.rc
        )
    try:
        document: StatusDocument = json.loads(answer.document)
    except ValueError as exc:
        raise ProtocolError(f"the status document is not JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("pyflom_status") != 1:
        raise ProtocolError("the status document is not version 1 of pyflom's status")
    return document


NO_STATUS_QUERIES = "this daemon does not answer status queries"
_TLS_CLOSED = "[TLS-CLOSED-BY-DAEMON]"  # a TLS daemon ended the connection without a word
_INTERPRETERS = ("python", "pypy")


def _local_peer(channel: Channel) -> tuple[int, str] | None:
    """The pid and executable of the local daemon at the other end of ``channel``; None
    when they cannot be told (TCP, another user's process)."""
    pid = channel.peer_pid()
    if pid is None:
        return None
    try:
        return pid, os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def _pyflom_daemon(pid: int, executable: str) -> bool:
    """Can the local process ``pid`` be pyflom's daemon: a Python interpreter without
    FLoM's C library (a FLoM C daemon started by its Python binding runs in one)?"""
    if not any(name in os.path.basename(executable) for name in _INTERPRETERS):
        return False
    try:
        with open(f"/proc/{pid}/maps", "rb") as maps:
            return b"libflom" not in maps.read()
    except OSError:
        return True


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _who(entry: dict[str, object]) -> str:
    """The peer, with the client's pid on a UNIX socket and its certificate's CN; a
    client of another gateway (etcd backend) by its gateway and connection number."""
    if entry.get("gateway") is not None and entry["peer"] == "?":
        return f"gateway {entry['gateway']} conn {entry['connection']}"
    who = str(entry["peer"])
    if entry.get("pid") is not None:
        who += f" pid {entry['pid']}"
    if entry.get("certificate_cn"):
        who += f" cn {entry['certificate_cn']}"
    return who


def _what(entry: dict[str, object]) -> str:
    """What was asked: the lock mode or the quantity (``-`` for other types)."""
    parts = []
    if entry.get("mode") is not None:
        parts.append(str(entry["mode"]))
    if entry.get("quantity") is not None:
        parts.append(f"x{entry['quantity']}")
    return " ".join(parts) or "-"


_COLUMNS = ("RESOURCE", "TYPE", "STATE", "POS", "PEER", "LOCK", "ELEMENT", "GENERATION", "FOR")


def format_table(document: Mapping[str, Any]) -> str:
    """A plain-text table of a status document, one line per holder and waiter."""
    daemon = document["daemon"]
    assert isinstance(daemon, dict)
    resources = document["resources"]
    incubator = document["incubator"]
    assert isinstance(resources, list) and isinstance(incubator, list)
    uptime = _duration(float(daemon["now"]) - float(daemon["started"]))
    head = (
        f"daemon pid {daemon['pid']}, unique id {daemon['peer_id'] or '-'}, up {uptime}, "
        f"{daemon['connections']} connection(s), {len(resources)} resource(s)"
        + (", TLS" if daemon.get("tls") else "")
        + (
            "\nonly the resources this client may lock are shown (the daemon's access rules)"
            if daemon.get("view") == "lockable"
            else ""
        )
        + (
            f"\ngateway {daemon['gateway']} on {daemon['backend']} (every gateway's clients)"
            if daemon.get("gateway")
            else ""
        )
    )
    rows: list[tuple[str, ...]] = []

    def add(name: str, kind: str, state: str, entry: dict[str, object], seconds: str) -> None:
        element, generation = entry.get("element"), entry.get("generation")
        rows.append(
            (
                str(entry["name"]) if kind == "hierarchical" else name,
                kind,
                state,
                str(entry.get("position", "")),
                _who(entry),
                _what(entry),
                "-" if element is None else str(element),
                "-" if generation is None else str(generation),
                _duration(float(entry[seconds])),  # type: ignore[arg-type]
            )
        )

    for res in resources:
        name, kind = str(res["name"]), str(res["type"])
        for holder in res["holders"]:
            add(name, kind, "holds", holder, "held_s")
        for waiter in res["waiters"]:
            add(name, kind, "waits", waiter, "waiting_s")
    for entry in incubator:
        add(str(entry["name"]), str(entry["type"]), "incubates", entry, "waiting_s")
    if not rows:
        return head + "\nnothing is held, waited for or incubated\n"
    widths = [max(len(row[i]) for row in (_COLUMNS, *rows)) for i in range(len(_COLUMNS))]
    lines = [head]
    for row in (_COLUMNS, *rows):
        lines.append(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return "\n".join(lines) + "\n"


def format_json(document: Mapping[str, Any]) -> str:
    """The status document as one line of JSON (for scripts: ``--status=json``; pipe it
    through ``python -m json.tool`` or ``jq`` to read it).  Not indented: indenting
    takes Python's slow encoder, seconds for a long queue."""
    return json.dumps(document) + "\n"


def _is_me(sock: socket.socket) -> Callable[[dict[str, object]], bool]:
    """Recognises this client's own entry in a status document: by pid on a UNIX socket
    (the daemon reads it from the socket), by local address and port over TCP."""
    if sock.family == socket.AF_UNIX:
        pid = os.getpid()
        return lambda entry: entry.get("pid") == pid
    host, port = sock.getsockname()[:2]
    # A dual-stack daemon sees an IPv4 client as ::ffff:a.b.c.d.
    names = {f"{host}/{port}", f"::ffff:{host}/{port}"}
    return lambda entry: entry.get("peer") in names


def describe_wait(
    document: Mapping[str, Any], is_me: Callable[[dict[str, object]], bool]
) -> str | None:
    """One sentence on what the waiter ``is_me`` recognises waits for: who holds the
    resource and its place in the queue (or the resource it waits to see created);
    None when it is not in the document."""
    incubator = document["incubator"]
    assert isinstance(incubator, list)
    for entry in incubator:
        if is_me(entry):
            return (
                f"waiting for resource '{entry['name']}' to be created by another "
                "requester (this one may not create it: -e no)"
            )
    resources = document["resources"]
    assert isinstance(resources, list)
    for res in resources:
        waiters = res["waiters"]
        for waiter in waiters:
            if is_me(waiter):
                return (
                    f"waiting for '{res['name']}': held by {describe_holders(res['holders'])}; "
                    f"position {waiter['position']} of {len(waiters)} in the queue"
                )
    return None


def describe_holders(holders: Sequence[Mapping[str, Any]]) -> str:
    """``peer pid 4250 (EX, for 9.1s)`` for each holder (the first five), or ``nobody``."""
    text = ", ".join(
        f"{_who(dict(h))} ({_what(dict(h))}, for {_duration(float(h['held_s']))})"
        for h in holders[:5]
    )
    if len(holders) > 5:
        text += f" and {len(holders) - 5} more"
    return text or "nobody"


def stopping_report(settings: Settings) -> str:
    """What a lock request told "the daemon is stopping" does (``flom -V``)."""
    from .transport import daemon_address

    return (
        f"the daemon on {daemon_address(settings)} is stopping: it waits for the commands "
        f"of its holders to end (its log says how many); '{settings.resource_name}' is asked "
        "for again once it has gone (a new daemon starts then)"
    )


def wait_report(settings: Settings, channel: Channel) -> str:
    """What the lock request waiting on ``channel`` waits for, asked of the daemon on a
    second connection (``flom -V``); a plain sentence even when the daemon cannot say."""
    name = settings.resource_name
    try:
        document = query_status(settings, name, WAIT_REPORT_TIMEOUT_S)
    except FlomError as exc:
        return f"waiting for '{name}' (the daemon does not say who holds it: {exc})"
    daemon = document["daemon"]
    delay = daemon.get("lock_delay_s") if isinstance(daemon, dict) else None
    if delay is not None:
        return (
            f"waiting for '{name}': the daemon grants nothing for {float(delay):.1f} s more "
            "(lock-delay: the previous daemon died while commands held locks, and they "
            "may still be running until their lock-loss grace ends)"
        )
    said = describe_wait(document, _is_me(channel.sock))
    return said or f"waiting for '{name}' (the daemon's status does not list this request)"
