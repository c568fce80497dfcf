"""The virtual network of tests/vhosts.py really works (independently of pyflom)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import vhosts
from conftest import process_alive, wait_for
from vhosts import VirtualHost, VirtualNetwork, read_line, require_netns, vnet_fixture  # noqa: F401

PY = sys.executable

# argv: family (4|6) port. Accepts one connection, echoes, prints the peer address.
TCP_SERVER = """
import socket, sys
family = socket.AF_INET6 if sys.argv[1] == "6" else socket.AF_INET
srv = socket.create_server(("", int(sys.argv[2])), family=family)
print("READY", flush=True)
conn, peer = srv.accept()
conn.sendall(b"echo:" + conn.recv(100))
print("PEER", peer[0].split("%")[0], flush=True)
"""

# argv: host port timeout. Prints the reply, or the error name.
TCP_CLIENT = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])) as s:
        s.sendall(b"hello")
        print(s.recv(100).decode())
except OSError as exc:
    print(type(exc).__name__, exc)
"""

# argv: group port. Joins the group on eth0, prints the first datagram and its sender.
MCAST_RECEIVER = """
import socket, struct, sys
group, port = sys.argv[1], int(sys.argv[2])
if ":" in group:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    ifindex = struct.pack("@I", socket.if_nametoindex("eth0"))
    mreq = socket.inet_pton(socket.AF_INET6, group) + ifindex
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    mreq = struct.pack("@4s4si", socket.inet_aton(group), socket.inet_aton("0.0.0.0"),
                       socket.if_nametoindex("eth0"))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
s.bind(("", port))
print("READY", flush=True)
data, peer = s.recvfrom(100)
print("GOT", data.decode(), peer[0].split("%")[0], flush=True)
"""

# argv: group port message. Sends the message three times (UDP) to the group via eth0.
MCAST_SENDER = """
import socket, sys
group, port, msg = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
family = socket.AF_INET6 if ":" in group else socket.AF_INET
with socket.socket(family, socket.SOCK_DGRAM) as s:
    dest = socket.getaddrinfo(group, port, family, socket.SOCK_DGRAM)[0][4]
    for _ in range(3):
        s.sendto(msg, dest)
"""


def start_server(host: VirtualHost, *argv: str, script: str = TCP_SERVER) -> subprocess.Popen[str]:
    proc = host.start([PY, "-c", script, *argv])
    line = read_line(proc)
    assert line == "READY", f"{line!r} {proc.stderr.read() if proc.poll() is not None else ''}"
    return proc


def tcp_client(host: VirtualHost, address: str, port: int, timeout: float = 10) -> str:
    proc = host.run([PY, "-c", TCP_CLIENT, address, str(port), str(timeout)])
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_tcp_over_ipv4(vnet: VirtualNetwork) -> None:
    a, b = vnet["a"], vnet["b"]
    server = start_server(a, "4", "7001")
    assert tcp_client(b, a.ipv4, 7001) == "echo:hello"
    assert read_line(server) == f"PEER {b.ipv4}"


@pytest.mark.parametrize("scope", ["global", "link-local"])
def test_tcp_over_ipv6(vnet: VirtualNetwork, scope: str) -> None:
    a, b = vnet["a"], vnet["b"]
    server = start_server(a, "6", "7002")
    if scope == "global":
        address, expected_peer = a.ipv6, b.ipv6
    else:
        address, expected_peer = f"{a.link_local()}%{b.ifname}", b.link_local()
        assert address.startswith("fe80::")
    assert tcp_client(b, address, 7002) == "echo:hello"
    assert read_line(server) == f"PEER {expected_peer}"


@pytest.mark.parametrize("group", ["239.77.0.1", "ff02::77", "ff15::77"])
def test_udp_multicast_floods_the_bridge(vnet: VirtualNetwork, group: str) -> None:
    a, b, c = vnet["a"], vnet["b"], vnet["c"]
    receivers = [start_server(h, group, "7003", script=MCAST_RECEIVER) for h in (a, c)]
    sent = b.run([PY, "-c", MCAST_SENDER, group, "7003", f"hi-{group}"])
    assert sent.returncode == 0, sent.stderr
    senders = {b.ipv4} if "." in group else {b.ipv6, b.link_local()}
    for receiver in receivers:
        word, message, sender = read_line(receiver).split()
        assert (word, message) == ("GOT", f"hi-{group}")
        assert sender in senders


