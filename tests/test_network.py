"""Across hosts: TCP (IPv4, IPv6, link-local, IPv4-mapped), multicast discovery, keepalive.

Every test builds its own hosts (network namespaces a, b, c on one bridge; see
vhosts.py): a daemon on host a, clients on b and c.  Only those namespaces' addresses
are used.  FLoM's usecase-dist scenarios are here in our words; holders wait on gate
files (the namespaces share the file system), so the test decides when a lock ends.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FLOM, FlomSandbox, process_alive, wait_for
from pyflom import codec
from vhosts import VirtualHost, VirtualNetwork, vnet_fixture  # noqa: F401

MARGIN = 1.0  # seconds a waiter is given to (wrongly) start
GROUP4 = "239.77.0.1"
GROUP6 = "ff15::77"


class Net:
    """The hosts of one test, with ``flom`` runners that share the sandbox's files."""

    def __init__(self, network: VirtualNetwork, box: FlomSandbox) -> None:
        self.a, self.b, self.c = network.hosts
        self.box = box

    def flom(
        self, host: VirtualHost, *args: str, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return host.run([FLOM, *args], env=self.box.env, cwd=str(self.box.root), timeout=timeout)

    def start(self, host: VirtualHost, *args: str) -> subprocess.Popen[str]:
        return host.start([FLOM, *args], env=self.box.env, cwd=str(self.box.root))

    def holder(self, ident: str) -> list[str]:
        """A command that logs its start, waits for gate-<ident>, logs its end."""
        log, gate = self.box.path("log"), self.box.path(f"gate-{ident}")
        script = (
            f'echo "{ident} start" >> {log}; '
            f"while [ ! -e {gate} ]; do sleep 0.01; done; "
            f'echo "{ident} end" >> {log}'
        )
        return ["sh", "-c", script]

    def open_gate(self, ident: str) -> None:
        self.box.path(f"gate-{ident}").touch()

    def events(self) -> list[str]:
        log = self.box.path("log")
        return log.read_text().splitlines() if log.exists() else []

    def started(self, ident: str) -> bool:
        return f"{ident} start" in self.events()


@pytest.fixture
def net(vnet: VirtualNetwork, sandbox: FlomSandbox) -> Net:
    return Net(vnet, sandbox)


def daemons(host: VirtualHost) -> list[int]:
    """PIDs of pyflom daemons running in ``host``'s namespace."""
    found = []
    for pid in host.pids():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"pyflom.daemon" in argv and process_alive(pid):
            found.append(pid)
    return found


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> int:
    proc.wait(timeout=timeout)
    return proc.returncode


def conflict_across_hosts(net: Net, reach_a: list[str], reach_from_c: list[str]) -> None:
    """b holds EX on R; c's non-waiting request is busy, its waiting one follows b."""
    p_b = net.start(net.b, *reach_a, "-d", "0", "-r", "R", "--", *net.holder("b"))
    assert wait_for(lambda: net.started("b"), timeout=30)
    busy = net.flom(net.c, *reach_from_c, "-d", "0", "-r", "R", "-o", "0", "--", "true")
    assert busy.returncode == 98, busy.stderr
    p_c = net.start(net.c, *reach_from_c, "-d", "0", "-r", "R", "--", *net.holder("c"))
    time.sleep(MARGIN)
    assert not net.started("c")
    net.open_gate("b")
    net.open_gate("c")
    assert finish(p_b) == 0 and finish(p_c) == 0
    assert net.events() == ["b start", "b end", "c start", "c end"]


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_tcp_daemon_on_one_host_serializes_two_others(net: Net, family: str) -> None:
    address = net.a.ipv4 if family == "ipv4" else net.a.ipv6
    started = net.flom(net.a, "-a", address, "-d", "-1", "--", "true")
    assert started.returncode == 0, started.stderr
    assert len(daemons(net.a)) == 1
    conflict_across_hosts(net, ["-a", address], ["-a", address])


def test_ipv6_link_local_needs_the_interface(net: Net) -> None:
    address = net.a.link_local()
    started = net.flom(net.a, "-a", address, "-n", net.a.ifname, "-d", "-1", "--", "true")
    assert started.returncode == 0, started.stderr
    reach = ["-a", address, "-n", net.b.ifname]
    conflict_across_hosts(net, reach, reach)


def test_ipv4_mapped_ipv6_address(net: Net) -> None:
    mapped = f"::ffff:{net.a.ipv4}"
    started = net.flom(net.a, "-a", mapped, "-d", "-1", "--", "true")
    assert started.returncode == 0, started.stderr
    # Clients may use the mapped form or the plain IPv4 address: same daemon.
    conflict_across_hosts(net, ["-a", mapped], ["-a", net.a.ipv4])


def test_host_name_is_resolved(net: Net) -> None:
    started = net.flom(net.a, "-a", "localhost", "-d", "-1", "--", "true")
    assert started.returncode == 0, started.stderr
    again = net.flom(net.a, "-a", "localhost", "-d", "0", "--", "echo", "served")
    assert again.returncode == 0 and again.stdout == "served\n"


def test_network_daemon_not_started_with_lifespan_zero(net: Net) -> None:
    result = net.flom(net.a, "-a", net.a.ipv4, "-d", "0", "--", "true")
    assert result.returncode == 99
    assert "ret_cod=-105" in result.stderr
    assert daemons(net.a) == []


def test_address_of_another_host_cannot_start_a_daemon_here(net: Net) -> None:
    # Nobody listens on a; b may start daemons but cannot bind a's address: -2, fast.
    begin = time.monotonic()
    result = net.flom(net.b, "-a", net.a.ipv4, "-d", "3000", "--", "true")
    assert result.returncode == 99
    assert "ret_cod=-2" in result.stderr
    assert time.monotonic() - begin < 10
    assert wait_for(lambda: daemons(net.b) == [], timeout=10)  # the loser is exiting


@pytest.mark.parametrize("reach", ["unicast", "multicast", "both"])
def test_network_daemon_with_limited_life_goes_away(net: Net, reach: str) -> None:
    args = {
        "unicast": ["-a", net.a.ipv4],
        "multicast": ["-A", GROUP4],
        "both": ["-a", net.a.ipv4, "-A", GROUP4],
    }[reach]
    assert net.flom(net.a, *args, "-d", "1000", "--", "true").returncode == 0
    assert len(daemons(net.a)) == 1
    assert wait_for(lambda: daemons(net.a) == [], timeout=15)


def test_concurrent_first_tcp_clients_end_with_one_daemon(net: Net) -> None:
    procs = [net.start(net.a, "-a", net.a.ipv4, "-d", "-1", "--", "true") for _ in range(8)]
    assert [finish(p) for p in procs] == [0] * 8
    assert wait_for(lambda: len(daemons(net.a)) == 1, timeout=15)
    time.sleep(MARGIN)
    assert len(daemons(net.a)) == 1


def test_immediate_shutdown_over_tcp(net: Net) -> None:
    assert net.flom(net.a, "-a", net.a.ipv4, "-d", "-1", "--", "true").returncode == 0
    [pid] = daemons(net.a)
    result = net.flom(net.b, "-a", net.a.ipv4, "-X")
    assert result.returncode == 0
    assert "Starting FLoM daemon immediate shutdown..." in result.stdout
    assert wait_for(lambda: not process_alive(pid), timeout=15)


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_multicast_discovery_finds_the_daemon_across_hosts(net: Net, family: str) -> None:
    group = GROUP4 if family == "ipv4" else GROUP6
    nobody = net.flom(net.b, "-A", group, "-d", "0", "--", "true")
    assert nobody.returncode == 99 and "ret_cod=-105" in nobody.stderr
    started = net.flom(net.a, "-A", group, "-d", "-1", "--", "true")
    assert started.returncode == 0, started.stderr
    assert len(daemons(net.a)) == 1
    found = net.flom(net.b, "-V", "-A", group, "-d", "0", "--", "true")
    assert found.returncode == 0, found.stderr
    # A daemon on the wildcard address announces address="" (regression check of FLoM).
    assert 'network address=""' in found.stdout
    assert f"sending UDP multicast datagram to {group}/28015" in found.stdout
    conflict_across_hosts(net, ["-A", group], ["-A", group])
    assert daemons(net.b) == [] and daemons(net.c) == []


def test_link_local_multicast_group_with_interface(net: Net) -> None:
    group = "ff02::77"
    iface = net.a.ifname
    started = net.flom(net.a, "-A", group, "-n", iface, "-d", "-1", "--", "true")
    assert started.returncode == 0, started.stderr
    found = net.flom(net.b, "-A", group, "-n", iface, "-d", "0", "--", "echo", "found")
    assert found.returncode == 0 and found.stdout == "found\n", found.stderr


def test_discovery_announces_the_configured_unicast_address(net: Net) -> None:
    args = ["-a", net.a.ipv4, "-A", GROUP4]
    assert net.flom(net.a, *args, "-d", "0", "--", "true").returncode == 99
    assert net.flom(net.a, *args, "-d", "-1", "--", "true").returncode == 0
    found = net.flom(net.b, "-V", "-A", GROUP4, "-d", "0", "--", "true")
    assert found.returncode == 0, found.stderr
    assert f'network address="{net.a.ipv4}"' in found.stdout
    for reach in (args, ["-a", net.a.ipv4]):
        assert net.flom(net.c, *reach, "-d", "0", "--", "true").returncode == 0
    assert len(daemons(net.a)) == 1


def test_no_discovery_reply_after_the_given_attempts(net: Net) -> None:
    begin = time.monotonic()
    result = net.flom(net.b, "-V", "-A", GROUP4, "-D", "3", "-I", "200", "-d", "0", "--", "true")
    assert result.returncode == 99
    assert result.stdout.count("no reply from") == 3
    assert time.monotonic() - begin < 10


def test_concurrent_first_multicast_clients_end_with_one_daemon(net: Net) -> None:
    # FLoM may start one daemon per client here; pyflom holds a per-host lock file.
    procs = [net.start(net.a, "-A", GROUP4, "-d", "-1", "--", "true") for _ in range(6)]
    assert [finish(p) for p in procs] == [0] * 6
    assert wait_for(lambda: len(daemons(net.a)) == 1, timeout=15)
    time.sleep(MARGIN)
    assert len(daemons(net.a)) == 1


def test_hostile_datagrams_do_not_stop_discovery(net: Net) -> None:
    assert net.flom(net.a, "-A", GROUP4, "-d", "-1", "--", "true").returncode == 0
    [pid] = daemons(net.a)
    junk = [b"\x16\x03\x01\x00\x05hello", b"<" * 2000, b"<msg level='3' verb='1' step='8'/>"]
    sender = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"for d in {junk!r}: s.sendto(d, ('{net.a.ipv4}', 28015))\n"
    )
    assert net.b.run([sys.executable, "-c", sender]).returncode == 0
    found = net.flom(net.b, "-A", GROUP4, "-d", "0", "--", "true")
    assert found.returncode == 0, found.stderr
    assert process_alive(pid)


