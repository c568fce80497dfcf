"""The daemon's log: syslog with FLoM's message ids, plus an optional trace file."""

from __future__ import annotations

import syslog
import time
from typing import TextIO


class DaemonLog:
    """Writes ``FLMnnnX`` messages to syslog (ident ``flom``, facility daemon) and, when
    a trace file is configured, every message and trace line to that file."""

    def __init__(self, trace_file: str | None = None, append: bool = False) -> None:
        syslog.openlog("flom", syslog.LOG_PID, syslog.LOG_DAEMON)
        self._trace: TextIO | None = None
        if trace_file:
            self._trace = open(trace_file, "a" if append else "w", buffering=1)  # noqa: SIM115

    def _emit(self, priority: int, text: str) -> None:
        syslog.syslog(priority, text)
        self.trace(text)

    def notice(self, text: str) -> None:
        """A notable lifecycle event (FLM000I, FLM003N, FLM007N...)."""
        self._emit(syslog.LOG_NOTICE, text)

    def info(self, text: str) -> None:
        """Routine information."""
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
            self._trace.write(f"{stamp}.{int(now % 1 * 1e6):06d} [daemon] {text}\n")

    def close(self) -> None:
        """Flush and close the trace file."""
        if self._trace is not None:
            self._trace.close()
            self._trace = None
