"""The daemon's state file (``--state-file``): what must survive a restart or a crash.

It keeps each sequence's counter and rolled-back values, and a generation ceiling
reserved ahead of the generations handed out (so a restarted daemon starts above it,
whatever the clock says).  The daemon appends what an event changed and fdatasyncs it
*before* answering; so a daemon killed at any moment never hands out a number twice.

Format: UTF-8 JSON, one object per line.  The first line is the header
``{"format": "pyflom state file", "version": 1}``; every other line is a record
``{"ceiling": N, "sequences": {"_s_x[1]": {"counter": C, "returned": [V, ...]}}}``
(both keys optional; a later record replaces what an earlier one said about the same
sequence).  A final line without its newline (a crash while appending) is ignored: its
write never completed, so nothing it carried was answered.  Anything else that does not
parse, or goes backwards, makes the daemon refuse to start, naming the file, the line
and the cause; so does an existing empty file (this module never leaves one: a state
file starts life complete, by a rename).  The file is rewritten (a new temp file
``FILE.tmp.XXXXXXXX``, fsync, rename, directory fsync) at start and when it has grown past
a bound, keeping its mode and owner.  ``FILE.lock`` (flock, with the owner's PID) keeps
a second daemon off the file: the lock cannot be on the file itself, which each rewrite
replaces.

Another user must not be able to turn these files against the daemon's user: the
directory is opened once and every name is used relative to it, never through a
symbolic link; the directory must belong to that user or root and be writable by nobody
else unless it is sticky (like /tmp: others cannot rename or remove our files there), and
in a sticky directory every existing file must be that user's own.  Nobody else may
write in the state file either.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import stat
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..core.durable import (
    GENERATION_RESERVE,
    DurableChanges,
    DurableState,
    SequenceState,
    clock_us,
)
from ..names import ResourceType, resource_type

HEADER = {"format": "pyflom state file", "version": 1}
COMPACT_MIN_BYTES = 64 * 1024  # rewrite once the log is past this and 4x its last size
LOCK_WAIT_S = 1.0  # a daemon that is exiting still holds the file for a moment
_MAX_INT = (1 << 63) - 1


class StateFileError(Exception):
    """The state file cannot be used; the text names the file and the cause."""


class StateFile:
    """An open, locked state file and the :class:`DurableState` loaded from it.

    Use :meth:`open`; then :meth:`record` what the lock table reports, before answering.
    """

    def __init__(self, path: str, durable: DurableState, dir_fd: int, lock_fd: int) -> None:
        self.path = path
        self.durable = durable
        self.torn_line_ignored = False
        self._name = os.path.basename(path)
        self._dir_fd = dir_fd
        self._lock_fd = lock_fd
        self._fd = -1
        self._like: os.stat_result | None = None  # the loaded file's: its first rewrite's
        self._size = 0
        self._bound = COMPACT_MIN_BYTES
        # Told how long each sync took: ("append" or "rewrite", seconds); the metrics'.
        self.on_sync: Callable[[str, float], None] | None = None

    @classmethod
    def open(cls, path: str, now: float, reserve: int = GENERATION_RESERVE) -> StateFile:
        """Lock, load and rewrite the state file at ``path`` (created if absent);
        ``now`` is the wall clock in seconds.  Raises :class:`StateFileError`."""
        path = os.path.abspath(path)
        files = _Directory.open(path)
        lock_fd = -1
        try:
            lock_fd = _lock(files, path)
            ceiling, sequences, torn, like = _load(files, path)
            durable = DurableState(max(ceiling, clock_us(now)), sequences, reserve)
            state = cls(path, durable, files.fd, lock_fd)
            state.torn_line_ignored = torn
            state._like = like
            files.remove_temp_files(state._name)
            state.compact()
        except BaseException:
            if lock_fd >= 0:
                os.close(lock_fd)
            os.close(files.fd)
            raise
        return state

    def record(self, changes: DurableChanges) -> None:
        """Append ``changes`` and wait until they are on disk (fdatasync); rewrite the
        file when it has grown too much.  Raises :class:`StateFileError`: the daemon
        must then answer nothing more (what it holds in memory is no longer durable)."""
        data = (json.dumps(_record(changes), separators=(",", ":")) + "\n").encode()
        started = time.perf_counter()
        try:
            _write_all(self._fd, data)
            os.fdatasync(self._fd)
        except OSError as exc:
            raise StateFileError(
                f"cannot write state file '{self.path}': {exc.strerror or exc}"
            ) from None
        if self.on_sync is not None:
            self.on_sync("append", time.perf_counter() - started)
        self._size += len(data)
        if self._size > self._bound:
            self.compact()

    def compact(self) -> None:
        """Replace the file by the whole current state, atomically and durably: a new
        temp file (never an existing one), with the mode and owner of the file it
        replaces, renamed over it; it stays open for the records that follow."""
        lines = [HEADER, _record(self.durable.snapshot())]
        data = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
        dir_fd = self._dir_fd
        started = time.perf_counter()
        try:
            temp, fd = _create_temp(dir_fd, self._name)
            try:
                like = os.fstat(self._fd) if self._fd >= 0 else self._like
                if like is not None:
                    _take_owner_and_mode(fd, like)
                _write_all(fd, data.encode())
                os.fsync(fd)
                os.rename(temp, self._name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                os.fsync(dir_fd)
            except BaseException:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(temp, dir_fd=dir_fd)
                raise
        except OSError as exc:
            raise StateFileError(
                f"cannot write state file '{self.path}': {exc.strerror or exc}"
            ) from None
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd
        self._size = len(data)
        self._bound = max(COMPACT_MIN_BYTES, 4 * self._size)
        if self.on_sync is not None:
            self.on_sync("rewrite", time.perf_counter() - started)

    def close(self) -> None:
        """Close the file and release its lock (another daemon may use it then)."""
        for fd in (self._fd, self._lock_fd, self._dir_fd):
            if fd >= 0:
                os.close(fd)
        self._fd = self._lock_fd = self._dir_fd = -1

    def __enter__(self) -> StateFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Directory:
    """The state file's directory, open, checked to be safe from other users."""

    def __init__(self, fd: int, path: str, shared: bool) -> None:
        self.fd = fd
        self.path = path
        self.shared = shared  # sticky: others may create names here, not touch ours

    @classmethod
    def open(cls, path: str) -> _Directory:
        """Open the directory of the state file at ``path`` and check who can write in
        it: the daemon's user (or root) only, or anybody if sticky."""
        directory = os.path.dirname(path)
        where = f"state file '{path}': its directory '{directory}'"
        try:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise StateFileError(f"{where} does not exist") from None
        except OSError as exc:
            raise StateFileError(f"{where} cannot be opened: {exc.strerror}") from None
        info = os.fstat(fd)
        sticky = bool(info.st_mode & stat.S_ISVTX)
        mode = stat.S_IMODE(info.st_mode)
        problem = None
        if info.st_uid not in (0, os.geteuid()):
            problem = (
                f"belongs to another user (uid {info.st_uid}), who could replace the state "
                "file or plant links in it: use a directory of your own"
            )
        elif mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky:
            problem = (
                f"is writable by other users (mode {mode:o}), who could replace the state "
                "file or plant links in it: make it writable by its owner only (chmod go-w "
                f"'{directory}') or use another directory"
            )
        if problem is not None:
            os.close(fd)
            raise StateFileError(f"{where} {problem}")
        return cls(fd, directory, sticky)

    def open_file(self, name: str, flags: int, what: str) -> tuple[int, os.stat_result]:
        """Open ``name`` (``flags``: O_CREAT may be among them) without following a
        link; refuse anything but a regular file, with one link, and in a shared
        directory anything not the daemon's user's own.  FileNotFoundError passes."""
        flags |= os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(name, flags, 0o644, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StateFileError(
                    f"{what} is a symbolic link: refusing to follow it (another user may have "
                    "pointed it at a file that would be overwritten); remove it, or give the "
                    "real path"
                ) from None
            if exc.errno == errno.ENOENT:
                raise
            raise StateFileError(f"{what} cannot be opened: {exc.strerror}") from None
        info = os.fstat(fd)
        problem = None
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "a special file"
            problem = f"is not a regular file but {kind}"
        elif info.st_nlink != 1:
            problem = (
                f"has {info.st_nlink} hard links: it may be another file as well, which "
                "would be overwritten; remove it"
            )
        elif self.shared and info.st_uid != os.geteuid():
            problem = (
                f"belongs to another user (uid {info.st_uid}) in a directory where anybody "
                "may create files: it is not this daemon's; remove it, or use a directory of "
                "your own"
            )
        if problem is not None:
            os.close(fd)
            raise StateFileError(f"{what} {problem}")
        return fd, info

    def remove_temp_files(self, name: str) -> None:
        """Remove the temp files of ``name`` an earlier daemon was killed before renaming
        (the caller holds the lock: no other daemon is writing one)."""
        prefix = name + ".tmp"
        with contextlib.suppress(OSError):
            for entry in os.listdir(self.fd):
                if entry == prefix or entry.startswith(prefix + "."):
                    with contextlib.suppress(OSError):
                        os.unlink(entry, dir_fd=self.fd)


def _create_temp(dir_fd: int, name: str) -> tuple[str, int]:
    """Create a new temp file for ``name`` (a fresh random name, O_EXCL): its name and
    descriptor, open for appending."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(100):
        temp = f"{name}.tmp.{secrets.token_hex(4)}"
        try:
            return temp, os.open(temp, flags, 0o644, dir_fd=dir_fd)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name")


def _take_owner_and_mode(fd: int, like: os.stat_result) -> None:
    """Give the file at ``fd`` the owner, group and permissions of ``like``: the owner
    only if this process may (root may give a file to anybody, others to nobody), the
    group if it is one of theirs."""
    for uid in (like.st_uid, -1):
        with contextlib.suppress(PermissionError):
            os.fchown(fd, uid, like.st_gid)
            break
    os.fchmod(fd, stat.S_IMODE(like.st_mode))


def _lock(files: _Directory, path: str) -> int:
    """Hold ``path.lock`` (flock) and write our PID in it; refuse if another daemon has it."""
    lock_path = path + ".lock"
    what = f"state file '{path}': its lock file '{lock_path}'"
    try:
        fd, _ = files.open_file(os.path.basename(lock_path), os.O_RDWR | os.O_CREAT, what)
    except FileNotFoundError as exc:  # the directory was removed meanwhile
        raise StateFileError(f"{what} cannot be opened: {exc.strerror}") from None
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                os.close(fd)
                raise StateFileError(
                    f"state file '{path}': cannot lock '{lock_path}': {exc.strerror}"
                ) from None
            if time.monotonic() > deadline:
                owner = _read_owner(fd)
                os.close(fd)
                raise StateFileError(
                    f"state file '{path}' is in use by another daemon{owner}: two daemons "
                    "must never share a state file (give each daemon its own)"
                ) from None
            time.sleep(0.02)
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _read_owner(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        return f" (pid {int(os.pread(fd, 32, 0))})"
    return ""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _record(changes: DurableChanges) -> dict[str, Any]:
    record: dict[str, Any] = {}
    if changes.ceiling is not None:
        record["ceiling"] = changes.ceiling
    if changes.sequences:
        record["sequences"] = {
            name: {"counter": state.counter, "returned": list(state.returned)}
            for name, state in changes.sequences.items()
        }
    return record


class _Corrupt(Exception):
    """One line of the file is not what pyflom writes."""


def _load(
    files: _Directory, path: str
) -> tuple[int, dict[str, SequenceState], bool, os.stat_result | None]:
    """(generation ceiling, sequences, whether a torn last line was ignored, the file's
    status) of the file at ``path``; an absent file is a new, empty state."""
    try:
        fd, info = files.open_file(os.path.basename(path), os.O_RDONLY, f"state file '{path}'")
    except FileNotFoundError:
        return 0, {}, False, None
    mode = stat.S_IMODE(info.st_mode)
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        os.close(fd)
        raise StateFileError(
            f"state file '{path}' is writable by other users (mode {mode:o}), who could "
            f"change the numbers it holds: chmod go-w '{path}'"
        )
    try:
        with open(fd, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise StateFileError(f"cannot read state file '{path}': {exc.strerror}") from None
    if not data:
        raise StateFileError(
            f"state file '{path}' is empty: pyflom never leaves a state file empty, so the "
            "numbers it should hold may have been lost, and sequences would start again at "
            "1, handing out numbers already given.  Restore it from a backup, or remove it "
            "to start every sequence afresh at 1"
        )
    lines = data.split(b"\n")
    torn = lines.pop() != b""  # what follows the last newline: a line never completed
    if not lines:
        raise StateFileError(
            f"state file '{path}' is not a pyflom state file (no complete first line); "
            "refusing to overwrite it"
        )
    ceiling = 0
    sequences: dict[str, SequenceState] = {}
    for number, raw in enumerate(lines, start=1):
        try:
            try:
                value = json.loads(raw.decode("utf-8"))
            except ValueError as exc:
                if number == 1:
                    value = None  # not ours: refused just below
                else:
                    raise _Corrupt(f"not JSON ({exc})") from None
            if number == 1:
                if value != HEADER:
                    raise StateFileError(
                        f"state file '{path}' is not a pyflom state file (its first line "
                        f"is not {json.dumps(HEADER)}); refusing to overwrite it"
                    )
                continue
            ceiling = _apply(value, ceiling, sequences)
        except _Corrupt as exc:
            raise StateFileError(
                f"state file '{path}' is corrupt at line {number}: {exc}.  Restore it from "
                "a backup; removing it restarts every sequence at 1"
            ) from None
    return ceiling, sequences, torn, info


def _count(value: object, what: str, low: int = 0) -> int:
    if type(value) is not int or not low <= value <= _MAX_INT:
        raise _Corrupt(f"{what} is {value!r}, not a whole number from {low} to {_MAX_INT}")
    return value


def _apply(record: object, ceiling: int, sequences: dict[str, SequenceState]) -> int:
    """Check one record, apply it to ``sequences``; return the new ceiling."""
    if not isinstance(record, dict) or not set(record) <= {"ceiling", "sequences"}:
        raise _Corrupt("not a record (an object with 'ceiling' and/or 'sequences')")
    if "ceiling" in record:
        new = _count(record["ceiling"], "the ceiling")
        if new < ceiling:
            raise _Corrupt(f"the generation ceiling goes back from {ceiling} to {new}")
        ceiling = new
    changed = record.get("sequences", {})
    if not isinstance(changed, dict):
        raise _Corrupt("'sequences' is not an object")
    for name, entry in changed.items():
        if resource_type(name) != ResourceType.SEQUENCE:
            raise _Corrupt(f"{name!r} is not a sequence resource name")
        if not isinstance(entry, dict) or set(entry) != {"counter", "returned"}:
            raise _Corrupt(f"sequence {name!r}: not an object with 'counter' and 'returned'")
        counter = _count(entry["counter"], f"the counter of {name!r}")
        returned = entry["returned"]
        if not isinstance(returned, list):
            raise _Corrupt(f"sequence {name!r}: 'returned' is not a list")
        values = [_count(v, f"a returned value of {name!r}", 1) for v in returned]
        if any(v > counter for v in values) or len(set(values)) != len(values):
            raise _Corrupt(f"sequence {name!r}: returned values {values} do not fit {counter}")
        old = sequences.get(name)
        if old is not None and counter < old.counter:
            raise _Corrupt(f"the counter of {name!r} goes back from {old.counter} to {counter}")
        sequences[name] = SequenceState(counter, deque(values))
    return ceiling
