"""``make demo-ha``: locks that survive the loss of a machine, on one machine.

Starts a 3-member etcd cluster on 127.0.0.1 and two pyflom gateways (two UNIX sockets:
two "hosts"), then shows, step by step:

1. a lock held on gateway A while the etcd leader is SIGKILLed: the command keeps
   running and ends normally, and a waiter on gateway B gets the lock after it;
2. a lock held on gateway A while gateway A itself is SIGKILLed: the holder's command is
   stopped by its lock-loss monitor (exit 99), and once A's lease has expired the waiter
   on gateway B is granted.

Needs the etcd extra (``pip install 'pyflom[etcd]'``) and an etcd server: ``$PYFLOM_ETCD_BIN``,
``etcd`` on PATH, or ``.cache/etcd/usr/bin/etcd`` (``make etcd``).  Every process it starts
(etcd members, flom commands, gateways) is ended by PID on the way out, also on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
FLOM = str(Path(sys.executable).with_name("flom"))
LEASE_TTL_S = 6  # the least the lease rule allows with a 1 s lock-loss grace
GRACE_MS = 1000
BEGAN = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - BEGAN:5.1f}s] {text}", flush=True)


def etcd_binary() -> str:
    for candidate in (
        os.environ.get("PYFLOM_ETCD_BIN"),
        shutil.which("etcd"),
        str(ROOT / ".cache" / "etcd" / "usr" / "bin" / "etcd"),
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    sys.exit("demo-ha: no etcd server found: run `make etcd`, or set PYFLOM_ETCD_BIN")


def free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def ask(port: int, path: str, body: bytes | None = None) -> Any:
    """A JSON answer of the etcd member on ``port`` (its HTTP gateway)."""
    url = f"http://127.0.0.1:{port}{path}"
    with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=1) as answer:
        return json.loads(answer.read())


def listener_pid(path: str) -> int | None:
    """PID of the process listening on the UNIX socket ``path``."""
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(path)
        except OSError:
            return None
        creds = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return int(struct.unpack("3i", creds)[0])


def alive(pid: int) -> bool:
    """``pid`` runs (not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


class Demo:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.members: dict[str, tuple[subprocess.Popen[bytes], int]] = {}  # name -> (proc, port)
        self.commands: list[subprocess.Popen[str]] = []
        self.gateways: set[int] = set()
        self.config = work / "flom.conf"
        self.env = dict(os.environ, HOME=str(work))

    # -- etcd ------------------------------------------------------------------------------

    def start_etcd(self) -> None:
        ports = free_ports(6)
        names = ["m0", "m1", "m2"]
        urls = [f"http://127.0.0.1:{port}" for port in ports]  # client, peer, client, ...
        cluster = ",".join(f"{n}={urls[2 * i + 1]}" for i, n in enumerate(names))
        for i, name in enumerate(names):
            client, peer = urls[2 * i], urls[2 * i + 1]
            log = open(self.work / f"{name}.log", "wb")  # noqa: SIM115 (closed below)
            proc = subprocess.Popen(
                [
                    etcd_binary(), "--name", name, "--data-dir", str(self.work / name),
                    "--listen-client-urls", client, "--advertise-client-urls", client,
                    "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                    "--initial-cluster", cluster, "--initial-cluster-state", "new",
                    "--initial-cluster-token", f"demo-ha-{os.getpid()}",
                    "--heartbeat-interval", "50", "--election-timeout", "500",
                ],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
            log.close()
            self.members[name] = (proc, ports[2 * i])
        deadline = time.monotonic() + 30
        while not all(self.healthy(port) for _, port in self.members.values()):
            if time.monotonic() > deadline:
                sys.exit(f"demo-ha: etcd did not become healthy; see the logs in {self.work}")
            time.sleep(0.1)
        ports_list = ",".join(f"127.0.0.1:{port}" for _, port in self.members.values())
        self.config.write_text(
            "# what every host's system configuration file would say\n"
            f"[Daemon]\nBackend=etcd://{ports_list}\n"
            f"[Etcd]\nKeyPrefix=/demo-ha/\nLeaseTTL={LEASE_TTL_S}\n"
            f"[Monitor]\nLockLossGrace={GRACE_MS}\n"
        )

    @staticmethod
    def healthy(port: int) -> bool:
        try:
            return bool(ask(port, "/health").get("health") == "true")
        except (OSError, ValueError):
            return False

    def leader(self) -> str:
        """Name of the etcd leader (waits for an election to end)."""
        deadline = time.monotonic() + 15
        while True:
            ids, leaders = {}, set()
            for name, (proc, port) in self.members.items():
                if proc.poll() is None:
                    with contextlib.suppress(OSError, ValueError, KeyError):
                        status = ask(port, "/v3/maintenance/status", b"{}")
                        ids[status["header"]["member_id"]] = name
                        leaders.add(status.get("leader"))
            known = [ids[i] for i in leaders if i in ids]
            if known:
                return known[0]
            if time.monotonic() > deadline:
                sys.exit("demo-ha: etcd elected no leader within 15 s")
            time.sleep(0.1)

    # -- pyflom ----------------------------------------------------------------------------

    def flom(self, gateway: str, *args: str) -> list[str]:
        return [FLOM, "-c", str(self.config), "-s", str(self.work / gateway), *args]

    def start(self, gateway: str, *args: str) -> subprocess.Popen[str]:
        """``flom`` in the background, its output shown as it comes; the command reads
        the demo's pipe as its standard input."""
        proc = subprocess.Popen(
            self.flom(gateway, *args), env=self.env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
        )  # fmt: skip
        self.commands.append(proc)
        return proc

    def expect(self, proc: subprocess.Popen[str], words: str, who: str) -> None:
        """Show ``proc``'s lines until one contains ``words``."""
        out: IO[str] | None = proc.stdout
        assert out is not None
        for line in out:
            say(f"  {who}: {line.rstrip()}")
            if words in line:
                return
        sys.exit(f"demo-ha: {who} ended (status {proc.wait()}) before saying {words!r}")

    def finish(self, proc: subprocess.Popen[str], who: str) -> int:
        self.expect_end(proc, who)
        status = proc.wait(timeout=30)
        say(f"  {who} ended with exit status {status}")
        return status

    def expect_end(self, proc: subprocess.Popen[str], who: str) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            say(f"  {who}: {line.rstrip()}")

    def gateway_pid(self, gateway: str) -> int:
        pid = listener_pid(str(self.work / gateway))
        assert pid is not None, f"no gateway on {gateway}"
        self.gateways.add(pid)
        return pid

    def until_waiting(self, proc: subprocess.Popen[str], gateway: str, resource: str) -> None:
        """Return once ``flom --status`` through ``gateway`` shows a waiter on ``resource``
        (``proc``, the waiter, must not end meanwhile)."""
        deadline = time.monotonic() + 30
        while not self.waiting(gateway, resource):
            if proc.poll() is not None:
                self.expect_end(proc, "waiter")
                sys.exit(f"demo-ha: the waiter ended with exit status {proc.wait()}")
            if time.monotonic() > deadline:
                sys.exit(f"demo-ha: no waiter on {resource} after 30 s")
            time.sleep(0.1)

    def waiting(self, gateway: str, resource: str) -> bool:
        """Does ``flom --status`` through ``gateway`` show a waiter on ``resource``?"""
        shown = subprocess.run(
            self.flom(gateway, "-r", resource, "--status=json"),
            env=self.env, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        try:
            resources = json.loads(shown.stdout)["resources"]
        except (ValueError, KeyError):
            return False
        return any(res["waiters"] for res in resources)

    def status(self, gateway: str) -> None:
        say(f"$ flom -s {gateway} --status   (through gateway {gateway}: the whole cluster)")
        shown = subprocess.run(
            self.flom(gateway, "--status"), env=self.env, capture_output=True, text=True,
            timeout=30,
        )  # fmt: skip
        for line in (shown.stdout + shown.stderr).splitlines():
            say(f"    {line}")

    def holder_and_waiter(self, work: str) -> tuple[subprocess.Popen[str], subprocess.Popen[str]]:
        """A command holding ``demo`` through gateway A (then running the shell ``work``),
        and one waiting for it through gateway B."""
        holder = self.start(
            "A", "-r", "demo", "--", "sh", "-c",
            f'echo "holding demo (generation $FLOM_LOCK_GENERATION)"; {work}',
        )  # fmt: skip
        self.expect(holder, "holding", "holder on A")
        self.gateway_pid("A")
        waiter = self.start(
            "B", "-r", "demo", "--", "sh", "-c",
            'echo "waiter on B granted (generation $FLOM_LOCK_GENERATION)"',
        )  # fmt: skip
        self.until_waiting(waiter, "B", "demo")
        return holder, waiter

    # -- the story ------------------------------------------------------------------------

    def run(self) -> None:
        say("starting a 3-member etcd cluster on 127.0.0.1 ...")
        self.start_etcd()
        say(f"etcd healthy: {', '.join(f'{n} pid {p.pid}' for n, (p, _) in self.members.items())}")
        say(f"every flom reads {self.config.name}: Backend=etcd://..., LeaseTTL={LEASE_TTL_S}")

        say("1. a lock held on gateway A through the SIGKILL of the etcd leader")
        holder, waiter = self.holder_and_waiter('read go; echo "work done"')
        self.gateway_pid("B")
        self.status("B")
        leader = self.leader()
        proc, _ = self.members[leader]
        proc.kill()
        proc.wait()
        say(f"SIGKILLed the etcd leader {leader} (pid {proc.pid}); 2 of 3 members remain")
        time.sleep(1.0)
        say(f"  the new leader is {self.leader()}; the holder still runs, the waiter still waits:")
        self.status("B")
        assert holder.stdin is not None
        holder.stdin.write("go\n")
        holder.stdin.close()
        say("  the holder's work ends")
        if self.finish(holder, "holder on A") != 0:
            sys.exit("demo-ha: the holder did not end normally")
        if self.finish(waiter, "waiter on B") != 0:
            sys.exit("demo-ha: the waiter did not end normally")

        say("2. a lock held on gateway A, a waiter on gateway B, then gateway A SIGKILLed")
        holder, waiter = self.holder_and_waiter("exec sleep 60")
        say("  the waiter on B waits")
        gateway = self.gateway_pid("A")
        killed = time.monotonic()
        os.kill(gateway, signal.SIGKILL)
        say(f"SIGKILLed gateway A (pid {gateway}): its lease expires in {LEASE_TTL_S} s at most")
        status = self.finish(holder, "holder on A")
        if status != 99:
            sys.exit(f"demo-ha: the holder on A ended with {status}, not 99")
        self.expect(waiter, "granted", "waiter on B")
        say(f"  granted {time.monotonic() - killed:.1f} s after gateway A died")
        if self.finish(waiter, "waiter on B") != 0:
            sys.exit("demo-ha: the waiter did not end normally")
        say("done: no lock lost to the etcd leader's death, none granted twice")

    def close(self) -> None:
        for proc in self.commands:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        for gateway in ("A", "B"):
            with contextlib.suppress(AssertionError):
                self.gateway_pid(gateway)
        for pid in self.gateways:  # SIGTERM: a gateway revokes its lease as it exits
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(map(alive, self.gateways)):
            time.sleep(0.05)
        for pid in filter(alive, self.gateways):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc, _ in self.members.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="pyflom-demo-ha-", dir="/tmp"))
    demo = Demo(work)
    try:
        demo.run()
        return 0
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        demo.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
