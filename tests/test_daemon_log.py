"""The daemon's log writer: a thread of its own sends the lines in batches, in order,
never blocking the event loop; past the backlog, lines are dropped and counted.  A peer
repeating a warning is logged a few times, then summed up (issue 16, item 3)."""

from __future__ import annotations

import contextlib
import io
import os
import syslog
import threading
import time

import pytest

from conftest import FlomSandbox, wait_for
from pyflom.daemon.log import (
    LOG_BACKLOG,
    OTHER_PEERS,
    REPEAT_BURST,
    LogWriter,
    RepeatLimiter,
    stream_sink,
)
from test_slow_clients import LimitedDaemon


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


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_repeats_are_kept_per_peer_and_message_then_summed_up() -> None:
    clock = Clock()
    limiter = RepeatLimiter(burst=3, window_s=10, max_keys=100, clock=clock)
    kept = [limiter.admit("uid 0", "FLM006W") for _ in range(1000)]
    assert kept == [True] * 3 + [False] * 997
    # Another peer, or another message from the same peer, has a budget of its own.
    assert limiter.admit("127.0.0.1", "FLM006W")
    assert limiter.admit("uid 0", "FLM009W")
    clock.now += 5
    limiter.expire()
    assert limiter.summaries() == []  # the window is not over
    assert limiter.next_end() == 5
    clock.now += 5
    limiter.expire()
    assert limiter.summaries() == [
        "FLM060W suppressed 997 FLM006W line(s) from uid 0 in 10.0 s (at most 3 of a kind "
        "from one peer every 10 s are logged)"
    ]  # windows where nothing was suppressed say nothing
    assert limiter.next_end() is None
    assert limiter.admit("uid 0", "FLM006W")  # a new window


def test_repeat_limiter_memory_is_bounded() -> None:
    clock = Clock()
    limiter = RepeatLimiter(burst=1, window_s=10, max_keys=50, clock=clock)
    for i in range(10_000):
        limiter.admit(f"10.0.{i // 256}.{i % 256}", "FLM006W")
    assert len(limiter._windows) <= 51
    clock.now += 10
    limiter.expire()
    (summary,) = [line for line in limiter.summaries() if OTHER_PEERS in line]
    assert f"suppressed {10_000 - 50 - 1:,} FLM006W line(s) from {OTHER_PEERS}" in summary


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_a_junk_flood_is_logged_a_few_times_then_summed_up(
    sandbox: FlomSandbox, transport: str
) -> None:
    daemon = LimitedDaemon(sandbox, transport, nofile=4096, stall_s=10)
    sent = cycles = 0
    end = time.monotonic() + 2
    while time.monotonic() < end:
        for _ in range(100):
            sock = daemon.connect()
            with contextlib.suppress(OSError):
                sock.sendall(b"junk\n")
            sock.close()
            sent += 1
        handle = daemon.handle("R")  # lock events are never suppressed
        handle.lock()
        handle.unlock()
        handle.close()
        cycles += 1
    assert daemon.proc is not None
    daemon.proc.terminate()
    assert daemon.proc.wait(timeout=15) == 0
    lines = daemon.log().splitlines()
    closing = [line for line in lines if "FLM006W" in line and "closing" in line]
    assert len(closing) == REPEAT_BURST, closing
    peer = f"uid {os.getuid()}" if transport == "unix" else "127.0.0.1"
    (summary,) = [line for line in lines if "FLM060W" in line]
    suppressed = int(summary.split("suppressed ")[1].split()[0].replace(",", ""))
    assert f"FLM006W line(s) from {peer} in" in summary
    assert sent // 2 < suppressed <= sent - REPEAT_BURST
    assert sum("FLM050I" in line for line in lines) == cycles
    assert sum("FLM051I" in line for line in lines) == cycles