def test_vanished_host_loses_its_lock_within_the_keepalive_window(net: Net) -> None:
    keepalive = ["--tcp-keepalive-time", "1", "--tcp-keepalive-intvl", "1"]
    keepalive += ["--tcp-keepalive-probes", "2"]
    reach = ["-a", net.a.ipv4]
    assert net.flom(net.a, *reach, *keepalive, "-d", "-1", "--", "true").returncode == 0
    p_b = net.start(net.b, *reach, "-d", "0", "-r", "R", "--", *net.holder("b"))
    assert wait_for(lambda: net.started("b"), timeout=30)
    p_c = net.start(net.c, *reach, "-d", "0", "-r", "R", "--", *net.holder("c"))
    time.sleep(MARGIN)
    assert not net.started("c")
    cut = time.monotonic()
    net.b.link_down()  # b vanishes: no FIN, no RST, only silence
    # Window: 1 s idle + 2 probes 1 s apart = 3 s; allow a loaded machine plenty more.
    assert wait_for(lambda: net.started("c"), timeout=30)
    assert time.monotonic() - cut >= 2.0  # it was the keepalive, not something faster
    net.open_gate("c")
    assert finish(p_c) == 0
    net.open_gate("b")
    p_b.kill()
    p_b.wait(timeout=10)


