"""The asyncio lock daemon: listens, frames and decodes messages, feeds the lock table.

All lock logic lives in :mod:`pyflom.core`; this module only adapts I/O.  Every
misbehaving connection (malformed, unknown, oversized or out-of-order message, a stall
in the middle of a message) is closed and logged on its own: other clients keep their
locks and their service.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import heapq
import os
import resource
import signal
import socket
import struct
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .. import codec
from .. import rc as _rc
from ..core import Answer, LockTable, ProtocolViolation, Request
from ..core.backend import LockBackend
from ..core.table import MAX_RESOURCES
from ..lockmodes import LockMode
from ..mounts import VfsError
from ..netaddr import show, tune_tcp
from ..options import daemon_default
from ..settings import DEFAULT_LOCK_LOSS_GRACE_MS, DEFAULT_MULTICAST_PORT, DEFAULT_UNICAST_PORT
from ..tls.contexts import TlsSetupError
from ..tls.files import TlsFiles
from ..uniqueid import peer_id
from .access import AccessRules, AccessRulesError, Grants, grants_of, peer_of
from .connection import ClientConnection, new_uid, peer_key
from .discovery import DiscoveryResponder
from .listeners import (
    ListenError,
    advertised_address,
    clear_holders_mark,
    discovery_lock_path,
    listen_tcp,
    listen_tcp_any,
    listen_unix,
    open_discovery,
    read_holders_mark,
    take_lock_file,
    tcp_lock_path,
    write_holders_mark,
)
from .log import LEVELS, DaemonLog
from .metrics import MetricsSetupError, open_endpoint
from .protocol import MANAGEMENT_LINGER_S, no_room_answer
from .statefile import StateFile, StateFileError
from .status import encode_status, gateway_status, peer_name, peer_process, status_slices
from .tls import DaemonTls
from .tlsconnection import RefusedTlsConnection, TlsClientConnection

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..etcd.backend import EtcdBackend
    from ..etcd.config import EtcdConfig
    from .exporter import MetricsServer
    from .metrics import DaemonMetrics
    from .vfs import StatusMount

ACCEPT_BURST = 256
ACCEPT_RETRY_S = 0.1  # pause after accept() failed for want of descriptors or memory
# accept() errors that concern one connection only (the client left before we took it)
_ACCEPT_TRANSIENT = frozenset(
    (errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EINTR, errno.EAGAIN)
)
_OUT_OF_DESCRIPTORS = frozenset((errno.EMFILE, errno.ENFILE))
# Descriptors kept free for the daemon's own needs (state file, TLS files): past
# (limit of open files - FD_HEADROOM), a new connection first makes room (the oldest
# connections that neither hold nor wait for a lock are closed), or is refused.
FD_HEADROOM = 8
ROOM_BATCH = 8  # connections closed at most per look for room
ROOM_MIN_AGE_S = 1.0  # a connection younger than this (in flight) is never closed for room
OUTBOX_BATCH = 256  # answers sent per loop iteration; the rest wait for the next one
QUIESCE_LIFESPAN_MS = 100
EXPIRY_BATCH_S = 0.25  # unused resources expire at most this often (at most this late)
STALL_CHECK_MIN_S = 0.5  # stalled connections are looked for at most this often
TLS_CHECK_INTERVAL_S = 1.0  # how often the daemon's TLS files are checked for changes
FULL_LOG_INTERVAL_S = 60.0  # FLM028W (resource limit reached) at most this often
READY_REASON_MAX = 4000  # bytes of a start failure's reason (one atomic pipe write)
# After a daemon died holding locks, the next one grants nothing for the lock-loss grace
# of the dead one's clients (their commands get SIGTERM, then SIGKILL that much later)
# plus this margin, for the monitors to notice and the kernel to end the processes.
LOCK_DELAY_MARGIN_MS = 1000
DEFAULT_LOCK_DELAY_MS = DEFAULT_LOCK_LOSS_GRACE_MS + LOCK_DELAY_MARGIN_MS
MARK_CLEAR_DELAY_S = 1.0  # the holders mark is removed this long after the last holder


# The defaults a started daemon takes when its command line lacks them: the option table's.
_KEEPALIVE_S: tuple[int, int, int] = daemon_default("--tcp-keepalive")  # type: ignore[assignment]


@dataclass
class DaemonOptions:
    """How one daemon runs (given by the client that starts it): on a UNIX socket, or on
    TCP (``unicast_address``) and/or answering discovery on a multicast group."""

    socket_name: str | None = None
    unicast_address: str | None = None
    unicast_port: int = DEFAULT_UNICAST_PORT
    multicast_address: str | None = None
    multicast_port: int = DEFAULT_MULTICAST_PORT
    network_interface: str | None = None
    tcp_keepalive_s: tuple[int, int, int] = _KEEPALIVE_S
    tls: TlsFiles | None = None  # TLS on every connection (UNIX and TCP) when set
    lifespan_ms: int = daemon_default("--lifespan")  # type: ignore[assignment]
    grant_policy: str = daemon_default("--grant-policy")  # type: ignore[assignment]
    trace_file: str | None = None
    append_trace_file: bool = False
    state_file: str | None = None  # keeps sequences and generations across restarts
    stall_timeout_s: float = 10.0  # a silent lock-less or half-sent connection is closed
    max_resources: int = MAX_RESOURCES  # live resources; more are refused (rc -12)
    mount_point_vfs: str | None = None  # serve the status file system there (FUSE)
    log_level: str = "info"  # syslog priorities kept: err, warning, notice or info
    lock_delay_ms: int = DEFAULT_LOCK_DELAY_MS  # after a predecessor died with holders
    etcd: EtcdConfig | None = None  # a gateway: the locks live in this etcd cluster
    access_rules: str | None = None  # who may do what (daemon/access.py); None: everyone
    metrics_address: str | None = None  # HOST:PORT of the Prometheus endpoint; None: none


class LockDaemon:
    """Owns the lock table and the connections; decides when to exit."""

    def __init__(
        self,
        options: DaemonOptions,
        log: DaemonLog,
        tls: DaemonTls | None = None,
        state: StateFile | None = None,
        access: AccessRules | None = None,
    ) -> None:
        self.options = options
        self.access = access  # None: no rules, everyone may do everything
        self.log = log
        self.loop = asyncio.get_running_loop()
        self.state = state
        self._state_failed = False
        self.etcd: EtcdBackend | None = None  # the backend when it is etcd (a gateway)
        self.backend: LockBackend
        if options.etcd is None:
            self.backend = LockTable(
                options.grant_policy,
                None if state is None else state.durable,
                options.max_resources,
                new_uid,
            )
        else:
            self.backend = self.etcd = self._etcd_backend(options.etcd)
        self._background: set[asyncio.Task[None]] = set()  # status queries to etcd
        self.connections: dict[int, ClientConnection] = {}
        self.peer_id = peer_id()
        self.started = time.time()
        self.lifespan_ms = options.lifespan_ms
        self._idle_since: float | None = self.loop.time()
        self._done: asyncio.Future[None] = self.loop.create_future()
        self.socket_file: tuple[int, int] | None = None  # (dev, inode) of our socket file
        self._timer: asyncio.TimerHandle | None = None  # the one timer (see _arm_timer)
        self._timer_due = 0.0  # loop time
        self._last_tick = 0.0  # when the timer last ticked the lock table (wall clock)
        self._stall_due: float | None = None  # next stall check (loop time), None: none
        self._tls_check_due: float | None = (
            None if tls is None else self.loop.time() + TLS_CHECK_INTERVAL_S
        )
        self.tls = tls
        self._accept_failures = 0  # failed accept() calls in the current episode
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        self._fd_limit = sys.maxsize if soft == resource.RLIM_INFINITY else soft
        self._fd_ceiling = self._fd_limit - FD_HEADROOM  # see FD_HEADROOM
        self._room_look_after = 0.0  # no look for room before (loop time): none was found
        # Closed to take one more client when accept() fails for want of descriptors, so
        # that the client is told why (rather than waiting in the backlog), then reopened.
        self._reserve_fd: int | None = _open_reserve()
        log.schedule = self.loop.call_later  # summaries of suppressed warnings, on time
        self._outbox: deque[Answer] = deque()  # answers not sent yet, in order
        self._outboxed: dict[object, int] = {}  # connection -> its answers in the outbox
        self._outbox_flush: asyncio.Handle | None = None
        self._full_refusals = 0  # refused for the resource limit since the last FLM028W
        self._full_logged_at: float | None = None
        self.state_version = 0  # moves on every event: the status file system rebuilds
        # Restart safety (see _drain_holders and the lock-delay): the lock file that owns
        # the daemon's place, whether it bears the holders mark, and the requests held
        # back while the lock-delay lasts.
        self.place_fd: int | None = None
        self._marked = False
        self._mark_check: asyncio.TimerHandle | None = None
        self.lock_delay_until: float | None = None  # wall clock; None: no lock-delay
        self._delayed: list[tuple[ClientConnection, codec.LockRequest]] = []
        self._holders_left: set[int] = set()  # stopping: holders not gone yet
        self._holders_gone: asyncio.Future[None] | None = None
        # Prometheus metrics (--metrics, daemon/exporter.py); None: off, every hook is a
        # single test of this attribute.
        self.metrics: DaemonMetrics | None = None

    def _etcd_backend(self, config: EtcdConfig) -> EtcdBackend:
        """The etcd backend of a gateway (started by :func:`run_daemon`)."""
        from ..etcd.backend import EtcdBackend  # only gateways load the etcd client

        gateway = f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
        return EtcdBackend(
            config,
            policy=self.options.grant_policy,
            gateway=gateway,
            push=self.dispatch,
            drop=self._drop_holder,
        )

    def _drop_holder(self, conn_id: object, reason: str) -> None:
        """The etcd backend can no longer vouch for ``conn_id``'s lock (its lease could
        expire): close the connection, so that the client's lock-loss monitor stops the
        command before the lock can be granted elsewhere."""
        conn: ClientConnection | None = self.connections.get(conn_id)  # type: ignore[call-overload]
        if conn is None or conn.closed:
            return
        self.log.error(f"FLM070E closing {self._who(conn_id)}: {reason}")
        conn.close()

    # -- messages -----------------------------------------------------------------------
    def handle(self, conn: ClientConnection, message: codec.Message) -> None:
        """Act on one decoded message from ``conn``."""
        if self.stopping:
            self._while_stopping(conn, message)  # nothing is granted any more
            return
        now = time.time()  # the lock core works in wall-clock time (timestamps need it)
        self._idle_since = None
        if self.tls is not None and not self.tls.admits(conn, message):
            if self.metrics is not None:
                self.metrics.tls_failed("TLS-PEER-ID-MISMATCH")
            return
        try:
            if isinstance(message, codec.LockRequest):
                if self.metrics is not None:
                    self.metrics.asked(conn.id, message.name, message.mode)
                if self.access is not None and not self.grants(conn).may_lock(message.name):
                    self._refuse_lock(conn, message)
                elif self.lock_delay_until is None:
                    self._lock(conn, message, now)
                else:
                    self._delay(conn, message)
            elif isinstance(message, codec.UnlockRequest):
                answers = self.backend.unlock(conn.id, message.name, message.rollback, now)
                if self.metrics is not None:
                    self.metrics.released(conn.id)
                if self.log.lock_events:
                    rollback = " (rollback)" if message.rollback else ""
                    self.log.info(
                        f"FLM051I {self._who(conn.id)} released '{message.name}'{rollback}"
                    )
                self.dispatch(answers)
                if self._marked and self._mark_check is None:
                    self._plan_mark_check()
            elif isinstance(message, codec.ShutdownRequest):
                self._shutdown(conn, message)
            elif isinstance(message, codec.StatusRequest):
                self._status(conn, message, now)
            else:
                self.reject(conn, f"unexpected {type(message).__name__} on a stream connection")
        except ProtocolViolation as exc:
            self.log.warning(f"FLM009W closing connection {conn.id}: {exc}")
            conn.close()

    def _lock(
        self, conn: ClientConnection, message: codec.LockRequest, now: float, fresh: bool = True
    ) -> None:
        # The codec has already checked mode (0..5) and lifespan (>= 0).
        if message.quantity is not None and message.quantity < 1:
            self.reject(conn, f"quantity {message.quantity} is not a positive number")
            return
        if fresh:  # not a request held back by the lock-delay (it was answered already)
            conn.protocol.new_request()
        request = Request(
            name=message.name,
            mode=LockMode.NL if message.mode is None else message.mode,
            quantity=message.quantity or 1,
            wait=message.wait,
            create=message.create,
            idle_lifespan_ms=message.lifespan,
        )
        answers = self.backend.lock(conn.id, request, now)
        if answers and answers[0].rc == _rc.CONTAINER_FULL:
            self._resource_limit_reached()
        self.dispatch(answers)

    def _resource_limit_reached(self) -> None:
        """Log a refusal for the resource limit: once, then at most every minute."""
        self._full_refusals += 1
        now = self.loop.time()
        if self._full_logged_at is not None and now - self._full_logged_at < FULL_LOG_INTERVAL_S:
            return
        self.log.warning(
            f"FLM028W limit of {self.backend.max_resources} live resources reached "
            f"(--max-resources): {self._full_refusals} request(s) for a new resource "
            f"refused with reason code {_rc.CONTAINER_FULL} (logged at most once a minute)"
        )
        self._full_refusals = 0
        self._full_logged_at = now

    # -- access rules --------------------------------------------------------------------
    def grants(self, conn: ClientConnection) -> Grants:
        """What ``conn``'s peer may do (worked out once per connection and rules)."""
        grants: Grants | None = getattr(conn, "access", None)
        if grants is None:
            assert self.access is not None
            peer = conn.access_peer = peer_of(conn.sock, conn.peer_common_name)
            grants = conn.access = grants_of(self.access.rules, peer)
        return grants

    def _not_allowed(self, conn: ClientConnection, what: str) -> None:
        """FLM080W: ``conn`` asked for ``what`` (``lock 'db'``...) and no rule grants it
        (limited per peer like every warning)."""
        assert self.access is not None
        self.log.warning(
            f"FLM080W refused to {what} to {self._who(conn.id)} as "
            f"{conn.access_peer.describe()}: no rule of '{self.access.path}' allows it "
            f"(reason code {_rc.NOT_ALLOWED})",
            conn.peer_key(),
        )

    def _refuse_lock(self, conn: ClientConnection, message: codec.LockRequest) -> None:
        conn.protocol.new_request()
        conn.send_answer(Answer(conn.id, _rc.NOT_ALLOWED))  # then the end of stream
        if self.metrics is not None:
            self.metrics.refused(conn.id, _rc.NOT_ALLOWED)
        self._not_allowed(conn, f"lock '{message.name}'")

    def reload_access(self) -> None:
        """SIGHUP: read the access rules file again (a bad one: the rules stay)."""
        if self.access is None:
            return
        try:
            self.access = AccessRules.load(self.access.path)
        except AccessRulesError as exc:
            self.log.error(f"FLM082E keeping the previous access rules: {exc}")
            return
        for conn in self.connections.values():
            conn.access = None  # worked out again, under the new rules
        self.log.notice(
            f"FLM081N access rules reloaded (SIGHUP): {len(self.access.rules)} rule(s) "
            f"from '{self.access.path}'"
        )

    def _on_sighup(self) -> None:
        if self.tls is not None:
            self.tls.reload()
        self.reload_access()

    def _shutdown(self, conn: ClientConnection, message: codec.ShutdownRequest) -> None:
        if self.access is not None and not self.grants(conn).stop:
            conn.write(codec.encode(codec.ShutdownAnswer(_rc.NOT_ALLOWED)))
            conn.linger()  # kept until the client has read why
            how = "immediately" if message.immediate else "once idle"
            self._not_allowed(conn, f"stop the daemon ({how})")
            return
        conn.linger()  # no answer; the client ends the connection (or a second passes)
        if message.immediate:
            self.log.notice("FLM007N immediate shutdown requested: exiting now")
            self.stop()
        else:
            self.log.notice("FLM008N quiesce shutdown requested: exiting once idle")
            self.lifespan_ms = QUIESCE_LIFESPAN_MS
            self._arm_timer()

    def _status(self, conn: ClientConnection, message: codec.StatusRequest, now: float) -> None:
        """Answer a status query (pyflom extension), then end the connection's sending
        side.  A long document is written in slices, serving others in between."""
        if self.backend.involves(conn.id):
            raise ProtocolViolation("a status query on a connection that locks")
        visible = None  # everything
        if self.access is not None:
            grants = self.grants(conn)
            if not grants.status:
                if not grants.lock:
                    self._refuse_status(conn)
                    return
                visible = grants.may_lock  # the resources it may lock, and only those
        if self.etcd is None:
            self._write_status(conn, status_slices(self, now, message.resource, visible))
            return
        task = self.loop.create_task(self._gateway_status(conn, message.resource, visible))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _refuse_status(self, conn: ClientConnection) -> None:
        answer = codec.encode(codec.StatusAnswer(_rc.NOT_ALLOWED, b""))
        conn.allow_output(len(answer))
        conn.write(answer)
        conn.write_eof()
        self._not_allowed(conn, "read the status")

    async def _gateway_status(
        self, conn: ClientConnection, resource: str | None, visible: Callable[[str], bool] | None
    ) -> None:
        """A gateway's status: every gateway's holders and waiters, read from etcd."""
        assert self.etcd is not None and self.options.etcd is not None
        try:
            cluster = await self.etcd.status(resource)
        except Exception as exc:
            self.log.warning(
                f"FLM071W status query on connection {conn.id}: etcd did not answer "
                f"({type(exc).__name__}: {exc})"
            )
            if not conn.closed and not self.stopping:
                answer = codec.encode(codec.StatusAnswer(_rc.BACKEND_UNAVAILABLE, b""))
                conn.allow_output(len(answer))
                conn.write(answer)
                conn.write_eof()
            return
        document = gateway_status(
            self, cluster, self.etcd.gateway, self.options.etcd.url, time.time(), visible
        )
        self._write_status(conn, iter([document]))

    def _write_status(self, conn: ClientConnection, slices: Iterator[bytes | None]) -> None:
        if conn.closed or self.stopping:
            return
        document = next(slices)
        if document is None:  # more to write after the others had their turn
            self.loop.call_soon(self._write_status, conn, slices)
            return
        answer = codec.encode(codec.StatusAnswer(_rc.OK, document))
        conn.allow_output(len(answer))
        conn.write(answer)
        conn.write_eof()
        self.log.trace(f"status query on connection {conn.id}: {len(answer)} bytes sent")

    def dispatch(self, answers: list[Answer]) -> None:
        """Send each answer to its connection (if it is still there), once what they
        depend on is in the state file.  Once the daemon is stopping nothing is sent: a
        shutdown never grants a lock."""
        self.state_version += 1
        if self.stopping:
            return
        if self.state is not None and not self._persist():
            return
        if answers and self.log.lock_events:
            self._log_answers(answers)
        if answers and not self._marked and self.place_fd is not None:
            self._mark_if_granted(answers)
        if answers:
            if self.metrics is not None:
                self.metrics.answered(answers)
            outboxed = self._outboxed
            if len(answers) <= OUTBOX_BATCH and not any(a.conn in outboxed for a in answers):
                self._send(answers)
            else:
                for answer in answers:
                    outboxed[answer.conn] = outboxed.get(answer.conn, 0) + 1
                self._outbox.extend(answers)
                if self._outbox_flush is None:
                    self._flush_outbox()
        # The timer is only ever moved earlier: that takes a new deadline in the table,
        # no timer at all, or the last connection gone (the idle exit).
        if self.backend.deadline_added or self._timer is None or not self.connections:
            self._arm_timer()

    def _who(self, conn_id: object) -> str:
        """A connection as the log names it: its number, peer and (UNIX) process."""
        conn: ClientConnection | None = self.connections.get(conn_id)  # type: ignore[call-overload]
        if conn is None:
            return f"connection {conn_id}"
        if conn.log_name is None:  # worked out once: a connection's peer never changes
            pid, _ = peer_process(conn.sock)
            process = "" if pid is None else f" pid {pid}"
            conn.log_name = f"connection {conn_id} ({peer_name(conn.sock)}{process})"
        return conn.log_name

    def _log_answers(self, answers: list[Answer]) -> None:
        """FLM050I/FLM052I/FLM054I: one line per grant, refusal and queued request."""
        info = self.log.info
        for answer in answers:
            request = answer.request
            name, mode = ("?", "") if request is None else (request.name, _asked(request))
            who = self._who(answer.conn)
            if answer.rc == _rc.OK:
                element = "" if answer.element is None else f", element '{answer.element}'"
                info(
                    f"FLM050I granted '{name}'{mode} to {who}, generation "
                    f"{answer.generation}{element}"
                )
            elif answer.rc == _rc.LOCK_ENQUEUED:
                info(f"FLM054I {who} waits for '{name}'{mode}")
            elif answer.rc == _rc.LOCK_WAIT_RESOURCE:
                info(f"FLM054I {who} waits for resource '{name}' to be created (-e no)")
            else:
                info(
                    f"FLM052I refused '{name}'{mode} to {who}: {_rc.strerror(answer.rc)} "
                    f"(reason code {answer.rc})"
                )

    def _send(self, answers: list[Answer]) -> None:
        if self.stopping:
            return  # a shutdown never grants a lock
        for answer in answers:
            conn = self.connections.get(answer.conn)  # type: ignore[call-overload]
            if conn is not None:
                conn.send_answer(answer)

    def _flush_outbox(self) -> None:
        outbox, outboxed = self._outbox, self._outboxed
        batch = [outbox.popleft() for _ in range(min(OUTBOX_BATCH, len(outbox)))]
        for answer in batch:
            left = outboxed.pop(answer.conn) - 1
            if left:
                outboxed[answer.conn] = left
        self._send(batch)
        self._outbox_flush = self.loop.call_soon(self._flush_outbox) if outbox else None

    def _persist(self) -> bool:
        """Write and fdatasync what the last event changed; False: answer nothing."""
        assert self.state is not None
        if self._state_failed:
            return False
        changes = self.backend.pending_changes()
        if changes is not None:
            try:
                self.state.record(changes)
            except StateFileError as exc:
                self._state_failed = True
                self.log.error(
                    f"FLM041E {exc}; exiting without answering, so that no number is "
                    "ever handed out twice"
                )
                self.stop()
                return False
        return True

    # -- time ----------------------------------------------------------------------------
    def _arm_timer(self) -> None:
        """Make the one timer fire by the earliest thing due: a lock-table deadline
        (resource expiry, time-based grant), the next stall check, the TLS files check,
        the idle exit.  Only ever moved earlier here; a firing re-arms it afresh."""
        self.backend.deadline_added = False
        due = self._next_due()
        timer = self._timer
        if due is None or (timer is not None and self._timer_due <= due):
            return
        if timer is not None:
            timer.cancel()
        self._timer_due = due
        self._timer = self.loop.call_at(due, self._on_timer)

    def _next_due(self) -> float | None:
        """When (loop time) the timer must next fire, None: nothing to wait for."""
        loop_now = self.loop.time()
        due: float | None = None
        table = self.backend
        # The lock core works in wall-clock time.  A time-based grant is due exactly;
        # the expiry of unused resources (lazy: an expired one is never used again) is
        # batched, or a connection per lock would cost a wake-up per lock.
        table_due = table.next_grant_deadline()
        expiry = table.next_expiry_deadline()
        if expiry is not None:
            expiry = max(expiry, self._last_tick + EXPIRY_BATCH_S)
            if table_due is None or expiry < table_due:
                table_due = expiry
        if table_due is not None:
            due = loop_now + (table_due - time.time())
        if self._stall_due is not None and (due is None or self._stall_due < due):
            due = self._stall_due
        if self._tls_check_due is not None and (due is None or self._tls_check_due < due):
            due = self._tls_check_due
        if self.connections or not self.backend.idle:
            self._idle_since = None
        else:
            if self._idle_since is None:
                self._idle_since = loop_now
            if self.lifespan_ms > 0:
                idle_due = self._idle_since + self.lifespan_ms / 1e3
                if due is None or idle_due < due:
                    due = idle_due
        return due

    def _on_timer(self) -> None:
        self._timer = None
        if self.stopping:
            return
        now = self.loop.time()
        if self._tls_check_due is not None and now >= self._tls_check_due:
            assert self.tls is not None
            self._tls_check_due = now + TLS_CHECK_INTERVAL_S
            self.tls.reload_if_changed()
        if self._stall_due is not None and now >= self._stall_due:
            self._close_stalled(now)
        self._last_tick = time.time()
        answers = self.backend.tick(self._last_tick)
        idle_since = self._idle_since
        if (
            idle_since is not None
            and self.lifespan_ms > 0
            and now - idle_since >= self.lifespan_ms / 1e3
            and not self.connections
            and self.backend.idle
        ):
            self.log.notice("FLM004N idle for the whole lifespan: exiting")
            self.stop()
            return
        self.dispatch(answers)  # arms the timer again
        if self._timer is None and not self.stopping:
            self._arm_timer()

    def _close_stalled(self, now: float) -> None:
        """Close the connections that did not complete a message within the stall
        timeout of its first byte, or a TLS handshake within it of connecting, or are
        silent that long without holding or waiting; plan the next check by the
        earliest that could."""
        limit = self.options.stall_timeout_s
        self._stall_due = None  # planned below (not from the closes in the meantime)
        next_due: float | None = None
        involves = self.backend.involves
        for conn in list(self.connections.values()):
            if conn.closed or conn.lingering:
                continue  # a lingering connection has its own end
            due = conn.message_since + limit
            if now >= due:
                if conn.handshaking:
                    self.reject(conn, f"TLS handshake not complete within {limit:g} s")
                    if self.metrics is not None:
                        self.metrics.tls_failed("TLS-NO-ANSWER")
                    continue
                if conn.protocol.pending:
                    self.reject(conn, f"no complete message within {limit:g} s of its first byte")
                    continue
                if not involves(conn.id):
                    self.reject(conn, f"silent for {limit:g} s without holding or waiting")
                    continue
                due = now + limit  # holds or waits: looked at again after a while
            if next_due is None or due < next_due:
                next_due = due
        # Never more often than STALL_CHECK_MIN_S, however spread the deadlines are.
        self._stall_due = None if next_due is None else max(next_due, now + STALL_CHECK_MIN_S)

    def internal_error(self, conn: ClientConnection, exc: BaseException) -> None:
        """A bug met while serving ``conn``: say so, close that connection only."""
        self.log.error(
            f"FLM031E internal error while serving connection {conn.id}, closing it: "
            f"{type(exc).__name__}: {exc}"
        )
        self.log.trace("".join(traceback.format_exception(exc)))
        with contextlib.suppress(Exception):
            conn.close()

    def reject(self, conn: ClientConnection, reason: str) -> None:
        """Close a connection that broke the protocol, and say why in the log (a peer
        that keeps doing it is logged a few times, then summed up: FLM060W)."""
        self.log.warning(f"FLM006W closing connection {conn.id}: {reason}", conn.peer_key())
        conn.close()

    def tls_handshake(self, started: bool) -> None:
        """A client connection's handshake starts or ends."""
        assert self.tls is not None
        if started:
            self.tls.handshake_started()
        else:
            self.tls.handshake_ended()

    def tls_established(self, conn: TlsClientConnection) -> None:
        """A client finished its TLS handshake: log who it is (FLM011I/FLM012I)."""
        assert self.tls is not None
        self.tls.log_peer(conn)

    def tls_failed(self, conn: TlsClientConnection, exc: Exception) -> None:
        """A client's TLS failed: say why (the connection closes itself)."""
        assert self.tls is not None
        diagnosis = self.tls.log_failure(conn, exc)
        if self.metrics is not None:
            self.metrics.tls_failed(diagnosis.ident)

    def lost(self, conn: ClientConnection) -> None:
        """A connection ended: release its lock or drop its wait (unless the daemon is
        stopping: then every connection is closed and nothing is granted)."""
        if self.metrics is not None:
            self.metrics.gone(conn.id)
        if self.log.lock_events:
            what = self.backend.what(conn.id)
            if what is not None and not self.stopping:
                key, state = what
                outcome = {
                    "holding": f"holding '{key}': released",
                    "waiting": f"waiting for '{key}': left the queue",
                    "incubating": f"waiting for '{key}' to be created: forgotten",
                }[state]
                self.log.info(f"FLM053I {self._who(conn.id)} went away while {outcome}")
        self.connections.pop(conn.id, None)
        if self.stopping:
            self._holders_left.discard(conn.id)
            gone = self._holders_gone
            if not self._holders_left and gone is not None and not gone.done():
                gone.set_result(None)
            return
        self.dispatch(self.backend.disconnect(conn.id, time.time()))
        if self._marked and self._mark_check is None:
            self._plan_mark_check()

    # -- restart safety --------------------------------------------------------------------
    def _mark_if_granted(self, answers: list[Answer]) -> None:
        """Write the holders mark before the first grant leaves (see listeners.py)."""
        if any(answer.rc == _rc.OK for answer in answers):
            self._set_mark()

    def _set_mark(self) -> None:
        assert self.place_fd is not None
        try:
            write_holders_mark(self.place_fd, self.options.lock_delay_ms)
        except OSError as exc:
            self.log.warning(f"FLM065W cannot mark the lock file (holders exist): {exc}")
        self._marked = True

    def _plan_mark_check(self) -> None:
        """Look, a little later, whether the mark can go (lazily: a daemon locking and
        unlocking all the time writes it once)."""
        self._mark_check = self.loop.call_later(MARK_CLEAR_DELAY_S, self._check_mark)

    def _check_mark(self) -> None:
        self._mark_check = None
        if self.stopping or self.lock_delay_until is not None:
            return
        what = self.backend.what
        for conn_id in self.connections:
            state = what(conn_id)
            if state is not None and state[1] == "holding":
                return  # looked at again when a lock is released or a connection ends
        self._clear_mark()

    def _clear_mark(self) -> None:
        if self._marked and self.place_fd is not None:
            with contextlib.suppress(OSError):
                clear_holders_mark(self.place_fd)
        self._marked = False

    def start_lock_delay(self, predecessor: int | None, delay_ms: int) -> None:
        """The previous daemon here died holding locks: grant nothing for ``delay_ms``."""
        self.lock_delay_until = time.time() + delay_ms / 1000
        # Our own mark, with the longer delay: if this daemon dies too, the next waits.
        self.options.lock_delay_ms = delay_ms
        self._set_mark()
        who = (
            "a previous daemon"
            if predecessor is None
            else f"the previous daemon (pid {predecessor})"
        )
        self.log.warning(
            f"FLM066W {who} ended while commands held locks; they may still be running "
            f"until their lock-loss grace ends: granting nothing for {delay_ms / 1000:g} s "
            "(lock-delay); lock requests wait meanwhile"
        )
        self.loop.call_later(delay_ms / 1000, self._end_lock_delay)

    def _delay(self, conn: ClientConnection, message: codec.LockRequest) -> None:
        """A lock request during the lock-delay: told it waits (busy when it may not),
        served when the delay ends."""
        conn.protocol.new_request()
        if not message.wait:
            conn.send_answer(Answer(conn.id, _rc.LOCK_BUSY))
            if self.metrics is not None:
                self.metrics.refused(conn.id, _rc.LOCK_BUSY)
            return
        conn.send_answer(Answer(conn.id, _rc.LOCK_ENQUEUED))
        assert self.lock_delay_until is not None
        # Not silent: it waits (the stall check counts from the delay's end).
        conn.message_since = self.loop.time() + max(0.0, self.lock_delay_until - time.time())
        self._delayed.append((conn, message))

    def _end_lock_delay(self) -> None:
        if self.stopping:
            return
        self.lock_delay_until = None
        delayed, self._delayed = self._delayed, []
        self.log.notice(
            f"FLM067N lock-delay over: serving the {len(delayed)} lock request(s) that waited"
        )
        now = time.time()
        for conn, message in delayed:
            if conn.closed or conn.id not in self.connections:
                continue
            try:
                self._lock(conn, message, now, fresh=False)
            except ProtocolViolation as exc:
                self.log.warning(f"FLM009W closing connection {conn.id}: {exc}")
                conn.close()
        self._plan_mark_check()

    def _while_stopping(self, conn: ClientConnection, message: codec.Message) -> None:
        """A message while the daemon waits for its holders to go: a lock request is told
        the daemon is stopping (its client waits for it to go and starts a new one)."""
        if isinstance(message, codec.LockRequest):
            conn.protocol.new_request()
            conn.send_answer(Answer(conn.id, _rc.DAEMON_STOPPING))
            if self.metrics is not None:
                self.metrics.refused(conn.id, _rc.DAEMON_STOPPING, message.name, message.mode)
        elif isinstance(message, codec.ShutdownRequest):
            conn.linger()

    # -- lifecycle -----------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._done.done()

    def stop(self) -> None:
        """Stop serving: nothing is granted any more, waiters' connections are closed,
        holders' connections see the end of the daemon's sending side (their client's
        monitor ends the command); ``serve`` returns once every holder's connection has
        closed (:meth:`_drain_holders`)."""
        if not self._done.done():
            self._done.set_result(None)

    async def _drain_holders(self) -> None:
        """Keep the daemon's place (socket file, lock file, TCP port) until no holder's
        connection is left, so that no new daemon grants anything while a holder's
        command still runs (it holds the connection: its end closes it).  Waiters and
        idle connections are closed now; newcomers are told the daemon is stopping."""
        holding = []
        for conn in list(self.connections.values()):
            state = self.backend.what(conn.id)
            if state is not None and state[1] == "holding" and not conn.closed:
                holding.append(conn)
            elif conn.gone is None:
                conn.close()
        if not holding:
            return
        self._holders_left = {conn.id for conn in holding}
        self._holders_gone = self.loop.create_future()
        for conn in holding:
            conn.write_eof()  # the client sees its lock lost and ends its command
        self.log.notice(
            f"FLM063N stopping: waiting for the {len(holding)} holder(s) to end their "
            "commands (their connections to close) before leaving the socket; a new "
            "daemon cannot start meanwhile (SIGKILL this daemon to leave now: the next "
            "one then grants nothing for its lock-delay)"
        )
        await self._holders_gone
        self.log.notice("FLM064N every holder has gone: leaving")

    async def serve(
        self, listeners: list[socket.socket], discovery: DiscoveryResponder | None = None
    ) -> None:
        """Serve ``listeners`` (and answer discovery queries) until :meth:`stop`."""
        for listener in listeners:
            listener.setblocking(False)
            self.loop.add_reader(listener.fileno(), self._accept, listener, int(listener.family))
        if discovery is not None:
            discovery.start(self.loop)
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(signum, self.stop)
        if self.tls is not None or self.access is not None:
            self.loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        self._arm_timer()
        try:
            await self._done
            if self._timer is not None:
                self._timer.cancel()
            if self._mark_check is not None:
                self._mark_check.cancel()
            await self._drain_holders()
        finally:
            if self._timer is not None:
                self._timer.cancel()
            if self.options.socket_name is not None:
                _unlink_if_ours(self.options.socket_name, self.socket_file)
            for listener in listeners:
                self.loop.remove_reader(listener.fileno())
            if discovery is not None:
                discovery.stop(self.loop)
            lingering = []
            for conn in list(self.connections.values()):
                if conn.gone is not None:
                    lingering.append(conn.gone)  # -X: kept until its client closes
                else:
                    conn.close()
            if lingering:
                await asyncio.wait(lingering, timeout=MANAGEMENT_LINGER_S)
                for conn in list(self.connections.values()):
                    conn.close()
            if self.lock_delay_until is None:
                self._clear_mark()  # a clean end: no holder is left

    def _accept(self, listener: socket.socket, family: int) -> None:
        """Take every pending connection (a bounded burst, so others get their turn).
        Short of descriptors, make room for it or tell the client why it is refused."""
        tcp = family != socket.AF_UNIX
        for _ in range(ACCEPT_BURST):
            try:
                # Not listener.accept(): it reads the listener's family and type back
                # as enums for every connection, a tenth of a connection's cost.
                fd, _ = listener._accept()  # type: ignore[attr-defined]
                sock = socket.socket(family, socket.SOCK_STREAM, 0, fd)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _ACCEPT_TRANSIENT:
                    continue  # that one client gave up already: take the next
                if exc.errno in _OUT_OF_DESCRIPTORS:
                    if self._make_room():
                        continue
                    refused = self._refuse_with_reserve(listener, family)
                    if refused is None:
                        return  # nobody waits (accept() fails for want of a descriptor first)
                    if refused:
                        continue
                self._pause_accepting(listener, family, exc)
                return
            if self._accept_failures:
                self.log.notice(
                    f"FLM029N accepting connections again after {self._accept_failures} "
                    "failed attempt(s)"
                )
                self._accept_failures = 0
            # Descriptors are numbered lowest first: past the ceiling, few are left.
            if fd < self._fd_ceiling or self._make_room():
                sock.setblocking(False)
                if tcp:
                    # Keepalive on IPv4 and IPv6 alike (FLoM: IPv4 only, quirk Q17).
                    with contextlib.suppress(OSError):
                        tune_tcp(sock, self.options.tcp_keepalive_s)
                conn = (
                    ClientConnection(self, sock)
                    if self.tls is None
                    else TlsClientConnection(self, sock, self.tls.context())
                )
            else:
                conn = self._refuse(sock)  # kept until the client has read why
            self.connections[conn.id] = conn
            self._idle_since = None
            if self._stall_due is None:
                self._stall_due = self.loop.time() + self.options.stall_timeout_s
                self._arm_timer()
            conn.on_readable()  # FLoM clients send their request right after connecting

    def _make_room(self) -> bool:
        """Close the oldest connections (at most ROOM_BATCH) that neither hold nor wait
        for a lock: idle, or in the middle of a message or of a TLS handshake, for at
        least ROOM_MIN_AGE_S.  False when there is none (then none is looked for again
        for ACCEPT_RETRY_S: a look goes through every connection)."""
        now = self.loop.time()
        if now < self._room_look_after:
            return False
        involves = self.backend.involves
        started_before = now - ROOM_MIN_AGE_S
        candidates = [
            conn
            for conn in self.connections.values()
            if conn.message_since <= started_before
            and not (conn.closed or conn.lingering or involves(conn.id))
        ]
        if not candidates:
            self._room_look_after = now + ACCEPT_RETRY_S
            return False
        for conn in heapq.nsmallest(ROOM_BATCH, candidates, key=_message_since):
            doing = (
                "in a TLS handshake"
                if conn.handshaking
                else "in the middle of a message"
                if conn.protocol.pending
                else "idle"
            )
            self.log.warning(
                f"FLM061W closing connection {conn.id} ({doing} for "
                f"{now - conn.message_since:.0f} s) to make room for a new client: the "
                f"daemon is near its limit of {self._fd_limit} open files (raise the "
                "daemon's 'ulimit -n' if clients need more)",
                conn.peer_key(),
            )
            conn.close()
        return True

    def _refuse(self, sock: socket.socket) -> ClientConnection:
        """Tell a client there is no room for it: its request gets rc CONNECTION_REFUSED
        (over TLS once the handshake is done).  The connection returned is kept until
        the client closes it (MANAGEMENT_LINGER_S at most after the answer, its bytes
        discarded): closed at once, the request it is about to send would fail (EPIPE)
        before it reads why."""
        self._log_refusal(sock)
        sock.setblocking(False)
        if self.tls is not None:
            return RefusedTlsConnection(self, sock, self.tls.context())
        received = b""
        with contextlib.suppress(OSError):
            received = sock.recv(4096, socket.MSG_PEEK)  # decides the answer's kind
        conn = ClientConnection(self, sock)
        conn.send_raw(no_room_answer(received, self.peer_id))
        conn.linger()
        return conn

    def _refuse_at_once(self, sock: socket.socket) -> None:
        """:meth:`_refuse` without a descriptor to spare: the answer, then the end
        (what the client sent is read first, so that TCP ends without a reset).  A TLS
        client is not told: the connection just ends."""
        self._log_refusal(sock)
        with contextlib.suppress(OSError):
            sock.setblocking(False)
            received = b""
            with contextlib.suppress(BlockingIOError, InterruptedError):
                received = sock.recv(4096)
            if self.tls is None:
                sock.send(no_room_answer(received, self.peer_id))
            sock.shutdown(socket.SHUT_WR)
        sock.close()

    def _log_refusal(self, sock: socket.socket) -> None:
        peer = peer_key(sock)
        self.log.warning(
            f"FLM062W refused a connection from {peer}: no room for it, the daemon is at "
            f"its limit of {self._fd_limit} open files and its {len(self.connections)} "
            "connections hold or wait for locks (or have just come); raise the daemon's "
            "limit of open files ('ulimit -n' where it starts, LimitNOFILE= in a systemd "
            "unit)",
            peer,
        )

    def _refuse_with_reserve(self, listener: socket.socket, family: int) -> bool | None:
        """Out of descriptors: free the reserve one to take a client from the backlog
        and tell it why it is refused.  False when there is no reserve (or accept()
        failed again), None when nobody waits."""
        if self._reserve_fd is None:
            self._reserve_fd = _open_reserve()  # a descriptor may have come free since
            return False
        os.close(self._reserve_fd)
        try:
            fd, _ = listener._accept()  # type: ignore[attr-defined]
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return False
        else:
            self._refuse_at_once(socket.socket(family, socket.SOCK_STREAM, 0, fd))
            return True
        finally:  # once the refused connection is closed: its descriptor is the reserve
            self._reserve_fd = _open_reserve()

    def _pause_accepting(self, listener: socket.socket, family: int, exc: OSError) -> None:
        """Out of descriptors (or memory) with no room to make and no client to refuse:
        leave new clients in the backlog and try again later, instead of spinning on a
        listener that stays readable.  Logged once per episode, with the fix."""
        self._accept_failures += 1
        if self._accept_failures == 1:
            self.log.error(
                f"FLM019E accept failed: {exc.strerror or exc}; new clients wait in the "
                f"backlog, retrying every {ACCEPT_RETRY_S * 1000:g} ms (raise the limit of "
                "open files, 'ulimit -n', if this repeats)"
            )
        fd = listener.fileno()
        self.loop.remove_reader(fd)

        def resume() -> None:
            if not self.stopping and listener.fileno() == fd:
                self.loop.add_reader(fd, self._accept, listener, family)
                self._accept(listener, family)

        self.loop.call_later(ACCEPT_RETRY_S, resume)


