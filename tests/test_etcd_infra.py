"""The etcd test cluster (tests/etcd_cluster.py) really works, and pyflom.etcd's
configuration and connection checks give clear answers against real processes."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from etcd_cluster import EtcdCluster, free_ports, process_state, require_etcd
from pki import Pki
from pyflom.etcd.config import (
    EtcdConfig,
    holder_drop_deadline_s,
    min_lease_ttl_s,
    parse_endpoints,
    parse_etcd_url,
)
from pyflom.etcd.connect import EtcdSetupError, connect


def test_cluster_starts_healthy_with_three_members(etcd_cluster: EtcdCluster) -> None:
    assert len(etcd_cluster.endpoints) == 3
    assert len(set(etcd_cluster.endpoints)) == 3
    assert all(m.pid is not None for m in etcd_cluster.members)
    assert all(etcd_cluster.healthy(i) for i in range(3))
    assert etcd_cluster.startup_seconds is not None
    ids = {etcd_cluster.status(i)["header"]["member_id"] for i in range(3)}
    assert len(ids) == 3  # three distinct members, not three lone clusters
    clusters = {etcd_cluster.status(i)["header"]["cluster_id"] for i in range(3)}
    assert len(clusters) == 1


def test_leader_killed_then_restarted_rejoins(etcd_cluster: EtcdCluster) -> None:
    old = etcd_cluster.leader()
    etcd_cluster.kill(old)
    assert etcd_cluster.members[old].pid is None
    new = etcd_cluster.leader(timeout=10)
    assert new != old
    etcd_cluster.wait_healthy(timeout=10)  # the two others still have quorum
    etcd_cluster.restart(old)
    etcd_cluster.wait_healthy(timeout=30)
    assert etcd_cluster.healthy(old)


def test_stopped_member_answers_nothing_until_continued(etcd_cluster: EtcdCluster) -> None:
    etcd_cluster.stop(1)
    pid = etcd_cluster.members[1].pid
    assert pid is not None and process_state(pid) == "T"
    assert not etcd_cluster.healthy(1)
    etcd_cluster.cont(1)
    etcd_cluster.wait_healthy(timeout=30)


def test_two_members_killed_leaves_no_quorum(etcd_cluster: EtcdCluster) -> None:
    etcd_cluster.kill(0)
    etcd_cluster.kill(1)
    deadline = time.monotonic() + 10
    while etcd_cluster.healthy(2) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not etcd_cluster.healthy(2)  # /health is a quorum read


def test_teardown_ends_a_member_without_quorum(tmp_path, request: pytest.FixtureRequest) -> None:
    from etcd_cluster import start_cluster

    cluster = start_cluster(tmp_path / "etcd")
    pids = [m.pid for m in cluster.members]
    cluster.kill(0)
    cluster.kill(1)
    cluster.stop(2)
    began = time.monotonic()
    cluster.close()
    assert time.monotonic() - began < 15
    assert all(process_state(p) in (None, "Z") for p in pids if p is not None)


# -- pyflom.etcd.config -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "endpoints"),
    [
        ("etcd://h1:2379,h2:2379,h3:2379", (("h1", 2379), ("h2", 2379), ("h3", 2379))),
        ("etcd://h1", (("h1", 2379),)),
        ("ETCD://10.0.0.1:1,[::1]:2,[fe80::1]", (("10.0.0.1", 1), ("::1", 2), ("fe80::1", 2379))),
        ("etcd://a, b ,c:3,", (("a", 2379), ("b", 2379), ("c", 3))),
    ],
)
def test_etcd_url_gives_endpoints(url: str, endpoints: tuple[tuple[str, int], ...]) -> None:
    assert parse_etcd_url(url) == endpoints


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h1:2379", "is not an etcd URL: expected etcd://HOST[:PORT]"),
        ("etcd://", "names no endpoint"),
        ("etcd://a,,b", "an empty endpoint"),
        ("etcd://::1", "write it in brackets, as [::1]"),
        ("etcd://[::1", "opens '[' without ']'"),
        ("etcd://[::1]x", "only ':PORT' may follow ']'"),
        ("etcd://[h1]:2379", "brackets are for IPv6 addresses only"),
        ("etcd://h1:0", "no valid port (a number from 1 to 65535)"),
        ("etcd://h1:65536", "no valid port"),
        ("etcd://h1:http", "no valid port"),
        ("etcd://h1:\u00b2", "no valid port"),
        ("etcd://:2379", "has no host name"),
        ("etcd://h1/pyflom", "set the key prefix with [Etcd]/KeyPrefix"),
        ("etcd://user:pw@h1", "use [Etcd]/User and [Etcd]/Password"),
        ("etcd://h1,h1:2379", "h1:2379 is given twice"),
    ],
)
def test_bad_etcd_url_is_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_etcd_url(url)


def test_lease_ttl_must_exceed_the_lock_loss_grace_with_a_margin() -> None:
    assert min_lease_ttl_s(5000) == 10
    EtcdConfig((("h", 1),), lease_ttl_s=10, lock_loss_grace_ms=5000)
    with pytest.raises(ValueError, match="at least 10 s") as caught:
        EtcdConfig((("h", 1),), lease_ttl_s=9, lock_loss_grace_ms=5000)
    assert "LockLossGrace" in str(caught.value)
    with pytest.raises(ValueError, match="at least 35 s"):
        EtcdConfig((("h", 1),), lock_loss_grace_ms=30000)  # the default TTL, 15 s
    # the gateway must drop its holders before the lease can expire, grace included
    assert holder_drop_deadline_s(15, 5000) == 8.0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"endpoints": ()}, "at least one endpoint"),
        ({"key_prefix": "pyflom"}, "must start with '/'"),
        ({"cert_file": "c.pem"}, "both CertFile and KeyFile"),
        ({"cert_file": "c.pem", "key_file": "k.pem"}, "without CaFile"),
        ({"user": "u"}, "both User and Password"),
        ({"request_timeout_s": 0}, "must be positive"),
    ],
)
def test_bad_etcd_config_is_refused(changes: dict[str, object], message: str) -> None:
    values: dict[str, Any] = {"endpoints": (("h", 2379),), **changes}
    with pytest.raises(ValueError, match=re.escape(message)):
        EtcdConfig(**values)


def test_etcd_config_normalises_the_prefix_and_hides_the_password() -> None:
    config = EtcdConfig((("::1", 2379), ("h", 1)), key_prefix="/locks", user="u", password="pw")
    assert config.key_prefix == "/locks/"
    assert config.url == "etcd://[::1]:2379,h:1"
    assert "pw" not in repr(config)


# -- pyflom.etcd.connect against real processes ------------------------------------------


def try_connect(config: EtcdConfig) -> tuple[str | None, float]:
    """(the EtcdSetupError message or None, seconds taken)."""

    async def main() -> str | None:
        try:
            client = await connect(config, warn=warnings.append)
        except EtcdSetupError as exc:
            return exc.message
        await client.close()
        return None

    warnings: list[str] = []
    began = time.monotonic()
    message = asyncio.run(main())
    return message, time.monotonic() - began


def config_of(endpoints: list[str], **values: Any) -> EtcdConfig:
    return EtcdConfig(parse_endpoints(",".join(endpoints)), dial_timeout_s=3, **values)


def test_connect_to_a_healthy_cluster(etcd_shared: EtcdCluster) -> None:
    message, _ = try_connect(config_of(etcd_shared.endpoints))
    assert message is None
    by_name = [e.replace("127.0.0.1", "localhost") for e in etcd_shared.endpoints]
    assert try_connect(config_of(by_name))[0] is None  # host names are resolved


def test_connect_to_a_closed_port_says_connection_refused() -> None:
    port = free_ports(1)[0]
    message, took = try_connect(config_of([f"127.0.0.1:{port}"]))
    assert message is not None and f"127.0.0.1:{port}: connection refused" in message
    assert "client port" in message and took < 3


def test_connect_to_a_listener_that_is_not_etcd(tmp_path: Path) -> None:
    with socket.socket() as silent, socket.socket() as closing:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        closing.bind(("127.0.0.1", 0))
        closing.listen()
        done = threading.Event()

        def close_each() -> None:
            closing.settimeout(0.1)
            while not done.is_set():
                try:
                    closing.accept()[0].close()
                except OSError:
                    pass

        thread = threading.Thread(target=close_each, daemon=True)
        thread.start()
        try:
            s_port, c_port = silent.getsockname()[1], closing.getsockname()[1]
            message, took = try_connect(config_of([f"127.0.0.1:{s_port}"]))
            assert message is not None and f"127.0.0.1:{s_port}: no answer within 3 s" in message
            assert took < 10
            message, _ = try_connect(config_of([f"127.0.0.1:{c_port}"]))
            assert message is not None and "closed the connection at once" in message
            assert "not an etcd client port" in message
        finally:
            done.set()
            thread.join()


def test_connect_warns_about_a_bad_endpoint_beside_good_ones(etcd_shared: EtcdCluster) -> None:
    port = free_ports(1)[0]
    warnings: list[str] = []

    async def main() -> None:
        config = config_of([*etcd_shared.endpoints, f"127.0.0.1:{port}"])
        client = await connect(config, warn=warnings.append)
        await client.close()

    asyncio.run(main())
    assert len(warnings) == 1 and f"127.0.0.1:{port}: connection refused" in warnings[0]


def test_connect_without_quorum_fails_in_bounded_time(etcd_cluster: EtcdCluster) -> None:
    etcd_cluster.kill(0)
    etcd_cluster.kill(1)
    message, took = try_connect(config_of(etcd_cluster.endpoints))
    assert message is not None and "has no quorum" in message
    assert f"{etcd_cluster.endpoints[0]}: connection refused" in message
    assert "Start the stopped members" in message
    assert took < 3 + 3  # the dial timeout for the probes, then for the quorum read


# -- etcd3aio, as the backend uses it (docs/ha.md, developer notes) ----------------------


def run_with_client(cluster: EtcdCluster, body: Callable[[Any], Awaitable[None]]) -> None:
    async def main() -> None:
        client = await connect(config_of(cluster.endpoints))
        try:
            await body(client)
        finally:
            await client.close()

    asyncio.run(main())


def test_connected_client_stops_sending_to_a_stopped_member(etcd_cluster: EtcdCluster) -> None:
    """gRPC keepalive (5 s, 1 s to answer) finds a SIGSTOPped member dead: 8 s later no
    request goes to it (with etcd3aio's 10 s + 5 s, one in three would still wait there
    for its deadline)."""

    async def body(client: Any) -> None:
        await client.kv.put("/test-stop/warm", "v", timeout=2)
        etcd_cluster.stop(2 if etcd_cluster.leader() != 2 else 1)
        await asyncio.sleep(8)
        timed_out = 0
        for i in range(9):
            try:
                await client.kv.put(f"/test-stop/{i}", "v", timeout=0.8, max_attempts=1)
            except TimeoutError:
                timed_out += 1
        assert timed_out == 0

    run_with_client(etcd_cluster, body)


def test_etcd3aio_lease_txn_range_watch_and_mod_compare(etcd_shared: EtcdCluster) -> None:
    from etcd3aio import SortOrder, SortTarget, prefix_range_end
    from etcd3aio._protobuf import Compare

    prefix = "/test-api/"
    end = prefix_range_end(prefix)

    async def body(client: Any) -> None:
        kv = client.kv
        lease = await client.lease.grant(ttl=10, timeout=2)
        create_a = [kv.txn_compare_create_revision(prefix + "a", 0)]
        put_a = [kv.txn_op_put(prefix + "a", "EX", lease=lease.ID)]
        first = await kv.txn(create_a, [*put_a, kv.txn_op_get(prefix, range_end=end)], timeout=2)
        again = await kv.txn(create_a, put_a, [kv.txn_op_get(prefix + "a")], timeout=2)
        assert first.succeeded and not again.succeeded
        assert again.responses[0].response_range.kvs[0].lease == lease.ID
        await kv.put(prefix + "b", "SH", timeout=2)
        await kv.put(prefix + "0", "PR", timeout=2)  # sorts first by key, last by creation
        ranged = await kv.get(
            prefix, range_end=end, sort_order=SortOrder.ASCEND,
            sort_target=SortTarget.CREATE, timeout=2,
        )  # fmt: skip
        assert [x.key for x in ranged.kvs] == [b"/test-api/a", b"/test-api/b", b"/test-api/0"]
        seen = ranged.header.revision
        unchanged = Compare(
            result=Compare.LESS, target=Compare.MOD, key=prefix.encode(), range_end=end,
            mod_revision=seen + 1,
        )  # fmt: skip
        assert (await kv.txn([unchanged], [], timeout=2)).succeeded
        events: list[tuple[int, bytes]] = []

        async def watch() -> None:
            async for resp in client.watch.watch(prefix, range_end=end, start_revision=seen + 1):
                events.extend((e.type, e.kv.key) for e in resp.events)
                if len(events) >= 2:
                    return

        watching = asyncio.create_task(watch())
        await kv.delete(prefix + "b", timeout=2)
        await client.lease.revoke(lease.ID, timeout=2)  # its key goes with it
        await asyncio.wait_for(watching, 10)
        assert events == [(1, b"/test-api/b"), (1, b"/test-api/a")]
        # PITFALL: a range compare sees only the keys that exist: deletions leave it true
        assert (await kv.txn([unchanged], [], timeout=2)).succeeded
        await kv.put(prefix + "c", "EX", timeout=2)
        assert not (await kv.txn([unchanged], [], timeout=2)).succeeded

    run_with_client(etcd_shared, body)


def test_etcd3aio_keepalive_and_failover_after_the_leader_dies(etcd_cluster: EtcdCluster) -> None:
    async def body(client: Any) -> None:
        lease = await client.lease.grant(ttl=3, timeout=2)
        await client.kv.put("/test-ka/k", "v", lease=lease.ID, timeout=2)
        async with client.lease.keep_alive_context(lease.ID, ttl=3):
            etcd_cluster.kill(etcd_cluster.leader())
            began = time.monotonic()
            while True:  # short attempts: a request in flight at the kill waits its deadline
                try:
                    await client.kv.put("/test-ka/after", "v", timeout=0.3, max_attempts=1)
                    break
                except (TimeoutError, Exception):
                    assert time.monotonic() - began < 10, "no new leader within 10 s"
            await asyncio.sleep(4)  # past the TTL: only the keep-alive keeps the key
        kept = await client.kv.get("/test-ka/k", timeout=2)
        assert kept.count == 1

    run_with_client(etcd_cluster, body)


def test_connect_over_tls_and_a_wrong_ca_is_named(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    right, wrong = pki.ca("etcd-ca"), pki.ca("other-ca")
    member = pki.node("etcd-member", "etcd-member", ca="etcd-ca")  # SAN 127.0.0.1
    client_port, peer_port = free_ports(2)
    client_url, peer_url = f"https://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    with open(tmp_path / "etcd.log", "wb") as log:
        proc = subprocess.Popen(
            [
                require_etcd(), "--name", "m0", "--data-dir", str(tmp_path / "data"),
                "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
                "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                "--initial-cluster", f"m0={peer_url}", "--logger", "zap",
                "--cert-file", str(member.cert), "--key-file", str(member.key),
            ],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        endpoint = [f"127.0.0.1:{client_port}"]
        deadline = time.monotonic() + 30
        while (message := try_connect(config_of(endpoint, ca_file=str(right.cert)))[0]) is not None:
            assert time.monotonic() < deadline, message
        message, _ = try_connect(config_of(endpoint, ca_file=str(wrong.cert)))
        assert message is not None
        assert f"127.0.0.1:{client_port}: its TLS certificate is not trusted" in message
        assert str(wrong.cert) in message
        message, _ = try_connect(config_of(endpoint))  # plain to a TLS port
        assert message is not None and "expects TLS (set [Etcd]/CaFile)" in message
    finally:
        proc.kill()
        proc.wait(timeout=10)