@pytest.mark.parametrize("ipv6_group", [GROUP6, "ff02::78"])
def test_ipv6_multicast_debug_features(net: Net, ipv6_group: str) -> None:
    iface = ["-n", net.a.ifname]
    server = net.start(
        net.a, "--debug-feature=IPv6.Multicast.Server", "-A", ipv6_group, "-P", "28016", *iface
    )

    # The server is ready once it has joined the group: poll with the client until then.
    def client_gets_welcome() -> bool:
        result = net.flom(
            net.b,
            "--debug-feature=ipv6.multicast.client",
            "-A",
            ipv6_group,
            "-P",
            "28016",
            "-I",
            "300",
            "-D",
            "1",
            *iface,
        )
        return result.returncode == 0 and "Arrived datagram is 'WELCOME'" in result.stdout

    assert wait_for(client_gets_welcome, timeout=30, every=0.2)
    out, _ = server.communicate(timeout=30)
    assert server.returncode == 0
    assert out == "Arrived datagram is 'HELLO'\nSent datagram is 'WELCOME'\n"


def test_ipv6_multicast_debug_client_reports_silence(net: Net) -> None:
    result = net.flom(
        net.b, "--debug-feature=ipv6.multicast.client", "-A", GROUP6, "-I", "200", "-D", "1"
    )
    assert result.returncode == 1
    assert result.stdout == "Sent datagram is 'HELLO'\n"
    assert "no answer" in result.stderr