def test_link_down_cuts_the_cable_and_link_up_restores_it(vnet: VirtualNetwork) -> None:
    a, b = vnet["a"], vnet["b"]
    start_server(a, "4", "7004")
    b.link_down()
    # No RST, no ICMP: the SYN just vanishes.
    assert tcp_client(b, a.ipv4, 7004, timeout=1) == "TimeoutError timed out"
    b.link_up()
    # b's ARP entry for a may still be failing from the cut: retry until it recovers.
    replies: list[str] = []
    assert wait_for(
        lambda: replies.append(tcp_client(b, a.ipv4, 7004, 2)) or "echo:hello" in replies, 30
    )
    assert replies[-1] == "echo:hello"


def test_link_down_hides_the_host_from_others(vnet: VirtualNetwork) -> None:
    a, c = vnet["a"], vnet["c"]
    start_server(a, "6", "7005")
    a.link_down()
    assert tcp_client(c, a.ipv6, 7005, timeout=1) == "TimeoutError timed out"


def links(netns: str | None) -> list[dict[str, object]]:
    ns = ["-n", netns] if netns else []
    out = subprocess.run(["ip", *ns, "-j", "addr", "show"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    result: list[dict[str, object]] = json.loads(out.stdout)
    return result


def test_network_is_isolated_from_the_machine() -> None:
    require_netns()
    before = {str(link["ifname"]) for link in links(None)}
    with VirtualNetwork() as net:
        after = links(None)
        assert {str(link["ifname"]) for link in after} <= before
        root_addrs = json.dumps(after)
        assert "10.77.0." not in root_addrs
        assert "fd77:" not in root_addrs
        for host in net:
            assert sorted(str(link["ifname"]) for link in links(host.netns)) == ["eth0", "lo"]
        switch = sorted(str(link["ifname"]) for link in links(net.switch))
        assert switch == ["br0", "lo", "p1", "p2", "p3"]
        a = net["a"]
        routes = a.run(["ip", "-j", "route", "show", "table", "all"]).stdout
        assert '"dst":"default"' not in routes
        # Nothing routes outside: TEST-NET-1 is unreachable at once.
        assert tcp_client(a, "192.0.2.1", 7006, timeout=5).startswith("OSError [Errno 101]")


def own_namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    prefix = f"pf-{os.getpid()}-"
    return {line.split()[0] for line in out.stdout.splitlines() if line.startswith(prefix)}


def test_cleanup_kills_processes_and_deletes_namespaces() -> None:
    require_netns()
    assert own_namespaces() == set()
    net = VirtualNetwork(hosts=("a", "b"))
    assert own_namespaces() == set(net.namespaces)
    a, b = net["a"], net["b"]
    direct = a.start(["sleep", "1000"])
    # A grandchild that our Popen does not know about, found through `ip netns pids`.
    shell = b.start(["sh", "-c", "sleep 1000 & echo $!; wait"])
    grandchild = int(read_line(shell))
    assert direct.pid in a.pids()
    assert grandchild in b.pids()
    net.cleanup()
    assert own_namespaces() == set()
    assert direct.returncode is not None
    assert shell.returncode is not None
    assert wait_for(lambda: not process_alive(grandchild), 10)
    net.cleanup()  # idempotent


def test_cleanup_after_a_failed_creation(monkeypatch: pytest.MonkeyPatch) -> None:
    require_netns()
    real = vhosts._ip_cmd

    def failing(*args: str, batch: str | None = None, check: bool = True) -> str:
        if batch and "addr add" in batch:
            raise RuntimeError("injected failure")
        return real(*args, batch=batch, check=check)

    monkeypatch.setattr(vhosts, "_ip_cmd", failing)
    with pytest.raises(RuntimeError, match="injected failure"):
        VirtualNetwork()
    monkeypatch.undo()
    assert own_namespaces() == set()


def test_fixture_skips_or_fails_without_namespaces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vhosts, "netns_unavailable_reason", lambda: "no netns here")
    monkeypatch.delenv("PYFLOM_REQUIRE_NETNS", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no netns here"):
        require_netns()
    monkeypatch.setenv("PYFLOM_REQUIRE_NETNS", "1")
    with pytest.raises(pytest.fail.Exception, match="no netns here"):
        require_netns()


def test_probe_agrees_with_reality() -> None:
    reason = vhosts.netns_unavailable_reason()
    if os.environ.get("PYFLOM_REQUIRE_NETNS") == "1":
        assert reason is None
    if reason is None:
        VirtualNetwork(hosts=("a",)).cleanup()
    else:
        with pytest.raises((RuntimeError, OSError)):
            VirtualNetwork(hosts=("a",)).cleanup()
