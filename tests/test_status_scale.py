"""The status document at scale (issue 10): every waiter of a long queue, in order.

Correctness, not speed (``bench/bench_status.py`` measures that): a real daemon, every
holder and waiter a real connection of this process.
"""

from __future__ import annotations

import json
import os
import resource
import socket
from collections.abc import Iterator

import pytest

from conftest import FlomSandbox
from pyflom import Settings
from pyflom.status import query_status
from test_daemon_limits import answers, lock_request

WAITERS = 2000


def read_rc(sock: socket.socket) -> int:
    (answer,) = answers(sock, 1)
    return answer.rc


@pytest.fixture
def clients() -> Iterator[list[socket.socket]]:
    """Room for ``WAITERS`` connections and more; every one is closed at the end."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < WAITERS + 200:
        pytest.skip(f"needs {WAITERS + 200} descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, WAITERS + 200), hard))
    socks: list[socket.socket] = []
    try:
        yield socks
    finally:
        for sock in socks:
            sock.close()


def connect(box: FlomSandbox, socks: list[socket.socket]) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    socks.append(sock)
    sock.settimeout(60)
    sock.connect(box.socket)
    return sock


def queue(box: FlomSandbox, socks: list[socket.socket], holder: str, waiters: list[str]) -> None:
    """One connection holds ``holder``, then one connection a name of ``waiters``
    queues, in that order: each is enqueued before the next one asks."""
    sock = connect(box, socks)
    sock.sendall(lock_request(holder))
    assert read_rc(sock) == 0
    for name in waiters:
        sock = connect(box, socks)
        sock.sendall(lock_request(name))
        assert read_rc(sock) == 1  # enqueued


def start_daemon(box: FlomSandbox) -> Settings:
    """A daemon that outlives this ``flom`` (stopped by PID by the sandbox)."""
    proc = box.run("-d", "-1", "--", "true")
    assert proc.returncode == 0, proc.stderr
    assert box.remember_daemon() is not None
    return Settings(socket_name=box.socket)


def by_name(document: dict[str, object]) -> dict[str, dict[str, list[dict[str, object]]]]:
    resources = document["resources"]
    assert isinstance(resources, list)
    return {res["name"]: res for res in resources}


def test_status_lists_2000_waiters_in_arrival_order(
    sandbox: FlomSandbox, clients: list[socket.socket]
) -> None:
    settings = start_daemon(sandbox)
    holder = connect(sandbox, clients)
    waiters = [connect(sandbox, clients) for _ in range(WAITERS)]
    # The daemon numbers connections as it accepts them: the waiters ask in the reverse
    # order, so their queue order is not the order of their numbers.
    holder.sendall(lock_request("Queue"))
    assert read_rc(holder) == 0
    for sock in reversed(waiters):
        sock.sendall(lock_request("Queue"))
        assert read_rc(sock) == 1
    document = query_status(settings)
    assert document["incubator"] == []
    res = by_name(document)["Queue"]
    assert res["type"] == "simple"
    (held,) = res["holders"]
    queued = res["waiters"]
    assert len(queued) == WAITERS
    assert [w["position"] for w in queued] == list(range(1, WAITERS + 1))
    numbers = [w["connection"] for w in queued]
    assert numbers == sorted(numbers, reverse=True), "not in arrival order"
    assert held["connection"] < min(numbers)  # the first connection made
    assert (held["name"], held["mode"], held["pid"], held["peer"]) == (
        "Queue",
        "EX",
        os.getpid(),
        "localhost/",
    )
    assert held["generation"] > 0 and held["element"] is None
    since = [w["since"] for w in queued]
    assert since == sorted(since) and held["since"] <= since[0]
    for waiter in queued:
        assert (waiter["name"], waiter["mode"], waiter["quantity"]) == ("Queue", "EX", None)
        assert (waiter["pid"], waiter["user"]) == (os.getpid(), os.getuid())
        assert float(waiter["waiting_s"]) >= 0


def test_resource_filter_at_scale_returns_only_that_resource(
    sandbox: FlomSandbox, clients: list[socket.socket]
) -> None:
    settings = start_daemon(sandbox)
    queue(sandbox, clients, "Queue", ["Queue"] * WAITERS)
    odd_names = ['/other/é"x', "/other/a b\\c", "/other"]  # JSON escapes
    queue(sandbox, clients, "/other", odd_names)
    whole = by_name(query_status(settings))
    assert set(whole) - {"_RESOURCE"} == {"Queue", "/other"}  # _RESOURCE: start_daemon
    assert len(whole["Queue"]["waiters"]) == WAITERS

    only_queue = by_name(query_status(settings, "Queue"))
    assert list(only_queue) == ["Queue"]
    assert [w["connection"] for w in only_queue["Queue"]["waiters"]] == [
        w["connection"] for w in whole["Queue"]["waiters"]
    ]
    assert (
        only_queue["Queue"]["holders"][0]["connection"]
        == (whole["Queue"]["holders"][0]["connection"])
    )

    # A hierarchical name selects its whole first level; the requested names are kept.
    other = query_status(settings, "/other/y")
    (res,) = other["resources"]  # type: ignore[misc]
    assert res["name"] == "/other" and res["type"] == "hierarchical"
    assert [w["name"] for w in res["waiters"]] == odd_names
    assert [w["position"] for w in res["waiters"]] == [1, 2, 3]

    assert query_status(settings, "Nothing")["resources"] == []

    proc = sandbox.run("--status=json", "-r", "/other")
    assert proc.returncode == 0, proc.stderr
    assert [r["name"] for r in json.loads(proc.stdout)["resources"]] == ["/other"]
