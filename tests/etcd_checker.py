"""Fault-injection checker of the etcd backend, with real processes (issue 18, item 4).

A real 3-member etcd cluster (:mod:`etcd_cluster`); ``gateways`` UNIX sockets, each served
by a real ``python -m pyflom.daemon`` gateway that ``flom`` starts on demand (one socket
stands for one host); ``clients`` loops, spread over the gateways round robin, each
running real ``flom -- hold.py`` commands one after the other with random resources and
modes: a simple resource ``S`` (six modes), a numeric ``r[3]`` (quantity 1 to 3), the
hierarchical ``/a``, ``/a/b``, ``/a/c`` (six modes) and the non-transactional sequence
``_s_seq[2]``.  Each command (``hold.py``) appends to its client's log the CLOCK_MONOTONIC
time (system-wide, so comparable between processes) right after it starts and right
before it ends (or when SIGTERM reaches it), with its ``FLOM_LOCK_GENERATION`` and its
element.  Meanwhile one fault at a time: an etcd member (the leader half of the time)
SIGKILLed then restarted, SIGSTOPped then continued, or restarted; a gateway SIGKILLed
(the next command on its socket starts a new one) or SIGSTOPped then continued.

What is checked afterwards (:func:`verify`):

* no incompatible overlap: the logged interval of a command lies inside the time its lock
  was held (logged after the grant, before the release), so two logged intervals that
  overlap are two real holders.  Conflicts: the VMS matrix on ``S`` and between related
  hierarchical nodes (ancestor, descendant, same node; ``/a/b`` and ``/a/c`` are not
  related), more than 3 units of ``r[3]`` at once, more than 2 holders of ``_s_seq[2]``;
* the generations (fencing tokens) of any two conflicting grants strictly increase in
  grant order (ordered by their logged start);
* no number of ``_s_seq[2]`` handed out twice (it never rolls back);
* no client stuck: every ``flom`` command ends within ``bound_s`` (else it is killed and
  counted), and every client loop ends;
* no command runs after its ``flom`` returned (it would run without its lock's monitor).

A command whose gateway was killed is ended by its lock-loss monitor (SIGTERM, exit 99):
expected; its interval ends at its SIGTERM (or when ``flom`` returned, if the SIGTERM was
not logged: later than the truth, never earlier).

Gateway pauses are kept **shorter than the time a gateway may go without a confirmed
lease renewal** (TTL - lock-loss grace - 2 s) minus 2 s, so a paused gateway never loses
its lease and every overlap is a violation.  A gateway paused past its TTL lets a second
holder in by design (the fencing case, docs/ha.md): that case is not injected here.

Used by ``tests/test_etcd_checker.py`` (short) and ``bench/bench_etcd_checker.py`` (long).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from conftest import daemon_pid
from etcd_cluster import EtcdCluster, EtcdClusterError
from pyflom.core.hierarchical import path_of, related
from pyflom.etcd.config import holder_drop_deadline_s
from pyflom.lockmodes import COMPATIBLE

FLOM = str(Path(sys.executable).with_name("flom"))
NUMERIC = "r[3]"
NUMERIC_UNITS = 3
SEQUENCE = "_s_seq[2]"
SEQUENCE_SLOTS = 2
SIMPLE = "S"
HIERARCHICAL = ("/a", "/a/b", "/a/c")
# (resource, weight): every command picks one
RESOURCES = ((SIMPLE, 3), (NUMERIC, 2), ("/a", 1), ("/a/b", 2), ("/a/c", 1), (SEQUENCE, 2))
MODES = ("NL", "CR", "CW", "PR", "PW", "EX")

# The command each client runs under the lock: standard library only, started with -I -S.
HOLD_SCRIPT = """\
import os, signal, sys, time
log, op, hold = sys.argv[1], sys.argv[2], float(sys.argv[3])
element = sys.argv[4] if len(sys.argv) > 4 else "-"
fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
def term(signum, frame):
    os.write(fd, ("T %s %.6f\\n" % (op, time.monotonic())).encode())
    os._exit(143)