def _message_since(conn: ClientConnection) -> float:
    return conn.message_since


def _open_reserve() -> int | None:
    """A descriptor kept to be closed when none is left (see LockDaemon._reserve_fd)."""
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def _asked(request: Request) -> str:
    """`` (EX)`` or `` (EX x3)``: the mode and, above one, the quantity asked."""
    quantity = f" x{request.quantity}" if request.quantity != 1 else ""
    return f" ({LockMode(request.mode).name}{quantity})"


def _file_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _unlink_if_ours(path: str, file_id: tuple[int, int] | None) -> None:
    """Remove the socket file unless another daemon has already replaced it."""
    if file_id is not None and _file_id(path) == file_id:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _report(ready_fd: int | None, status: int, reason: str = "") -> None:
    """Tell the starting client the start status (4 bytes), then why it failed (text)."""
    if ready_fd is not None:
        with contextlib.suppress(OSError):
            os.write(ready_fd, struct.pack("=i", status) + reason.encode()[:READY_REASON_MAX])
            os.close(ready_fd)


def _give_up(stack: contextlib.ExitStack, ready_fd: int | None, reason: str) -> None:
    """Close and remove what was opened (the socket first), then tell the starting
    client why: once told, it must not find this daemon still listening."""
    stack.close()
    _report(ready_fd, _rc.DAEMON_NOT_STARTED, reason)


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _event_loop_factory() -> type[asyncio.AbstractEventLoop] | None:
    if os.environ.get("PYFLOM_NO_UVLOOP"):
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.Loop


