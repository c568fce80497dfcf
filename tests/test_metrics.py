"""Prometheus metrics from the daemon (issue 17, item 10): ``--metrics=HOST:PORT``.

Real daemons (started by ``flom`` or directly), locks taken, released, refused and
waited for with real ``flom`` commands, the endpoint scraped over HTTP with urllib and
read with prometheus_client's own parser.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from both_backends import sandbox_on_both_backends  # noqa: F401  (the sandbox fixture)
from conftest import FLOM, FlomSandbox, daemon_pid, new_sandbox, wait_for
from pki import Standard, certs_fixture, pki_fixture, tls_options  # noqa: F401
from pyflom.daemon.exporter import MAX_SCRAPES
from pyflom.daemon.metrics import labels_of, missing_extra_message, open_endpoint, rc_name

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def scrape(port: int, host: str = "127.0.0.1", path: str = "/metrics") -> Samples:
    """Every sample the endpoint serves, by (name, labels)."""
    where = f"[{host}]" if ":" in host else host
    with urllib.request.urlopen(f"http://{where}:{port}{path}", timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when absent: a counter not counted yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


class MetricsDaemon:
    """A daemon started directly (``python -m pyflom.daemon``) with ``--metrics`` on a
    free loopback port, and a trace file holding its log."""

    def __init__(self, box: FlomSandbox, *args: str, env: dict[str, str] | None = None) -> None:
        self.box = box
        self.port = free_port()
        self.trace = box.path("daemon.trc")
        argv = [sys.executable, "-m", "pyflom.daemon", "--socket-name", box.socket]
        argv += ["--lifespan", "-1", "--trace-file", str(self.trace)]
        argv += ["--metrics", f"127.0.0.1:{self.port}", *args]
        self.proc = subprocess.Popen(argv, env=env or box.env, stderr=subprocess.PIPE, text=True)
        box.started.append(self.proc)
        assert wait_for(self._ready, timeout=30), self.trace

    def _ready(self) -> bool:
        return self.trace.exists() and "FLM003N" in self.trace.read_text()

    def scrape(self) -> Samples:
        return scrape(self.port)


@pytest.fixture
def plain_sandbox() -> Iterator[FlomSandbox]:
    """A memory-daemon sandbox, for the tests that need no second backend."""
    with new_sandbox() as box:
        yield box


# -- counting, on both backends ---------------------------------------------------------------


def test_locks_granted_released_refused_and_waited_are_counted(sandbox: FlomSandbox) -> None:
    port = free_port()
    # The daemon the first command starts serves the metrics: the option is passed on.
    first = sandbox.run("-d", "60000", f"--metrics=127.0.0.1:{port}", "-r", "res", "--", "true")
    assert first.returncode == 0, first.stderr
    before = scrape(port)
    assert value(before, "flom_grants_total", type="simple", mode="EX") == 1
    assert value(before, "flom_releases_total", type="simple", mode="EX", how="unlock") == 1
    backend = "etcd" if sandbox.backend == "etcd" else "memory"
    info = [key for key in before if key[0] == "flom_build_info"]
    assert len(info) == 1 and ("backend", backend) in info[0][1]

    holder = sandbox.start("-r", "res", "--", "sh", "-c", "echo held; read line", stdin=True)
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    busy = sandbox.run("-r", "res", "-o", "0", "--", "true")
    assert busy.returncode == 98, busy.stderr
    waiter = sandbox.start("-r", "res", "--", "echo", "waited")
    assert wait_for(lambda: value(scrape(port), "flom_waiters") == 1, timeout=30)
    during = scrape(port)
    assert value(during, "flom_holders") == 1
    assert value(during, "flom_connections") >= 2
    time.sleep(0.3)  # the waiter waits at least this long: seen in the histogram
    assert holder.stdin is not None
    holder.stdin.write("go\n")
    holder.stdin.flush()
    assert holder.wait(timeout=30) == 0
    assert waiter.communicate(timeout=30)[0] == "waited\n" and waiter.returncode == 0
    shared = sandbox.run("-r", "res", "-l", "PR", "--", "true")
    numeric = sandbox.run("-r", "pool[2]", "-q", "2", "--", "true")
    assert shared.returncode == numeric.returncode == 0, shared.stderr + numeric.stderr
    late = sandbox.start("-r", "res", "--", "sh", "-c", "echo held; read line", stdin=True)
    assert late.stdout is not None and late.stdout.readline() == "held\n"
    gives_up = sandbox.run("-r", "res", "-o", "300", "--", "true")  # waits, then leaves
    assert gives_up.returncode == 98, gives_up.stderr
    assert late.stdin is not None
    late.stdin.write("go\n")
    late.stdin.flush()
    assert late.wait(timeout=30) == 0

    def settled() -> bool:
        samples = scrape(port)
        return value(samples, "flom_holders") == 0 and value(samples, "flom_waiters") == 0

    assert wait_for(settled, timeout=30)
    after = scrape(port)
    assert value(after, "flom_grants_total", type="simple", mode="EX") == 4
    assert value(after, "flom_grants_total", type="simple", mode="PR") == 1
    assert value(after, "flom_grants_total", type="numeric", mode="EX") == 1
    assert value(after, "flom_releases_total", type="simple", mode="EX", how="unlock") == 4
    assert value(after, "flom_releases_total", type="numeric", mode="EX", how="unlock") == 1
    assert value(after, "flom_refusals_total", reason="LOCK_BUSY", type="simple", mode="EX") == 1
    assert value(after, "flom_waits_abandoned_total", type="simple", mode="EX") == 1
    assert value(after, "flom_lock_wait_seconds_count") == 6
    assert value(after, "flom_lock_wait_seconds_sum") >= 0.3
    assert value(after, "flom_lock_wait_seconds_bucket", le="0.1") <= 5  # the waiter's > 0.3 s
    assert value(after, "flom_lock_wait_seconds_bucket", le="+Inf") == 6
    assert (("flom_resources", frozenset()) in after) == (backend == "memory")


def test_a_lost_client_counts_as_a_release_on_disconnect(plain_sandbox: FlomSandbox) -> None:
    box = plain_sandbox
    daemon = MetricsDaemon(box)
    holder = box.start("-d", "0", "-r", "gone", "--", "sh", "-c", "echo $$; exec sleep 600")
    assert holder.stdout is not None
    command = int(holder.stdout.readline())
    assert value(daemon.scrape(), "flom_holders") == 1
    # flom and its command both end without unlocking: the connection (which the command
    # inherits) closes with the lock held.
    holder.kill()
    holder.wait(timeout=30)
    os.kill(command, signal.SIGKILL)

    def released() -> bool:
        samples = daemon.scrape()
        released = value(samples, "flom_releases_total", type="simple", mode="EX", how="disconnect")
        return released == 1

    assert wait_for(released, timeout=30)
    assert value(daemon.scrape(), "flom_holders") == 0


def test_a_refusal_by_the_access_rules_is_counted(plain_sandbox: FlomSandbox) -> None:
    box = plain_sandbox
    rules = box.path("access.rules")
    rules.write_text(f"uid:{os.geteuid()}  lock  public\n")
    daemon = MetricsDaemon(box, "--access-rules", str(rules))
    assert box.run("-d", "0", "-r", "public", "--", "true").returncode == 0
    refused = box.run("-d", "0", "-r", "private", "-l", "PW", "--", "true")
    assert refused.returncode != 0 and "private" in refused.stderr
    samples = daemon.scrape()
    labels = {"reason": "NOT_ALLOWED", "type": "simple", "mode": "PW"}
    assert value(samples, "flom_refusals_total", **labels) == 1
    assert value(samples, "flom_grants_total", type="simple", mode="EX") == 1


# -- TLS failures, state file --------------------------------------------------------------------


def test_tls_failures_are_counted_by_class(plain_sandbox: FlomSandbox, certs: Standard) -> None:
    box = plain_sandbox
    daemon = MetricsDaemon(box, *tls_options(certs.peer1, certs.ca1))
    untrusted = box.run("-d", "0", *tls_options(certs.other, certs.ca1), "--", "true")
    assert untrusted.returncode == 99 and "[TLS-PEER-DISTRUSTS-US]" in untrusted.stderr
    plain = box.run("-d", "0", "--", "true")
    assert plain.returncode == 99 and "[TLS-PEER-NOT-TLS]" in plain.stderr
    trusted = box.run("-d", "0", *tls_options(certs.peer2, certs.ca1), "--", "true")
    assert trusted.returncode == 0, trusted.stderr

    samples = daemon.scrape()
    failures = "flom_tls_handshake_failures_total"
    assert value(samples, failures, **{"class": "TLS-UNTRUSTED-PEER"}) == 1
    assert value(samples, failures, **{"class": "TLS-PEER-NOT-TLS"}) >= 1
    assert value(samples, "flom_grants_total", type="simple", mode="EX") == 1


def test_state_file_syncs_are_timed(plain_sandbox: FlomSandbox) -> None:
    box = plain_sandbox
    daemon = MetricsDaemon(box, "--state-file", str(box.path("flom.state")))
    before = daemon.scrape()
    assert value(before, "flom_state_file_sync_seconds_count", op="append") == 0
    for _ in range(3):
        result = box.run("-d", "0", "-r", "_s_orders[1]", "--", "true")
        assert result.returncode == 0, result.stderr
    after = daemon.scrape()
    appended = value(after, "flom_state_file_sync_seconds_count", op="append")
    assert appended >= 3  # each number handed out is on disk before it is answered
    assert value(after, "flom_state_file_sync_seconds_bucket", op="append", le="+Inf") == appended
    assert value(after, "flom_state_file_sync_seconds_sum", op="append") > 0
    # docs/service.md lists every metric the daemon serves (this one serves them all)
    docs = (Path(__file__).resolve().parents[1] / "docs" / "service.md").read_text()
    served = {name for name, _ in after if name.startswith("flom_")}
    assert len(served) > 10
    for name in served:
        family = name.removesuffix("_total").removesuffix("_bucket")
        family = family.removesuffix("_count").removesuffix("_sum")
        assert f"`{family}" in docs, f"{family} is not in docs/service.md"


# -- the endpoint ----------------------------------------------------------------------------------


def _http(port: int, request: bytes) -> bytes:
    """What the endpoint answers ``request`` (b"" when it closes without an answer)."""
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(request)
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            return b""
    return b"".join(chunks)


def test_the_endpoint_serves_only_metrics(plain_sandbox: FlomSandbox) -> None:
    daemon = MetricsDaemon(plain_sandbox)
    assert ("flom_connections", frozenset()) in scrape(daemon.port, path="/")
    assert ("process_open_fds", frozenset()) in daemon.scrape()  # the process, cheaply
    for path, code in (("/other", 404), ("/metrics/../x", 404)):
        with pytest.raises(urllib.error.HTTPError) as refused:
            scrape(daemon.port, path=path)
        assert refused.value.code == code
    post = urllib.request.Request(f"http://127.0.0.1:{daemon.port}/metrics", b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as not_allowed:
        urllib.request.urlopen(post, timeout=10)
    assert not_allowed.value.code == 405
    assert _http(daemon.port, b"garbage\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    # Oversized headers: the connection is closed without an answer.
    assert _http(daemon.port, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20000) == b""
    # prometheus_client's content negotiation and compression
    gzipped = _http(
        daemon.port, b"GET /metrics HTTP/1.1\r\nAccept-Encoding: gzip\r\nHost: x\r\n\r\n"
    )
    assert b"\r\nContent-Encoding: gzip\r\n" in gzipped.split(b"\r\n\r\n")[0] + b"\r\n"
    wanted = _http(daemon.port, b"GET /metrics?name[]=flom_holders HTTP/1.1\r\n\r\n")
    assert b"flom_holders 0.0" in wanted and b"flom_connections" not in wanted


def test_a_silent_scraper_never_holds_up_locks_or_other_scrapes(
    plain_sandbox: FlomSandbox,
) -> None:
    box = plain_sandbox
    daemon = MetricsDaemon(box, env={**box.env, "PYFLOM_STALL_TIMEOUT": "60"})
    silent = [socket.create_connection(("127.0.0.1", daemon.port)) for _ in range(3)]
    half = socket.create_connection(("127.0.0.1", daemon.port))
    half.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # and never the end of its headers
    try:
        started = time.monotonic()
        result = box.run("-d", "0", "-r", "scraped", "--", "true")
        assert result.returncode == 0, result.stderr
        assert value(daemon.scrape(), "flom_grants_total", type="simple", mode="EX") == 1
        assert time.monotonic() - started < 30  # the silent ones are cut after 60 s
    finally:
        for sock in (*silent, half):
            sock.close()


def test_scrapes_are_capped_and_silent_ones_cut_after_the_stall_timeout(
    plain_sandbox: FlomSandbox,
) -> None:
    box = plain_sandbox
    daemon = MetricsDaemon(box, env={**box.env, "PYFLOM_STALL_TIMEOUT": "3"})
    silent = [socket.create_connection(("127.0.0.1", daemon.port)) for _ in range(MAX_SCRAPES)]
    try:
        for sock in silent:
            sock.settimeout(10)
        # One more is closed at once, unanswered; lock requests are served meanwhile.
        assert wait_for(lambda: _http(daemon.port, b"GET / HTTP/1.1\r\n\r\n") == b"", timeout=10)
        assert box.run("-d", "0", "-r", "capped", "--", "true").returncode == 0
        for sock in silent:  # cut by the daemon (3 s), before their own timeout (10 s)
            assert sock.recv(100) == b""
        assert value(daemon.scrape(), "flom_grants_total", type="simple", mode="EX") == 1
    finally:
        for sock in silent:
            sock.close()


def test_ipv6_loopback_address(plain_sandbox: FlomSandbox) -> None:
    try:
        port = free_port("::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    box = plain_sandbox
    result = box.run("-d", "60000", f"--metrics=[::1]:{port}", "--", "true")
    assert result.returncode == 0, result.stderr
    assert value(scrape(port, "::1"), "flom_grants_total", type="simple", mode="EX") == 1


# -- refusals to start ---------------------------------------------------------------------------


def test_a_port_in_use_is_refused_naming_the_address(plain_sandbox: FlomSandbox) -> None:
    box = plain_sandbox
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = box.run(f"--metrics=127.0.0.1:{port}", "--", "echo", "ran")
        assert result.returncode == 99 and result.stdout == ""
        assert f"cannot serve metrics at 127.0.0.1:{port}: the port is already in use" in (
            result.stderr
        )
        assert daemon_pid(box.socket) is None  # no daemon was left listening


@pytest.mark.parametrize(
    ("address", "said"),
    [
        ("9100", "'9100' has no port: write 9100:PORT"),
        ("localhost", "'localhost' has no port"),
        ("::1:9100", "write it in brackets, as [::1:9100]:PORT"),
        ("127.0.0.1:99999", "no valid port"),
        ("[::1]9100", "only ':PORT' may follow ']'"),
    ],
)
def test_an_address_that_is_not_host_port_is_refused(
    plain_sandbox: FlomSandbox, address: str, said: str
) -> None:
    result = plain_sandbox.run(f"--metrics={address}", "--", "echo", "ran")
    assert result.returncode == 99 and result.stdout == ""
    assert said in result.stderr and "--metrics / [Daemon]/MetricsAddress" in result.stderr


def test_a_bad_address_is_refused_by_the_command_itself(plain_sandbox: FlomSandbox) -> None:
    """Refused when the command reads it, before any daemon: also when one runs already
    (the option would only be reported as ignored there), and from a configuration file
    with its line."""
    box = plain_sandbox
    assert box.run("-d", "30000", "--", "true").returncode == 0
    assert box.remember_daemon() is not None
    result = box.run("--metrics=localhost", "--", "echo", "ran")
    assert result.returncode == 99 and result.stdout == ""
    assert "metrics: 'localhost' is an invalid value" in result.stderr
    assert "'localhost' has no port: write localhost:PORT" in result.stderr
    config = box.path("metrics.conf")
    config.write_text("[Daemon]\nMetricsAddress=9100\n")
    result = box.run("-c", str(config), "--", "echo", "ran")
    assert result.returncode == 99 and "ran" not in result.stdout
    assert f"{config}:2: [Daemon] MetricsAddress='9100' is refused" in result.stderr


def test_without_prometheus_client_the_daemon_refuses_to_start(plain_sandbox: FlomSandbox) -> None:
    box = plain_sandbox
    # An interpreter where importing prometheus_client fails, as without the extra.
    code = (
        "import sys; sys.modules['prometheus_client'] = None; "
        "from pyflom.daemon.__main__ import main; sys.exit(main(sys.argv[1:]))"
    )
    argv = [sys.executable, "-c", code, "--socket-name", box.socket, "--lifespan", "-1"]
    argv += ["--metrics", f"127.0.0.1:{free_port()}"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=box.env)
    assert result.returncode == 1
    assert "pip install 'pyflom[metrics]'" in result.stderr
    assert daemon_pid(box.socket) is None
    text = missing_extra_message("127.0.0.1:9100", ImportError("No module named 'x'"))
    assert "cannot serve metrics at 127.0.0.1:9100" in text
    assert "pip install 'pyflom[metrics]'" in text and "--metrics" in text


def test_flom_commands_never_load_prometheus_client(plain_sandbox: FlomSandbox) -> None:
    box = plain_sandbox
    port = free_port()
    argv = [sys.executable, "-X", "importtime", FLOM, "-s", box.socket, "-d", "60000"]
    result = subprocess.run(
        [*argv, f"--metrics=127.0.0.1:{port}", "--", "true"],
        capture_output=True,
        text=True,
        timeout=60,
        env=box.env,
        cwd=box.root,
    )
    box.remember_daemon()
    assert result.returncode == 0, result.stderr
    assert "pyflom.cli" in result.stderr  # the import trace is there
    assert "prometheus_client" not in result.stderr
    assert "pyflom.daemon." not in result.stderr
    assert value(scrape(port), "flom_grants_total", type="simple", mode="EX") == 1  # its daemon's


# -- labels ----------------------------------------------------------------------------------------


def test_labels_are_bounded_and_never_a_resource_name() -> None:
    assert labels_of("orders-db", 3) == ("invalid", "PR")
    assert labels_of("orders", 3) == ("simple", "PR")
    assert labels_of("orders", None) == ("simple", "NL")
    assert labels_of("/a/b", 1) == ("hierarchical", "CR")
    assert labels_of("pool[3]", 3) == ("numeric", "EX")  # modes do not apply: EX
    assert labels_of("_s_x[2]", 0) == ("sequence", "EX")
    assert rc_name(4) == "LOCK_BUSY" and rc_name(-42) == "NOT_ALLOWED"
    assert rc_name(12345) == "12345"
    with pytest.raises(Exception, match="has no port"):
        open_endpoint("127.0.0.1")
