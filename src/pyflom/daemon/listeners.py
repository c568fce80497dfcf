"""The daemon's sockets: one UNIX listener, or a TCP listener plus a UDP discovery socket.

Each opener returns a FLoM rc and what it opened; ``rc.FLOCK_ERROR`` always means
"another daemon owns this place", which the starting client answers by connecting to
that daemon instead.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import struct
import tempfile

from .. import rc as _rc
from ..errors import ConnectionFailed
from ..netaddr import WILDCARDS, interface_index, resolve
from ..settings import user_label

LISTEN_BACKLOG = 4096
BIND_ERROR = _rc.SYSCALL_ERRORS["bind"]


class ListenError(Exception):
    """A listener could not be opened: ``rc`` for the starting client, ``reason`` to log."""

    def __init__(self, rc: int, reason: str) -> None:
        super().__init__(reason)
        self.rc = rc
        self.reason = reason


def take_lock_file(path: str) -> int:
    """Hold ``path`` (flock) for the daemon's life; return its descriptor.

    Created with mode 0666 less the umask; a symbolic link is never followed, and a file
    this user may not open is a plain error, not a crash."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            why = "it is a symbolic link, which a daemon never follows"
        elif exc.errno in (errno.EACCES, errno.EPERM):
            why = f"{exc.strerror} ({_owner_of(path)}); remove it or use another socket name"
        else:
            why = exc.strerror or str(exc)
        raise ListenError(_rc.SYSCALL_ERRORS["open"], f"cannot open '{path}': {why}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ListenError(_rc.FLOCK_ERROR, f"'{path}' is held by another daemon") from None
    return fd


def _owner_of(path: str) -> str:
    """``owned by user 'NAME' (uid N)`` for ``path``, as far as it can be told."""
    try:
        return f"owned by {user_label(os.lstat(path).st_uid)}"
    except OSError:
        return "owner unknown"


def listen_unix(path: str) -> tuple[socket.socket, int]:
    """Own ``path`` (through ``path.lock``) and listen on it; returns (socket, lock fd)."""
    lock_fd = take_lock_file(path + ".lock")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        listener.listen(LISTEN_BACKLOG)
    except OSError as exc:
        listener.close()
        os.close(lock_fd)
        raise ListenError(BIND_ERROR, f"cannot listen on '{path}': {exc.strerror}") from None
    return listener, lock_fd


def _stream_listener(family: int, sockaddr: tuple) -> socket.socket:  # type: ignore[type-arg]
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(sockaddr)
        listener.listen(LISTEN_BACKLOG)
    except OSError:
        listener.close()
        raise
    return listener


def listen_tcp(address: str, port: int, interface: str | None) -> socket.socket:
    """Listen on the first usable address of ``address``:``port`` (``-a``/``-p``)."""
    try:
        candidates = resolve(address, port, socket.SOCK_STREAM, interface=interface, passive=True)
    except ConnectionFailed as exc:
        raise ListenError(exc.rc, str(exc)) from None
    failure: OSError | None = None
    for family, sockaddr in candidates:
        try:
            return _stream_listener(family, sockaddr)
        except OSError as exc:
            failure = exc
    if failure is not None and failure.errno == errno.EADDRINUSE:
        raise ListenError(_rc.FLOCK_ERROR, f"{address} port {port} is already in use")
    reason = failure.strerror if failure is not None else "no usable address"
    raise ListenError(BIND_ERROR, f"cannot listen on {address} port {port}: {reason}")


def listen_tcp_any(family: int) -> socket.socket:
    """Listen on the wildcard address and a port the system picks (``-A`` without ``-a``)."""
    wildcard = ("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0)
    try:
        return _stream_listener(family, wildcard)
    except OSError as exc:
        raise ListenError(BIND_ERROR, f"cannot listen on a TCP port: {exc.strerror}") from None


def _host_lock_path(kind: str, name: str, port: int) -> str:
    """A per-host lock file named by ``kind``, ``name`` and ``port``.  The network
    namespace is part of the name: it is what a "host" is to the network."""
    try:
        netns = os.stat("/proc/self/ns/net").st_ino
    except OSError:
        netns = 0
    safe = "".join(c if c.isalnum() else "_" for c in name)
    return os.path.join(tempfile.gettempdir(), f"flom-{kind}-{netns}-{safe}-{port}.lock")


def discovery_lock_path(group: str, port: int) -> str:
    """A per-host lock file for daemons that only a multicast group names, so that clients
    starting at the same moment on one host end with one daemon (FLoM can start several)."""
    return _host_lock_path("discovery", group, port)


def tcp_lock_path(listener: socket.socket) -> str:
    """The lock file of a TCP daemon, named by the address and port it is bound to (the
    numeric address: every spelling of it names one file) and by this user: what a
    daemon that died leaves there tells the next one on that port (see
    :func:`read_holders_mark`)."""
    host, port = listener.getsockname()[:2]
    return _host_lock_path(f"tcp-{os.getuid()}", host, port)


# -- the holders mark ---------------------------------------------------------------------
# A daemon writes the mark into its lock file while connections may hold locks and removes
# it once none does (and when it exits cleanly).  A daemon that finds the mark when it
# takes the lock file knows that its predecessor died with holders whose commands may
# still run (for up to their lock-loss grace): it grants nothing for a lock-delay first.
_MARK = "pyflom-holders pid {pid} lock-delay-ms {delay_ms}"
_MARK_SIZE = 80  # written whole, in place: one pwrite, no truncation needed


def write_holders_mark(fd: int, delay_ms: int) -> None:
    """Mark the lock file ``fd``: holders may exist, ``delay_ms`` is the lock-delay the
    next daemon must keep if this one dies now."""
    text = _MARK.format(pid=os.getpid(), delay_ms=delay_ms)
    os.pwrite(fd, text.encode().ljust(_MARK_SIZE - 1) + b"\n", 0)


def clear_holders_mark(fd: int) -> None:
    """Remove the mark: no connection holds a lock."""
    os.ftruncate(fd, 0)


def read_holders_mark(fd: int) -> tuple[int | None, int] | None:
    """The mark a previous daemon left in the lock file ``fd``: (its pid, its
    lock-delay in ms), None when there is none.  Unreadable content counts as a mark
    (pid None, delay 0: the reader's own lock-delay applies)."""
    try:
        data = os.pread(fd, _MARK_SIZE, 0)
    except OSError:
        return None
    if not data.strip():
        return None
    words = data.decode(errors="replace").split()
    try:
        return int(words[2]), int(words[4])
    except (IndexError, ValueError):
        return None, 0


def open_discovery(group: str, port: int, interface: str | None) -> socket.socket:
    """A UDP socket on wildcard:``port`` that has joined ``group`` (on ``interface`` when
    given, else on the interface the system picks), ready to answer discover queries."""
    try:
        family, sockaddr = resolve(group, port, socket.SOCK_DGRAM, interface=interface)[0]
    except (ConnectionFailed, IndexError):
        raise ListenError(
            _rc.SYSCALL_ERRORS["getaddrinfo"], f"cannot resolve multicast group '{group}'"
        ) from None
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        packed = socket.inet_pton(family, sockaddr[0].split("%")[0])
        if family == socket.AF_INET6:
            sock.bind(("::", port))
            index = sockaddr[3] or interface_index(interface)
            membership = packed + struct.pack("@I", index)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, membership)
        else:
            sock.bind(("0.0.0.0", port))
            membership = packed + socket.inet_aton("0.0.0.0")
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
    except OSError as exc:
        sock.close()
        raise ListenError(
            BIND_ERROR, f"cannot join multicast group {group} port {port}: {exc.strerror}"
        ) from None
    return sock


def advertised_address(unicast_address: str | None) -> str:
    """The address discovery replies announce: the configured one, or "" for a wildcard
    (clients then use the reply's source address), as FLoM."""
    if unicast_address is None or unicast_address in WILDCARDS:
        return ""
    return unicast_address