def _open_sockets(
    options: DaemonOptions, log: DaemonLog, stack: contextlib.ExitStack
) -> tuple[list[socket.socket], socket.socket | None, int]:
    """Open what ``options`` ask for (closed by ``stack``); raise :class:`ListenError`.
    Returns the listeners, the discovery socket and the lock file that owns the place
    (the socket's, the TCP address's, or the multicast group's)."""
    if options.socket_name is not None:
        listener, lock_fd = listen_unix(options.socket_name)
        stack.callback(os.close, lock_fd)
        stack.enter_context(listener)
        log.notice(f"FLM000I activating a local daemon on UNIX socket '{options.socket_name}'")
        return [listener], None, lock_fd
    discovery = None
    if options.multicast_address is not None:
        group, port = options.multicast_address, options.multicast_port
        if options.unicast_address is None:
            lock_fd = take_lock_file(discovery_lock_path(group, port))
            stack.callback(os.close, lock_fd)
        discovery = stack.enter_context(open_discovery(group, port, options.network_interface))
    if options.unicast_address is not None:
        listener = listen_tcp(
            options.unicast_address, options.unicast_port, options.network_interface
        )
        stack.enter_context(listener)
        # Taken once the port is ours (a daemon that left it has left this file too):
        # what the previous daemon on this address and port left behind is read there.
        lock_fd = take_lock_file(tcp_lock_path(listener))
        stack.callback(os.close, lock_fd)
    else:
        assert discovery is not None
        listener = listen_tcp_any(discovery.family)
        stack.enter_context(listener)
    log.notice(f"FLM001I activating a network daemon on TCP {show(listener.getsockname())}")
    if discovery is not None:
        log.notice(
            f"FLM002I joined multicast group {options.multicast_address} "
            f"port {options.multicast_port} for auto-discovery"
        )
    return [listener], discovery, lock_fd