signal.signal(signal.SIGTERM, term)
gen = os.environ.get("FLOM_LOCK_GENERATION", "-")
os.write(fd, ("E %s %.6f %s %s %d\\n" % (op, time.monotonic(), gen, element, os.getpid())).encode())
time.sleep(hold)
os.write(fd, ("X %s %.6f\\n" % (op, time.monotonic())).encode())
"""


@dataclass
class CheckerConfig:
    """One run: how long, how many gateways and client loops, which faults."""

    seconds: float = 20.0
    gateways: int = 3
    clients: int = 8  # client loops in all, spread over the gateways round robin
    lease_ttl_s: int = 7
    grace_ms: int = 1000
    seed: int = 0
    faults: bool = True
    fault_gap_s: tuple[float, float] = (0.5, 2.0)  # quiet time between two faults
    hold_ms: tuple[int, int] = (20, 250)
    grant_policy: str = "flom"
    # The negative control: each gateway gets a key prefix of its own (independent lock
    # spaces), so holders on different gateways overlap and the checker must say so.
    split_prefixes: bool = False
    resources: tuple[tuple[str, int], ...] = RESOURCES  # (name, weight)
    # "memory": one memory daemon (a state file keeps sequences across its restarts) is
    # killed, stopped with SIGTERM or `flom -X`, and paused, instead of etcd members and
    # gateways: the restart-safety audit of the memory backend (issue 16, item 5).
    backend: str = "etcd"

    def __post_init__(self) -> None:
        if self.backend == "memory" and self.gateways != 1:
            raise ValueError("memory daemons are independent lock spaces: use one (gateways=1)")

    @property
    def drop_after_s(self) -> float:
        """How long a gateway may go without a confirmed renewal before dropping holders."""
        return holder_drop_deadline_s(self.lease_ttl_s, self.grace_ms)

    @property
    def max_gateway_pause_s(self) -> float:
        """The longest gateway SIGSTOP injected: well inside the lease (see module doc)."""
        return max(0.2, self.drop_after_s - 2.0)

    @property
    def bound_s(self) -> float:
        """A command running longer than this is stuck."""
        return 3.0 * self.lease_ttl_s + 20.0


@dataclass
class Op:
    """One ``flom`` command and what its hold.py logged."""

    ident: str
    client: int
    gateway: int
    name: str
    mode: int
    quantity: int
    started: float  # flom launched (driver's monotonic clock)
    ended: float = 0.0  # flom returned
    rc: int | None = None
    stuck: bool = False
    enter: float | None = None
    leave: float | None = None  # X or T record, else ``ended``
    terminated: bool = False
    generation: int | None = None
    element: str | None = None
    stderr: str = ""


@dataclass
class Fault:
    kind: str
    target: str
    began: float
    ended: float = 0.0


@dataclass
class Report:
    """What a run did and what it found."""

    config: CheckerConfig
    ops: list[Op] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def granted(self) -> list[Op]:
        return [op for op in self.ops if op.enter is not None]

    def summary(self) -> str:
        codes = Counter(op.rc for op in self.ops)
        kinds = Counter(f.kind for f in self.faults)
        lost = sum(1 for op in self.ops if op.terminated)
        lines = [
            f"operations: {len(self.ops)} flom commands, {len(self.granted)} granted "
            f"({len(self.granted) / max(self.wall_s, 1e-9):.1f}/s), {lost} ended by the "
            f"lock-loss monitor; exit codes {dict(sorted(codes.items(), key=str))}",
            f"faults injected: {len(self.faults)} "
            + (f"({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))})" if kinds else ""),
            f"violations: {len(self.violations)}",
        ]
        failures = Counter((op.rc, why(op.stderr)) for op in self.ops if op.rc not in (0, None))
        if failures:
            lines.append("failed commands (count, exit status, first message):")
        lines += [f"  {n} x {code}: {line}" for (code, line), n in failures.most_common(8)]
        lines += [f"  - {v}" for v in self.violations[:20]]
        if len(self.violations) > 20:
            lines.append(f"  ... and {len(self.violations) - 20} more")
        return "\n".join(lines)


def why(stderr: str) -> str:
    """The gist of a failed command's messages: its first line, without paths and
    numbers, so that alike failures count together."""
    first = next((line for line in stderr.splitlines() if line.strip()), "(no message)")
    return re.sub(r"\d+", "N", re.sub(r"(?<!\w)/\S+", "PATH", first))[:140]


# -- conflicts ---------------------------------------------------------------------------


def modes_conflict(a: Op, b: Op) -> bool:
    """Two holders that may not hold at the same time, whatever else holds (numeric and
    sequence capacities are sums, checked apart)."""
    if a.name == b.name == SIMPLE:
        return not COMPATIBLE[a.mode][b.mode]
    if a.name.startswith("/") and b.name.startswith("/"):
        return related(path_of(a.name), path_of(b.name)) and not COMPATIBLE[a.mode][b.mode]
    return False


def grants_conflict(a: Op, b: Op) -> bool:
    """``a`` and ``b`` could not both be granted at once: the later must get a larger
    generation."""
    if a.name == b.name == NUMERIC:
        return a.quantity + b.quantity > NUMERIC_UNITS
    return modes_conflict(a, b)


def verify(ops: list[Op]) -> list[str]:
    """Every violation of the rules in the module docstring, in plain words."""
    violations: list[str] = []
    granted = sorted((op for op in ops if op.enter is not None), key=lambda op: op.enter or 0.0)
    # overlaps: a sweep over the logged intervals
    active: list[Op] = []
    for op in granted:
        assert op.enter is not None
        active = [o for o in active if (o.leave or 0.0) > op.enter]
        for other in active:
            if modes_conflict(other, op):
                violations.append(
                    f"overlap: {describe(op)} entered while {describe(other)} held "
                    f"(incompatible modes)"
                )
        units = op.quantity + sum(o.quantity for o in active if o.name == NUMERIC)
        if op.name == NUMERIC and units > NUMERIC_UNITS:
            violations.append(f"overlap: {describe(op)} brought {NUMERIC} to {units} units")
        slots = 1 + sum(1 for o in active if o.name == SEQUENCE)
        if op.name == SEQUENCE and slots > SEQUENCE_SLOTS:
            violations.append(f"overlap: {describe(op)} made {slots} holders of {SEQUENCE}")
        active.append(op)
    # generations: conflicting grants strictly increase in grant order
    for op in granted:
        if op.generation is None:
            violations.append(f"no generation: {describe(op)}")
    classes: dict[tuple[str, int, int], int] = {}  # (name, mode, qty) -> largest gen so far
    exemplar: dict[tuple[str, int, int], Op] = {}
    for op in granted:
        if op.generation is None:
            continue
        for key, gen in classes.items():
            if gen >= op.generation and grants_conflict(exemplar[key], op):
                violations.append(
                    f"generation order: {describe(op)} got {op.generation} after a "
                    f"conflicting grant got {gen}"
                )
                break
        key = (op.name, op.mode, op.quantity)
        if op.generation > classes.get(key, -1):
            classes[key] = op.generation
            exemplar[key] = op
    # sequence numbers: never twice
    seen: dict[str, Op] = {}
    for op in granted:
        if op.name != SEQUENCE:
            continue
        if op.element is None or not op.element.isdigit():
            violations.append(f"sequence: {describe(op)} got no number ({op.element!r})")
        elif op.element in seen:
            violations.append(
                f"sequence: number {op.element} handed out twice ({describe(seen[op.element])}"
                f" and {describe(op)})"
            )
        else:
            seen[op.element] = op
    for op in granted:
        if (op.enter or 0.0) > op.ended:
            violations.append(f"unmonitored: {describe(op)} started after its flom returned")
    for op in ops:
        if op.stuck:
            violations.append(f"stuck: {describe(op)} still ran after its bound; killed")
    return violations


def describe(op: Op) -> str:
    what = f"{op.name} q{op.quantity}" if op.name == NUMERIC else f"{op.name} {MODES[op.mode]}"
    return f"op {op.ident} ({what} via gateway {op.gateway}, gen {op.generation})"


# -- processes ---------------------------------------------------------------------------


def is_gateway(pid: int) -> bool:
    """``pid`` is a live pyflom daemon (guards against a reused PID)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            words = f.read().split(b"\0")
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X") and b"pyflom.daemon" in words


