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
and the cause.  The file is rewritten (temp file, fsync, rename, directory fsync) at
start and when it has grown past a bound.  ``FILE.lock`` (flock, with the owner's PID)
keeps a second daemon off the file: the lock cannot be on the file itself, which each
rewrite replaces.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from collections import deque
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

    def __init__(self, path: str, durable: DurableState, lock_fd: int) -> None:
        self.path = path
        self.durable = durable
        self.torn_line_ignored = False
        self._lock_fd = lock_fd
        self._fd = -1
        self._size = 0
        self._bound = COMPACT_MIN_BYTES

    @classmethod
    def open(cls, path: str, now: float, reserve: int = GENERATION_RESERVE) -> StateFile:
        """Lock, load and rewrite the state file at ``path`` (created if absent);
        ``now`` is the wall clock in seconds.  Raises :class:`StateFileError`."""
        path = os.path.abspath(path)
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            raise StateFileError(f"state file '{path}': its directory '{directory}' does not exist")
        lock_fd = _lock(path)
        try:
            ceiling, sequences, torn = _load(path)
            durable = DurableState(max(ceiling, clock_us(now)), sequences, reserve)
            state = cls(path, durable, lock_fd)
            state.torn_line_ignored = torn
            state.compact()
        except BaseException:
            os.close(lock_fd)
            raise
        return state

    def record(self, changes: DurableChanges) -> None:
        """Append ``changes`` and wait until they are on disk (fdatasync); rewrite the
        file when it has grown too much.  Raises :class:`StateFileError`: the daemon
        must then answer nothing more (what it holds in memory is no longer durable)."""
        data = (json.dumps(_record(changes), separators=(",", ":")) + "\n").encode()
        try:
            _write_all(self._fd, data)
            os.fdatasync(self._fd)
        except OSError as exc:
            raise StateFileError(
                f"cannot write state file '{self.path}': {exc.strerror or exc}"
            ) from None
        self._size += len(data)
        if self._size > self._bound:
            self.compact()

    def compact(self) -> None:
        """Replace the file by the whole current state, atomically and durably."""
        lines = [HEADER, _record(self.durable.snapshot())]
        data = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
        temp = self.path + ".tmp"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                _write_all(fd, data.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, self.path)
            _fsync_directory(os.path.dirname(self.path))
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        except OSError as exc:
            raise StateFileError(
                f"cannot write state file '{self.path}': {exc.strerror or exc}"
            ) from None
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd
        self._size = len(data)
        self._bound = max(COMPACT_MIN_BYTES, 4 * self._size)

    def close(self) -> None:
        """Close the file and release its lock (another daemon may use it then)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> StateFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _lock(path: str) -> int:
    """Hold ``path.lock`` (flock) and write our PID in it; refuse if another daemon has it."""
    lock_path = path + ".lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StateFileError(
            f"state file '{path}': cannot open its lock file '{lock_path}': {exc.strerror}"
        ) from None
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


def _fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


def _load(path: str) -> tuple[int, dict[str, SequenceState], bool]:
    """(generation ceiling, sequences, whether a torn last line was ignored) of the file
    at ``path``; an absent or empty file is a new, empty state."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        return 0, {}, False
    except OSError as exc:
        raise StateFileError(f"cannot read state file '{path}': {exc.strerror}") from None
    if not data:
        return 0, {}, False
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
    return ceiling, sequences, torn


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
