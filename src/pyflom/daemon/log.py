"""The daemon's log: syslog with FLoM's message ids, plus an optional trace file.

Levels (syslog priorities): ``err`` failures, ``warning`` a client misbehaved,
``notice`` lifecycle (start, ready, shutdown), ``info`` routine events, among them one
line per lock event: FLM050I grant, FLM051I release, FLM052I refusal, FLM053I lost
client, FLM054I queued.  ``level`` keeps the messages at that priority or above
(default ``info``: all of them).  Without a syslog socket (``/dev/log``) nothing is sent
to syslog; a daemon run in the foreground then writes its log to stderr instead.  Either
way a thread of its own sends the lines, in batches (:class:`LogWriter`): the event loop
only queues them.

Warnings are limited (:class:`RepeatLimiter`): a client looping connect / send junk /
close would otherwise write a line per connection.  Past :data:`REPEAT_BURST` lines of
one message id from one peer (a user on a UNIX socket, an IP address over TCP) in
:data:`REPEAT_WINDOW_S`, further ones are counted, and one FLM060W line says how many
were suppressed.  Errors, notices and lock events (info) are never suppressed.
"""

from __future__ import annotations

import contextlib
import os
import re
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

REPEAT_BURST = 5  # lines of one message id from one peer kept per window
REPEAT_WINDOW_S = 10.0
REPEAT_KEYS = 1024  # (peer, message id) pairs followed at most; others share one budget
OTHER_PEERS = "other peers"  # the peer named once REPEAT_KEYS are followed
ANY_PEER = "any peer"  # the peer of a warning that names none

Sink = Callable[[list[tuple[int, str]]], None]
Scheduler = Callable[[float, Callable[[], None]], object]  # (delay s, callback)
_MESSAGE_ID = re.compile(r"FLM\d{3}[A-Z]")


class _Window:
    """Lines of one (peer, message id) in the current window."""

    __slots__ = ("logged", "start", "suppressed")

    def __init__(self, start: float) -> None:
        self.start = start
        self.logged = 0
        self.suppressed = 0


class RepeatLimiter:
    """Keeps the first ``burst`` lines of each (peer, message id) in every window of
    ``window_s`` seconds and counts the rest; :meth:`summaries` says what was suppressed
    in the windows that ended.  At most ``max_keys`` pairs are followed (memory is
    bounded): past that, new peers share the budget of :data:`OTHER_PEERS`."""

    def __init__(
        self,
        burst: int = REPEAT_BURST,
        window_s: float = REPEAT_WINDOW_S,
        max_keys: int = REPEAT_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.window_s = window_s
        self.max_keys = max_keys
        self._clock = clock
        self._windows: dict[tuple[str, str], _Window] = {}
        self._ended: list[str] = []  # summaries of ended windows, not said yet
        self._none_ends_before = 0.0  # no window ends before this (clock time)

    def admit(self, peer: str, message_id: str) -> bool:
        """Count a line; True when it is to be written."""
        now = self._clock()
        key = (peer, message_id)
        window = self._windows.get(key)
        if window is None or now - window.start >= self.window_s:
            if window is not None:
                self._end(key, window, now)
            elif len(self._windows) >= self.max_keys:
                if now >= self._none_ends_before:  # (a look goes through every window)
                    self.expire(now)
                if len(self._windows) >= self.max_keys:
                    key = (OTHER_PEERS, message_id)
                    window = self._windows.get(key)
            if window is None or now - window.start >= self.window_s:
                window = self._windows[key] = _Window(now)
        if window.logged < self.burst:
            window.logged += 1
            return True
        window.suppressed += 1
        return False

    def _end(self, key: tuple[str, str], window: _Window, now: float) -> None:
        del self._windows[key]
        if window.suppressed:
            peer, message_id = key
            self._ended.append(
                f"FLM060W suppressed {window.suppressed:,} {message_id} line(s) from {peer} "
                f"in {min(now - window.start, self.window_s):.1f} s (at most "
                f"{self.burst} of a kind from one peer every {self.window_s:g} s are logged)"
            )

    def expire(self, now: float | None = None, everything: bool = False) -> None:
        """End the windows that are over (``everything``: all of them); their summaries
        wait in :meth:`summaries`."""
        if now is None:
            now = self._clock()
        for key, window in list(self._windows.items()):
            if everything or now - window.start >= self.window_s:
                self._end(key, window, now)
        starts = [window.start for window in self._windows.values()]
        self._none_ends_before = min(starts, default=now) + self.window_s

    def summaries(self) -> list[str]:
        """The summary lines of the windows ended so far (each given once)."""
        ended, self._ended = self._ended, []
        return ended

    def next_end(self) -> float | None:
        """Seconds until the first window with suppressed lines ends (None: none)."""
        starts = [w.start for w in self._windows.values() if w.suppressed]
        if not starts:
            return None
        return max(0.0, min(starts) + self.window_s - self._clock())


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
        self.repeats = RepeatLimiter()
        self.schedule: Scheduler | None = None  # set by the daemon: summaries on time
        self._summary_planned = False
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

    def warning(self, text: str, peer: str | None = None) -> None:
        """A client misbehaved; it was dealt with.  ``peer`` (who it was: see
        :meth:`.ClientConnection.peer_key`) keys the limit on repeated lines; a warning
        that names no peer shares the budget of :data:`ANY_PEER`."""
        if self.level < syslog.LOG_WARNING:
            return
        found = _MESSAGE_ID.match(text)
        if found is not None and not self.repeats.admit(peer or ANY_PEER, found.group()):
            self._plan_summary()
            return
        self._emit(syslog.LOG_WARNING, text)

    def _plan_summary(self) -> None:
        if self._summary_planned or self.schedule is None:
            return
        delay = self.repeats.next_end()
        if delay is not None:
            try:
                self.schedule(delay, self.flush_summaries)
            except RuntimeError:  # the loop is closed: close() says what was suppressed
                return
            self._summary_planned = True

    def flush_summaries(self) -> None:
        """Log what was suppressed in the windows that ended (FLM060W)."""
        self._summary_planned = False
        self.repeats.expire()
        for line in self.repeats.summaries():
            self._emit(syslog.LOG_WARNING, line)
        self._plan_summary()

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
        """Say what was suppressed, write what is queued, then close the trace file."""
        self.repeats.expire(everything=True)
        for line in self.repeats.summaries():
            self._emit(syslog.LOG_WARNING, line)
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._trace is not None:
            self._trace.close()
            self._trace = None