class Checker:
    """One run: :meth:`run` returns a :class:`Report`.  Every process it starts (etcd
    members, ``flom`` commands, the gateways they start) is ended by PID when it returns."""

    def __init__(self, config: CheckerConfig, etcd_binary: str, root: Path | None = None):
        self.config = config
        self.etcd_binary = etcd_binary
        self.own_root = root is None
        # a short path: UNIX socket names must stay under 108 bytes
        self.root = root or Path(tempfile.mkdtemp(prefix="pyflom-chk-", dir="/tmp"))
        self.cluster: EtcdCluster | None = None
        self.prefix = f"/chk-{uuid.uuid4().hex[:8]}/"
        self.sockets = [str(self.root / f"gw{i}.sock") for i in range(config.gateways)]
        self.hold = self.root / "hold.py"
        self.report = Report(config)
        self.lock = threading.Lock()
        self.stop_at = 0.0
        self.running: dict[int, subprocess.Popen[str]] = {}  # client -> its flom
        self.gateway_pids: set[int] = set()
        self.paused: set[int] = set()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FLOM_")}
        self.env.update(HOME=str(self.root), PYFLOM_NO_UVLOOP="1")

    # -- the run -------------------------------------------------------------------------

    def run(self) -> Report:
        began = time.monotonic()
        try:
            self.hold.write_text(HOLD_SCRIPT)
            if self.config.backend == "etcd":
                self.cluster = EtcdCluster(self.etcd_binary, self.root / "etcd")
                self.cluster.start()
            self._start_gateways()
            self.stop_at = time.monotonic() + self.config.seconds
            clients = [
                threading.Thread(target=self._client, args=(i,), daemon=True)
                for i in range(self.config.clients)
            ]
            for t in clients:
                t.start()
            if self.config.faults:
                self._inject_faults()
            for t in clients:
                t.join(timeout=max(0.0, self.stop_at - time.monotonic()) + self.config.bound_s + 10)
                if t.is_alive():
                    self.report.violations.append(f"stuck: client loop {t.name} never ended")
            self.report.wall_s = time.monotonic() - began
            self._read_logs()
            self.report.violations += verify(self.report.ops)
            return self.report
        finally:
            self._cleanup()

    def _start_gateways(self) -> None:
        """One ``flom -- true`` per gateway, together: the load starts with every
        gateway up (starting one takes seconds on a busy machine)."""
        starters = [
            subprocess.Popen(
                [*self.flom_args(g), "-r", "warm-up", "--", "true"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=self.env,
                cwd=self.root,
            )
            for g in range(self.config.gateways)
        ]
        for proc in starters:
            try:
                proc.wait(timeout=self.config.bound_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def flom_args(self, gateway: int) -> list[str]:
        """``flom`` and the options every command of the run passes (also shown to rerun
        a command by hand)."""
        if self.config.backend == "memory":
            return [
                FLOM,
                "-s", self.sockets[gateway],
                "-d", "20000",
                "--state-file", str(self.root / f"state{gateway}"),
                "--lock-loss-grace", str(self.config.grace_ms),
                "--grant-policy", self.config.grant_policy,
            ]  # fmt: skip
        assert self.cluster is not None
        return [
            FLOM,
            "-s", self.sockets[gateway],
            "-d", "20000",
            "--backend", "etcd://" + ",".join(self.cluster.endpoints),
            "--etcd-key-prefix",
            f"{self.prefix}{gateway}/" if self.config.split_prefixes else self.prefix,
            "--etcd-lease-ttl", str(self.config.lease_ttl_s),
            "--lock-loss-grace", str(self.config.grace_ms),
            "--grant-policy", self.config.grant_policy,
        ]  # fmt: skip

    def _client(self, client: int) -> None:
        rng = random.Random(f"{self.config.seed}-client-{client}")
        gateway = client % self.config.gateways
        names = [name for name, weight in self.config.resources for _ in range(weight)]
        log = self.root / f"client{client}.log"
        n = 0
        while time.monotonic() < self.stop_at:
            n += 1
            name = rng.choice(names)
            mode = rng.randrange(6) if name == SIMPLE or name.startswith("/") else 5
            quantity = rng.randint(1, NUMERIC_UNITS) if name == NUMERIC else 1
            hold = rng.uniform(*self.config.hold_ms) / 1000
            op = Op(f"{client}.{n}", client, gateway, name, mode, quantity, time.monotonic())
            args = [*self.flom_args(gateway), "-r", name, "-l", MODES[mode]]
            if name == NUMERIC:
                args += ["-q", str(quantity)]
            args += ["--", sys.executable, "-I", "-S", str(self.hold), str(log), op.ident]
            args.append(f"{hold:.3f}")
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                env=self.env,
                cwd=self.root,
            )
            with self.lock:
                self.running[client] = proc
            try:
                _, op.stderr = proc.communicate(timeout=self.config.bound_s)
            except subprocess.TimeoutExpired:
                op.stuck = True
                proc.kill()
                _, op.stderr = proc.communicate()
            op.ended = time.monotonic()
            op.rc = proc.returncode
            with self.lock:
                del self.running[client]
                self.report.ops.append(op)
            if op.rc not in (0, 99):  # no gateway for a moment (killed, starting): breathe
                time.sleep(0.05)

    def _inject_faults(self) -> None:
        rng = random.Random(f"{self.config.seed}-faults")
        kinds = ["member-kill", "member-stop", "member-restart", "gateway-kill", "gateway-stop"]
        if self.config.backend == "memory":
            kinds = ["gateway-kill", "gateway-stop", "daemon-term", "daemon-exit"]
        settle = min(self.config.lease_ttl_s + 2.0, self.config.seconds / 4)
        while time.monotonic() < self.stop_at - settle:
            time.sleep(rng.uniform(*self.config.fault_gap_s))
            kind = rng.choice(kinds)
            if kind.startswith("member"):
                self._member_fault(kind, rng)
            else:
                self._gateway_fault(kind, rng)

    def _member_fault(self, kind: str, rng: random.Random) -> None:
        assert self.cluster is not None
        try:
            self.cluster.wait_healthy(30)
            index = self.cluster.leader() if rng.random() < 0.5 else rng.randrange(3)
        except EtcdClusterError as exc:
            self.report.violations.append(f"etcd cluster did not recover: {exc}")
            return
        fault = Fault(kind, f"member {index}", time.monotonic())
        if kind == "member-kill":
            self.cluster.kill(index)
            time.sleep(rng.uniform(0.5, 3.0))
            self.cluster.restart(index)
        elif kind == "member-stop":
            self.cluster.stop(index)
            time.sleep(rng.uniform(0.3, 2.5))
            self.cluster.cont(index)
        else:
            self.cluster.restart(index)
        fault.ended = time.monotonic()
        self.report.faults.append(fault)

    def _gateway_fault(self, kind: str, rng: random.Random) -> None:
        gateway = rng.randrange(self.config.gateways)
        pid = daemon_pid(self.sockets[gateway])
        if pid is None or not is_gateway(pid):
            return  # not running right now (a client starts it on demand)
        self.gateway_pids.add(pid)
        fault = Fault(kind, f"gateway {gateway} (pid {pid})", time.monotonic())
        if kind == "gateway-kill":
            os.kill(pid, signal.SIGKILL)
        elif kind == "daemon-term":
            os.kill(pid, signal.SIGTERM)
        elif kind == "daemon-exit":
            subprocess.run(
                [FLOM, "-s", self.sockets[gateway], "-X"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                env=self.env,
                cwd=self.root,
                timeout=self.config.bound_s,
                check=False,
            )
        else:
            os.kill(pid, signal.SIGSTOP)
            self.paused.add(pid)
            time.sleep(rng.uniform(0.2, self.config.max_gateway_pause_s))
            os.kill(pid, signal.SIGCONT)
            self.paused.discard(pid)
        fault.ended = time.monotonic()
        self.report.faults.append(fault)

    # -- afterwards ----------------------------------------------------------------------

    def _read_logs(self) -> None:
        by_ident = {op.ident: op for op in self.report.ops}
        for client in range(self.config.clients):
            path = self.root / f"client{client}.log"
            if not path.exists():
                continue
            for line in path.read_text().splitlines():
                words = line.split()
                op = by_ident.get(words[1]) if len(words) > 2 else None
                if op is None:
                    continue
                if words[0] == "E":
                    op.enter = float(words[2])
                    op.generation = None if words[3] == "-" else int(words[3])
                    op.element = None if words[4] == "-" else words[4]
                else:
                    op.leave = float(words[2])
                    op.terminated = words[0] == "T"
        for op in self.report.ops:
            if op.enter is not None and op.leave is None:
                op.leave = op.ended  # SIGKILLed: no later than flom's return

    def _cleanup(self) -> None:
        with self.lock:
            running = list(self.running.values())
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        for pid in self.paused:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        for path in self.sockets:
            for _ in range(5):  # a gateway, then any that a last command started
                pid = daemon_pid(path)
                if pid is None or not is_gateway(pid):
                    break
                self.gateway_pids.add(pid)
                self._end(pid)
        for pid in self.gateway_pids:
            if is_gateway(pid):
                self._end(pid)
        if self.cluster is not None:
            self.cluster.close()
        if self.own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    @staticmethod
    def _end(pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while is_gateway(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if is_gateway(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def rerun_command(config: CheckerConfig) -> str:
    """The bench command that repeats ``config``."""
    return shlex.join(
        [
            ".venv/bin/python",
            "bench/bench_etcd_checker.py",
            "--seconds", f"{config.seconds:g}",
            "--gateways", str(config.gateways),
            "--clients", str(config.clients),
            "--seed", str(config.seed),
            "--lease-ttl", str(config.lease_ttl_s),
            "--grant-policy", config.grant_policy,
            "--backend", config.backend,
        ]
    )  # fmt: skip
