"""The etcd test cluster of tests/etcd_cluster.py really works (independently of pyflom)."""

from __future__ import annotations

import time

import pytest

from etcd_cluster import EtcdCluster, process_state


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
