"""The daemon's log: syslog with FLoM's message ids, plus an optional trace file.

Levels (syslog priorities): ``err`` failures, ``warning`` a client misbehaved,
``notice`` lifecycle (start, ready, shutdown), ``info`` routine events, among them one
line per lock event: FLM050I grant, FLM051I release, FLM052I refusal, FLM053I lost
client, FLM054I queued.  ``level`` keeps the messages at that priority or above
(default ``info``: all of them).  Without a syslog socket (``/dev/log``) nothing is sent
to syslog; a daemon run in the foreground then writes its log to stderr instead.
"""

from __future__ import annotations

import contextlib
import os
import sys
import syslog
import threading
import time
from collections import deque
from typing import TextIO

SYSLOG_SOCKET = "/dev/log"
LEVELS = {
    "err": syslog.LOG_ERR,
    "warning": syslog.LOG_WARNING,
    "notice": syslog.LOG_NOTICE,
    "info": syslog.LOG_INFO,
}
_NAMES = {priority: name for name, priority in LEVELS.items()}
STDERR_BACKLOG = 10_000  # lines waiting for a slow stderr; more are dropped and counted
STDERR_DRAIN_S = 1.0  # how long closing waits for the backlog to be written


class StderrWriter:
    """Writes log lines to a stream from a thread of its own, so that a stderr nobody
    reads (a full pipe) never blocks the daemon: past :data:`STDERR_BACKLOG` waiting
    lines, lines are dropped, and the next write says how many."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lines: deque[str] = deque()
        self._dropped = 0
        self._ready = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="stderr-log", daemon=True)
        self._thread.start()

    def write(self, line: str) -> None:
        """Queue ``line`` (ending with a newline) without waiting."""
        with self._ready:
            if len(self._lines) >= STDERR_BACKLOG:
                self._dropped += 1
                return
            if not self._lines:  # else the writer is awake or about to take them
                self._ready.notify()
            self._lines.append(line)

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._lines and not self._closed:
                    self._ready.wait()
                if not self._lines:
                    return
                batch = list(self._lines)
                self._lines.clear()
                dropped, self._dropped = self._dropped, 0
            if dropped:
                batch.insert(0, f"flom[{os.getpid()}]: {dropped} log line(s) dropped\n")
            try:
                self._stream.write("".join(batch))
                self._stream.flush()
            except (OSError, ValueError):
                return  # stderr is gone: nothing more can be said there

    def close(self) -> None:
        """Write what is queued (waiting at most :data:`STDERR_DRAIN_S`), then stop."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join(STDERR_DRAIN_S)


class DaemonLog:
    """Writes ``FLMnnnX`` messages to syslog (ident ``flom``, facility daemon) and, when
    a trace file is configured, every message and trace line to that file."""

    def __init__(
        self,
        trace_file: str | None = None,
        append: bool = False,
        level: str = "info",
        foreground: bool = False,
    ) -> None:
        self.level = LEVELS[level]
        self._syslog = os.path.exists(SYSLOG_SOCKET)
        self._stderr = StderrWriter(sys.stderr) if foreground and not self._syslog else None
        if self._syslog:
            syslog.openlog("flom", syslog.LOG_PID, syslog.LOG_DAEMON)
        self._trace: TextIO | None = None
        if trace_file:
            self._trace = open(trace_file, "a" if append else "w", buffering=1)  # noqa: SIM115
        # Whether info lines go anywhere: lock events are not even formatted otherwise.
        self.lock_events = self.level >= syslog.LOG_INFO and (
            self._syslog or self._stderr is not None or self._trace is not None
        )

    def _emit(self, priority: int, text: str) -> None:
        if priority > self.level:
            return
        if self._syslog:
            syslog.syslog(priority, text)
        if self._stderr is not None:
            self._stderr.write(f"flom[{os.getpid()}] {_NAMES[priority]}: {text}\n")
        self.trace(text)

    def notice(self, text: str) -> None:
        """A notable lifecycle event (FLM000I, FLM003N, FLM007N...)."""
        self._emit(syslog.LOG_NOTICE, text)

    def info(self, text: str) -> None:
        """Routine information (lock events among them)."""
        self._emit(syslog.LOG_INFO, text)

    def warning(self, text: str) -> None:
        """A client misbehaved; it was dealt with."""
        self._emit(syslog.LOG_WARNING, text)

    def error(self, text: str) -> None:
        """Something failed."""
        self._emit(syslog.LOG_ERR, text)

    def trace(self, text: str) -> None:
        """A line for the trace file only (FLoM's trace line format)."""
        if self._trace is not None:
            now = time.time()
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
            try:
                self._trace.write(f"{stamp}.{int(now % 1 * 1e6):06d} [daemon] {text}\n")
            except OSError as exc:  # a full disk or a file size limit: never fatal
                trace, self._trace = self._trace, None
                with contextlib.suppress(OSError):
                    trace.close()
                self.error(f"FLM044E trace file no longer written: {exc.strerror or exc}")

    def close(self) -> None:
        """Flush and close the trace file and stderr's writer."""
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        if self._trace is not None:
            self._trace.close()
            self._trace = None