def test_debug_feature_refuses_an_ipv4_group(net: Net) -> None:
    result = net.flom(net.b, "--debug-feature=ipv6.multicast.client", "-A", GROUP4)
    assert result.returncode == 1
    assert "not an IPv6 multicast group" in result.stderr


def test_unknown_host_name_is_a_clear_error(net: Net) -> None:
    result = net.flom(net.b, "-a", "no-such-host.invalid", "-d", "0", "--", "true")
    assert result.returncode == 99
    assert "no-such-host.invalid" in result.stderr


def test_library_over_tcp(net: Net) -> None:
    assert net.flom(net.a, "-a", net.a.ipv4, "-d", "-1", "--", "true").returncode == 0
    program = (
        "import pyflom\n"
        f"s = pyflom.Settings(unicast_address='{net.a.ipv4}')\n"
        "with pyflom.lock('lib', settings=s) as h:\n"
        "    print('generation', h.lock_generation)\n"
    )
    result = net.b.run([sys.executable, "-c", program], env=net.box.env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("generation ")


def test_discover_request_and_reply_bytes_are_flom_s(net: Net) -> None:
    # A raw FLoM discover request gets FLoM's reply; a multicast-only daemon listens on
    # a TCP port the system picked and announces the wildcard as address="".
    assert net.flom(net.a, "-A", GROUP4, "-d", "-1", "--", "true").returncode == 0
    request = codec.encode(codec.DiscoverRequest())
    assert len(request) == 78
    probe = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.settimeout(5)\n"
        f"s.sendto({request!r}, ('{GROUP4}', 28015))\n"
        "sys.stdout.write(s.recvfrom(1024)[0].decode())\n"
    )
    result = net.b.run([sys.executable, "-c", probe])
    assert result.returncode == 0, result.stderr
    head = '<?xml version="1.0" encoding="UTF-8" ?><msg level="3" verb="4" step="16">'
    assert result.stdout.startswith(head + '<network address="" port="')
    assert result.stdout.endswith('"/></msg>')


def test_network_settings_from_a_config_file(net: Net) -> None:
    config = net.box.path("net.conf")
    config.write_text(
        "[Daemon]\n"
        f"UnicastAddress={net.a.ipv4}\n"
        "UnicastPort=28123\n"
        "[Network]\n"
        "TcpKeepaliveTime=7\n"
        "TcpKeepaliveIntvl=3\n"
        "TcpKeepaliveProbes=4\n"
    )
    started = net.flom(net.a, "-c", str(config), "-d", "-1", "-V", "--", "true")
    assert started.returncode == 0, started.stderr
    assert f"[Daemon]/UnicastAddress='{net.a.ipv4}'" in started.stdout
    [pid] = daemons(net.a)
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert argv[argv.index(b"--unicast-port") + 1] == b"28123"
    assert argv[argv.index(b"--tcp-keepalive") + 1] == b"7,3,4"
    plain = net.flom(net.b, "-a", net.a.ipv4, "-p", "28123", "-d", "0", "--", "echo", "ok")
    assert plain.returncode == 0 and plain.stdout == "ok\n", plain.stderr
