"""The daemon's log: syslog with FLoM's message ids, plus an optional trace file.

Levels (syslog priorities): ``err`` failures, ``warning`` a client misbehaved,
``notice`` lifecycle (start, ready, shutdown), ``info`` routine events, among them one
line per lock event: FLM050I grant, FLM051I release, FLM052I refusal, FLM053I lost
client, FLM054I queued.  ``level`` keeps the messages at that priority or above
(default ``info``: all of them).  Without a syslog socket (``/dev/log``) nothing is sent
to syslog; a daemon run in the foreground then writes its log to stderr instead.  Either
way a thread of its own sends the lines, in batches (:class:`LogWriter`): the event loop
only queues them.
"""

from __future__ import annotations

import contextlib
import os
import sys
import syslog
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TextIO

SYSLOG_SOCKET = "/dev/log"
LEVELS = {
    "err": syslog.LOG_ERR,
    "warning": syslog.LOG_WARNING,
    "notice": syslog.LOG_NOTICE,
    "info": syslog.LOG_INFO,
}
_NAMES = {priority: name for name, priority in LEVELS.items()}
LOG_BACKLOG = 10_000  # lines waiting for the writer; more are dropped and counted
LOG_DRAIN_S = 1.0  # how long closing waits for the backlog to be written
LOG_BATCH_S = 0.05  # while lines keep coming, the writer writes them this often

Sink = Callable[[list[tuple[int, str]]], None]


class LogWriter:
    """Hands ``(priority, text)`` lines to ``sink`` from a thread of its own, in batches.

    The event loop only queues a line: sending it (a syslog datagram, a write to stderr)
    cost the loop more than the lock event it tells of, and a stderr nobody reads (a full
    pipe) would block it.  While lines keep coming the thread wakes every
    :data:`LOG_BATCH_S`; when none come it sleeps until the next one.  Past
    :data:`LOG_BACKLOG` waiting lines, lines are dropped, and the next batch says how
    many.  A sink that raises OSError or ValueError (stderr is gone) ends the writer."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._lines: deque[tuple[int, str]] = deque()
        self._dropped = 0  # ever dropped (only grows)
        self._reported = 0  # of which the writer has said so
        self._wake = threading.Condition()
        self._sleeping = False  # waiting for a line, not napping between batches
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    def write(self, priority: int, text: str) -> None:
        """Queue a line without waiting (from any thread)."""
        if len(self._lines) >= LOG_BACKLOG:
            self._dropped += 1
            return
        self._lines.append((priority, text))
        if self._sleeping:  # set before the writer looks at the queue a last time
            with self._wake:
                self._wake.notify()

    def _run(self) -> None:
        lines = self._lines
        while True:
            with self._wake:
                while not lines and not self._closed:
                    self._sleeping = True
                    if lines:  # queued before the flag could be seen
                        break
                    self._wake.wait()
                self._sleeping = False
                closed = self._closed
            batch = []
            while lines:
                batch.append(lines.popleft())
            dropped = self._dropped - self._reported
            if dropped:
                self._reported += dropped
                batch.insert(0, (syslog.LOG_WARNING, f"{dropped} log line(s) dropped"))
            try:
                self._sink(batch)
            except (OSError, ValueError):
                return  # the sink is gone: nothing more can be said there
            if closed:
                return
            with self._wake:
                if not self._closed:
                    self._wake.wait(LOG_BATCH_S)  # let more lines gather

    def close(self) -> None:
        """Write what is queued (waiting at most :data:`LOG_DRAIN_S`), then stop."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(LOG_DRAIN_S)


def syslog_sink(batch: list[tuple[int, str]]) -> None:
    """Send each line to syslog (the module releases the GIL while it sends)."""
    send = syslog.syslog
    for priority, text in batch:
        send(priority, text)


def stream_sink(stream: TextIO) -> Sink:
    """Write the lines to ``stream`` as ``flom[PID] PRIORITY: TEXT``, one write a batch."""
    pid = os.getpid()

    def write(batch: list[tuple[int, str]]) -> None:
        stream.write("".join(f"flom[{pid}] {_NAMES[p]}: {text}\n" for p, text in batch))
        stream.flush()

    return write


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
        self._writer: LogWriter | None = None  # syslog or, in the foreground, stderr
        if os.path.exists(SYSLOG_SOCKET):
            syslog.openlog("flom", syslog.LOG_PID, syslog.LOG_DAEMON)
            self._writer = LogWriter(syslog_sink)
        elif foreground:
            self._writer = LogWriter(stream_sink(sys.stderr))
        self._trace: TextIO | None = None
        if trace_file:
            self._trace = open(trace_file, "a" if append else "w", buffering=1)  # noqa: SIM115
        # Whether info lines go anywhere: lock events are not even formatted otherwise.
        self.lock_events = self.level >= syslog.LOG_INFO and (
            self._writer is not None or self._trace is not None
        )

    def _emit(self, priority: int, text: str) -> None:
        if priority > self.level:
            return
        if self._writer is not None:
            self._writer.write(priority, text)
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
        """Write what is queued, then close the trace file."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._trace is not None:
            self._trace.close()
            self._trace = None
