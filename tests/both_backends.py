"""The ``sandbox`` fixture on both lock backends: a scenario module that imports
``sandbox_on_both_backends`` runs each of its tests on the memory daemon and on an etcd
gateway (the module's shared 3-member cluster, a key prefix of the test's own)."""

from __future__ import annotations

import pytest

from conftest import FlomSandbox

BACKENDS = ["memory", "etcd"]


@pytest.fixture(name="sandbox", params=BACKENDS)
def sandbox_on_both_backends(sandbox: FlomSandbox, request: pytest.FixtureRequest) -> FlomSandbox:
    """``sandbox`` on the memory daemon, then on an etcd gateway.  A test marked
    ``memory_only(reason)`` is skipped on etcd, saying why."""
    if request.param == "etcd":
        marker = request.node.get_closest_marker("memory_only")
        if marker is not None:
            pytest.skip(f"memory backend only: {marker.args[0]}")
        sandbox.use_etcd(request.getfixturevalue("etcd_shared").endpoints)
    return sandbox