def _log_state(log: DaemonLog, state: StateFile) -> None:
    durable = state.durable
    log.notice(
        f"FLM042I state file '{state.path}': {len(durable.sequences)} sequence(s) restored, "
        f"generations continue above {durable.generations.last}"
    )
    if state.torn_line_ignored:
        log.warning(
            f"FLM043W state file '{state.path}': ignored its incomplete last line (a daemon "
            "stopped while writing it, before answering anything that depended on it)"
        )


class BackendError(Exception):
    """The daemon's lock backend (etcd) cannot be used: a start failure, said plainly."""


async def _start_backend(backend: EtcdBackend, log: DaemonLog) -> None:
    """Connect a gateway to etcd (raises :class:`BackendError` saying why it cannot)."""
    from ..etcd.connect import EtcdSetupError

    try:
        await backend.start()
    except EtcdSetupError as exc:
        await backend.close()
        raise BackendError(str(exc)) from exc
    except Exception as exc:
        await backend.close()
        raise BackendError(
            f"cannot use etcd at {', '.join(backend.endpoints)}: {type(exc).__name__}: "
            f"{exc or 'no answer in time'} (is a majority of the members up and reachable?)"
        ) from exc
    log.notice(
        f"FLM069N gateway '{backend.gateway}' on etcd {', '.join(backend.endpoints)}: "
        f"lease {backend.lease:x}, TTL {backend.ttl} s; holders are dropped "
        f"{backend.drop_after:g} s after the last renewal etcd confirmed"
    )


