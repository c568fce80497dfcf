"""Virtual hosts on a virtual LAN, built from Linux network namespaces, for tests.

Each host is a network namespace with ``lo`` and one interface ``eth0``; the other end of
every ``eth0`` (a veth pair) is a port ``p<i>`` of the bridge ``br0`` in one more "switch"
namespace. Host ``i`` (1-based) has ``10.77.0.<i>/24``, ``fd77::<i>/64`` and an IPv6
link-local address, all usable at once (no duplicate address detection). Nothing touches
the machine's own interfaces: the hosts have no default route and the veth pairs are
created directly inside the namespaces.

Use from a test module (the tests directory is on ``sys.path``, as for ``conftest``)::

    from vhosts import VirtualNetwork, vnet_fixture  # noqa: F401

    def test_something(vnet: VirtualNetwork) -> None:
        a, b = vnet["a"], vnet["b"]
        server = a.start([sys.executable, "-c", SERVER])
        assert read_line(server) == "READY"
        assert b.run([sys.executable, "-c", CLIENT, a.ipv4]).returncode == 0

The fixture is registered under the name ``vnet`` (importing ``vnet_fixture`` is enough).
It skips the test when namespaces cannot be created (not root, no iproute2...), unless
``PYFLOM_REQUIRE_NETNS=1`` is set: then it fails, so that CI can never skip silently.
For another number of hosts, call ``require_netns()`` and use ``VirtualNetwork(...)`` as
a context manager.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType

import pytest

NETNS_DIR = "/run/netns"
_counter = itertools.count()


@functools.cache
def _ip() -> str | None:
    """Absolute path of the ``ip`` command (iproute2), or None."""
    return shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin")


def _ip_cmd(*args: str, batch: str | None = None, check: bool = True) -> str:
    """Run ``ip ARGS`` (with ``batch`` fed to ``ip -batch -``), return its stdout."""
    ip = _ip()
    if ip is None:
        raise RuntimeError("the ip command (iproute2) is not installed")
    argv = [ip, *args] if batch is None else [ip, *args, "-batch", "-"]
    proc = subprocess.run(argv, input=batch, capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        commands = f"\n{batch.rstrip()}" if batch else ""
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.strip()}{commands}")
    return proc.stdout


def _netns_pids(netns: str) -> list[int]:
    """PIDs of the processes inside namespace ``netns``."""
    out = _ip_cmd("netns", "pids", netns, check=False)
    return [int(word) for word in out.split() if word.isdigit()]


@functools.cache
def netns_unavailable_reason() -> str | None:
    """None if namespaces, veth pairs and bridges can be created here, else why not."""
    if _ip() is None:
        return "the ip command (iproute2) is not installed"
    name = f"pf-{os.getpid()}-probe"
    try:
        _ip_cmd("netns", "add", name)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        return f"ip netns add failed: {exc} (needs root / CAP_SYS_ADMIN)"
    try:
        _ip_cmd(
            "-n",
            name,
            batch="link add br0 type bridge mcast_snooping 0\nlink add v0 type veth peer name v1\n",
        )
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        return f"cannot create a bridge or a veth pair in a namespace: {exc}"
    finally:
        _ip_cmd("netns", "del", name, check=False)
    return None


def require_netns() -> None:
    """Skip the test if namespaces are unavailable (fail if PYFLOM_REQUIRE_NETNS=1)."""
    reason = netns_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("PYFLOM_REQUIRE_NETNS") == "1":
        pytest.fail(f"PYFLOM_REQUIRE_NETNS=1 but network namespaces are unavailable: {reason}")
    pytest.skip(f"network namespaces unavailable: {reason}")


def read_line(proc: subprocess.Popen[str], timeout: float = 30.0) -> str:
    """Next line of ``proc.stdout`` without its newline ("" at EOF).

    Raises TimeoutError if no full line arrives within ``timeout`` seconds.
    """
    assert proc.stdout is not None
    stdout = proc.stdout
    result: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: result.put(stdout.readline()), daemon=True).start()
    try:
        return result.get(timeout=timeout).rstrip("\n")
    except queue.Empty:
        raise TimeoutError(f"no line from {proc.args!r} within {timeout} s") from None


class VirtualHost:
    """One host: a namespace with ``lo`` and ``eth0`` plugged into the switch."""

    def __init__(self, network: VirtualNetwork, name: str, index: int, netns: str) -> None:
        self.network = network
        self.name = name
        self.index = index
        self.netns = netns
        self.ifname = "eth0"
        self.ipv4 = f"10.77.0.{index}"
        self.ipv6 = f"fd77::{index}"  # same digits as the IPv4 address
        self.port = f"p{index}"  # the bridge port in the switch namespace
        self.started: list[subprocess.Popen[str]] = []

    def __repr__(self) -> str:
        return f"VirtualHost({self.name!r}, netns={self.netns!r}, ipv4={self.ipv4!r})"

    def _argv(self, argv: Sequence[str]) -> list[str]:
        ip = _ip()
        assert ip is not None
        return [ip, "netns", "exec", self.netns, *argv]

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 60,
        input: str | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the host to completion, capturing text output."""
        return subprocess.run(
            self._argv(argv),
            env=env,
            timeout=timeout,
            input=input,
            cwd=cwd,
            capture_output=True,
            text=True,
        )

    def start(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> subprocess.Popen[str]:
        """Start ``argv`` inside the host in the background (stdout/stderr piped, text)."""
        proc = subprocess.Popen(
            self._argv(argv),
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.started.append(proc)
        return proc

    def addresses(self) -> list[dict[str, object]]:
        """``addr_info`` entries of ``eth0`` (``ip -j addr show dev eth0``)."""
        out = _ip_cmd("-n", self.netns, "-j", "addr", "show", "dev", self.ifname)
        info: list[dict[str, object]] = json.loads(out)[0]["addr_info"]
        return info

    def link_local(self) -> str:
        """The IPv6 link-local address of ``eth0`` (without ``%eth0``)."""
        for addr in self.addresses():
            if addr.get("family") == "inet6" and addr.get("scope") == "link":
                return str(addr["local"])
        raise RuntimeError(f"{self.name}: eth0 has no IPv6 link-local address")

    def link_down(self) -> None:
        """Cut the cable: the switch port goes down, the host silently leaves the LAN."""
        _ip_cmd("-n", self.network.switch, "link", "set", self.port, "down")

    def link_up(self) -> None:
        """Plug the cable back in."""
        _ip_cmd("-n", self.network.switch, "link", "set", self.port, "up")

    def pids(self) -> list[int]:
        """PIDs of the processes running inside the host (``ip netns pids``)."""
        return _netns_pids(self.netns)


class VirtualNetwork:
    """Hosts (default ``a``, ``b``, ``c``) on one bridged LAN; ``cleanup()`` removes all."""

    def __init__(self, hosts: Sequence[str] = ("a", "b", "c")) -> None:
        if not 1 <= len(hosts) <= 250 or len(set(hosts)) != len(hosts):
            raise ValueError(f"bad host names {hosts!r}")
        while True:
            prefix = f"pf-{os.getpid()}-{next(_counter)}"
            names = [f"{prefix}-sw", *(f"{prefix}-{h}" for h in hosts)]
            if not any(os.path.exists(os.path.join(NETNS_DIR, n)) for n in names):
                break
        self.switch = names[0]
        self.hosts = [
            VirtualHost(self, h, i, ns)
            for i, (h, ns) in enumerate(zip(hosts, names[1:], strict=True), 1)
        ]
        self._by_name = {h.name: h for h in self.hosts}
        self._namespaces = names  # only ever deleted if they exist: nobody else uses them
        self._closed = False
        try:
            self._create()
        except BaseException:
            self.cleanup()
            raise

    def _create(self) -> None:
        # No duplicate address detection: "default" is inherited by eth0, created after.
        dad_off = "net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0"
        lines = [f"netns add {ns}" for ns in self._namespaces]
        lines += [f"netns exec {h.netns} sysctl -qw {dad_off}" for h in self.hosts]
        _ip_cmd(batch="\n".join(lines) + "\n")
        # The switch: the bridge, then each veth pair created straight into both namespaces.
        lines = ["link set lo up", "link add br0 type bridge mcast_snooping 0", "link set br0 up"]
        for h in self.hosts:
            lines += [
                f"link add {h.port} type veth peer name {h.ifname} netns {h.netns}",
                f"link set {h.port} master br0",
                f"link set {h.port} up",
            ]
        _ip_cmd("-n", self.switch, batch="\n".join(lines) + "\n")
        for h in self.hosts:
            lines = [
                "link set lo up",
                f"addr add {h.ipv4}/24 dev {h.ifname}",
                f"addr add {h.ipv6}/64 dev {h.ifname} nodad",
                f"link set {h.ifname} up",
                f"route add 224.0.0.0/4 dev {h.ifname}",
            ]
            _ip_cmd("-n", h.netns, batch="\n".join(lines) + "\n")
        # IPv6 addresses leave the "tentative" state from a kernel work queue, just after.
        deadline = time.monotonic() + 10
        for h in self.hosts:
            while True:
                addrs = [a for a in h.addresses() if a.get("family") == "inet6"]
                if len(addrs) >= 2 and not any(a.get("tentative") for a in addrs):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{h.name}: IPv6 addresses not ready: {addrs}")
                time.sleep(0.001)

    def __getitem__(self, name: str) -> VirtualHost:
        return self._by_name[name]

    def __iter__(self) -> Iterator[VirtualHost]:
        return iter(self.hosts)

    def __len__(self) -> int:
        return len(self.hosts)

    def __enter__(self) -> VirtualNetwork:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    @property
    def namespaces(self) -> list[str]:
        """Names of the namespaces of this network (switch first)."""
        return list(self._namespaces)

    def cleanup(self) -> None:
        """Kill every process in the namespaces, then delete them. Never raises."""
        if self._closed:
            return
        self._closed = True
        existing = [ns for ns in self._namespaces if os.path.exists(os.path.join(NETNS_DIR, ns))]
        for ns in existing:
            with contextlib.suppress(Exception):
                self._kill_all(ns)
        for h in self.hosts:
            for proc in h.started:
                with contextlib.suppress(Exception):
                    if proc.poll() is None:
                        proc.kill()
                    proc.communicate(timeout=10)
        if existing:
            with contextlib.suppress(Exception):
                _ip_cmd("-force", batch="".join(f"netns del {ns}\n" for ns in existing))

    @staticmethod
    def _kill_all(netns: str) -> None:
        """SIGKILL the processes inside ``netns`` until none is left (5 s at most)."""
        deadline = time.monotonic() + 5
        while (pids := _netns_pids(netns)) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.005)


@pytest.fixture(name="vnet")
def vnet_fixture() -> Iterator[VirtualNetwork]:
    """A fresh network of hosts ``a``, ``b``, ``c``, removed after the test."""
    require_netns()
    network = VirtualNetwork()
    try:
        yield network
    finally:
        network.cleanup()
