"""The daemon's log writer: a thread of its own sends the lines in batches, in order,
never blocking the event loop; past the backlog, lines are dropped and counted."""

from __future__ import annotations

import io
import os
import syslog
import threading

from conftest import wait_for
from pyflom.daemon.log import LOG_BACKLOG, LogWriter, stream_sink


class Collector:
    """A sink that records its batches; ``gate`` holds it (a stderr nobody reads)."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, str]]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, batch: list[tuple[int, str]]) -> None:
        self.entered.set()
        self.gate.wait()
        self.batches.append(batch)

    def lines(self) -> list[str]:
        return [text for batch in self.batches for _, text in batch]


def test_lines_arrive_in_order_and_in_batches() -> None:
    sink = Collector()
    writer = LogWriter(sink)
    for i in range(2000):
        writer.write(syslog.LOG_INFO, f"line {i}")
    writer.close()
    assert sink.lines() == [f"line {i}" for i in range(2000)]
    assert len(sink.batches) < 100  # not one write per line


def test_a_quiet_writer_wakes_for_the_next_line() -> None:
    sink = Collector()
    writer = LogWriter(sink)
    try:
        for i in range(3):
            writer.write(syslog.LOG_NOTICE, f"alone {i}")
            assert wait_for(lambda i=i: f"alone {i}" in sink.lines(), timeout=10)
    finally:
        writer.close()


def test_a_blocked_sink_costs_lines_not_the_caller() -> None:
    sink = Collector()
    sink.gate.clear()
    writer = LogWriter(sink)
    writer.write(syslog.LOG_INFO, "first")
    assert sink.entered.wait(10)  # the writer is stuck in the sink with "first"
    for i in range(LOG_BACKLOG + 500):  # returns at once although nothing is written
        writer.write(syslog.LOG_INFO, f"more {i}")
    sink.gate.set()
    writer.close()
    lines = sink.lines()
    assert lines[0] == "first"
    assert "500 log line(s) dropped" in lines
    assert len(lines) == 1 + LOG_BACKLOG + 1


def test_stream_sink_names_process_and_priority() -> None:
    stream = io.StringIO()
    stream_sink(stream)([(syslog.LOG_NOTICE, "FLM003N ready"), (syslog.LOG_INFO, "FLM050I x")])
    pid = os.getpid()
    assert stream.getvalue() == f"flom[{pid}] notice: FLM003N ready\nflom[{pid}] info: FLM050I x\n"