def _mount_vfs(daemon: LockDaemon) -> StatusMount | None:
    """Mount the status file system if asked to (raises :class:`VfsError`)."""
    mount_point = daemon.options.mount_point_vfs
    if mount_point is None:
        return None
    from .vfs import mount  # only now: most daemons never mount anything

    # The loop handles these before libfuse starts: it takes those left at the default.
    for signum in (signal.SIGTERM, signal.SIGINT):
        daemon.loop.add_signal_handler(signum, daemon.stop)
    return mount(
        mount_point,
        daemon.loop,
        lambda: daemon.state_version,
        lambda: encode_status(daemon, time.time()),
        daemon.log,
    )


def refuse_to_start(reason: str, ready_fd: int | None) -> int:
    """A daemon whose settings cannot work: say why (stderr, and to the starting client
    through ``ready_fd``); the exit status."""
    print(f"flom daemon: {reason}", file=sys.stderr)
    _report(ready_fd, _rc.DAEMON_NOT_STARTED, reason)
    return 1


def run_daemon(options: DaemonOptions, ready_fd: int | None = None) -> int:
    """Run a daemon in this process until it is shut down or idle; return its exit status."""
    # The umask of the starting client is kept: the socket and its lock file are not
    # writable by other users unless that umask allows it (share a daemon among users
    # with -s and a permissive umask, e.g. `umask 000; flom -s /srv/flom ...`).
    os.chdir("/")
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    _raise_fd_limit()
    with contextlib.suppress(ValueError):
        options.stall_timeout_s = float(
            os.environ.get("PYFLOM_STALL_TIMEOUT", options.stall_timeout_s)
        )
    if options.log_level not in LEVELS:
        return refuse_to_start(
            f"log level {options.log_level!r} ($PYFLOM_LOG_LEVEL) is not one of "
            + ", ".join(LEVELS),
            ready_fd,
        )
    log = DaemonLog(
        options.trace_file, options.append_trace_file, options.log_level, ready_fd is None
    )
    access = None
    if options.access_rules is not None:
        try:
            access = AccessRules.load(options.access_rules)
        except AccessRulesError as exc:
            log.error(f"FLM082E {exc}")
            log.close()
            return refuse_to_start(str(exc), ready_fd)
        log.notice(
            f"FLM081N access rules: {len(access.rules)} rule(s) from '{access.path}'; "
            "what they do not grant is refused"
        )
    tls = None
    if options.tls is not None:
        try:
            tls = DaemonTls(options.tls, log)  # built once, before anything listens
        except TlsSetupError as failure:
            log.error(f"FLM018E {failure}")
            log.close()
            _report(ready_fd, failure.rc, str(failure))
            return 1
    with contextlib.ExitStack() as stack:
        stack.callback(log.close)
        try:
            listeners, discovery_socket, place_fd = _open_sockets(options, log, stack)
        except ListenError as exc:
            log.error(f"FLM019E {exc.reason}")
            _report(ready_fd, exc.rc, exc.reason)
            return 1
        socket_file = None if options.socket_name is None else _file_id(options.socket_name)
        if options.socket_name is not None:
            stack.callback(_unlink_if_ours, options.socket_name, socket_file)
        state = None
        if options.state_file is not None:
            # After the listeners: a daemon that loses the race for the socket or address
            # must report that (its client then connects to the winner), not a busy file.
            try:
                state = stack.enter_context(StateFile.open(options.state_file, time.time()))
            except StateFileError as exc:
                log.error(f"FLM040E {exc}")
                _give_up(stack, ready_fd, str(exc))
                return 1
            _log_state(log, state)
        metrics_listeners: list[socket.socket] = []
        if options.metrics_address is not None:
            try:
                metrics_listeners = open_endpoint(options.metrics_address)
            except MetricsSetupError as exc:
                log.error(f"{exc.ident} {exc}")
                _give_up(stack, ready_fd, str(exc))
                return 1
            for listener in metrics_listeners:
                stack.enter_context(listener)

        async def main() -> None:
            daemon = LockDaemon(options, log, tls, state, access)
            daemon.socket_file = socket_file
            exporter: MetricsServer | None = None
            if metrics_listeners:
                from .exporter import MetricsServer  # loads prometheus_client

                exporter = await MetricsServer.serve(daemon, metrics_listeners)
            if daemon.etcd is not None:
                # A gateway needs no holders mark nor lock-delay: the locks of a gateway
                # that died stay in etcd until its lease expires, which outlasts the
                # lock-loss grace of its clients (docs/ha.md).
                await _start_backend(daemon.etcd, log)
            else:
                daemon.place_fd = place_fd
                mark = read_holders_mark(place_fd)
                if mark is not None:
                    predecessor, delay_ms = mark
                    daemon.start_lock_delay(predecessor, max(delay_ms, options.lock_delay_ms))
            responder = None
            if discovery_socket is not None:
                responder = DiscoveryResponder(
                    discovery_socket,
                    advertised_address(options.unicast_address),
                    listeners[0].getsockname()[1],
                    log,
                )
            status_fs = _mount_vfs(daemon)
            try:
                _report(ready_fd, _rc.OK)
                log.notice("FLM003N ready to serve requests")
                await daemon.serve(listeners, responder)
            finally:
                if exporter is not None:
                    exporter.close()
                if status_fs is not None:
                    status_fs.unmount()
                if daemon.etcd is not None:
                    await daemon.etcd.close()  # revokes the lease: its keys go at once

        factory = _event_loop_factory()
        try:
            if factory is None:
                asyncio.run(main())
            else:
                with asyncio.Runner(loop_factory=factory) as runner:
                    runner.run(main())
        except VfsError as exc:
            log.error(f"FLM030E {exc}")
            _give_up(stack, ready_fd, str(exc))
            return 1
        except BackendError as exc:
            log.error(f"FLM072E {exc}")
            _give_up(stack, ready_fd, str(exc))
            return 1
    return 0
