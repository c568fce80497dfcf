"""Answers of ``flom`` and ``flom-tls`` that say what happened (issue 17, items 1, 11,
12, 13), with real processes: a pyflom daemon, a TLS daemon, a tiny peer that behaves as
FLoM C's daemon does, and FLoM C itself when it is built (``make flomc``, or
``FLOM_C_PREFIX``; see tests/flomc.py).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import FlomSandbox, daemon_pid, process_alive, wait_for
from flomc import LOCAL_FLOM_C, flom_c_prefix, require_flom_c
from pki import Standard, certs_fixture, pki_fixture, tls_options  # noqa: F401
from test_tls import start_daemon

FLOM_C_PREFIX = flom_c_prefix() or LOCAL_FLOM_C
FLOM_C = FLOM_C_PREFIX / "bin" / "flom"


@pytest.fixture
def flom_c_built() -> Path:
    """FLoM C's prefix: the test skips without it (fails under PYFLOM_REQUIRE_FLOMC=1)."""
    return require_flom_c()


needs_flom_c = pytest.mark.usefixtures("flom_c_built")

# What FLoM C's daemon answers a lock request with: no generation attribute.
FLOM_C_GRANT = (
    b'<?xml version="1.0" encoding="UTF-8" ?><msg level="3" verb="1" step="16">'
    b'<session peerid="3d1219c7c4c5404aaa1f6d2a48adfda4"/><answer rc="0"/></msg>'
)


class FakeFlomC:
    """A peer on a UNIX socket that behaves as FLoM C's daemon does (reference 4.2-4.6):
    a lock request is granted without a generation; any other message it does not know
    (pyflom's status query, verb 6) ends the connection without an answer."""

    def __init__(self, path: str | None) -> None:
        """On the UNIX socket ``path``, else on TCP (a daemon of another host)."""
        self.path = path
        family = socket.AF_INET if path is None else socket.AF_UNIX
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0) if path is None else path)
        self.listener.listen(8)
        self.requests: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while not data.endswith(b"</msg>"):
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                self.requests.append(data)
                if b'verb="1" step="8"' in data:
                    conn.sendall(FLOM_C_GRANT)
                    while conn.recv(4096):  # the unlock, then the client's end
                        pass

    def close(self) -> None:
        if self.path is not None:
            os.unlink(self.path)
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(10)


@pytest.fixture
def fake_flom_c(sandbox: FlomSandbox) -> Iterator[FakeFlomC]:
    peer = FakeFlomC(sandbox.socket)
    try:
        yield peer
    finally:
        peer.close()
        # The sandbox took this process for its daemon (the peer's pid): never end it.
        sandbox.daemon_pids.discard(os.getpid())


def flom_c(sandbox: FlomSandbox, *args: str) -> subprocess.CompletedProcess[str]:
    """Run FLoM C's ``flom -s SOCKET ARGS``."""
    return subprocess.run(
        [str(FLOM_C), "-s", sandbox.socket, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(sandbox.env, LD_LIBRARY_PATH=str(FLOM_C_PREFIX / "lib")),
        cwd=sandbox.root,
    )


@pytest.fixture
def flom_c_daemon(sandbox: FlomSandbox) -> Iterator[int]:
    """A FLoM C daemon on the sandbox's socket (ended by the test's end)."""
    assert flom_c(sandbox, "-d", "-1", "--", "true").returncode == 0
    pid = sandbox.remember_daemon()
    assert pid is not None
    yield pid


# -- item 1: -l for a resource kind without lock modes -------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [("app.lock", "set"), ("pool[3]", "numeric"), ("_s_seq[1]", "sequence"),
     ("_t_%S[1]", "timestamp")],
)  # fmt: skip
def test_a_mode_for_a_kind_without_modes_is_said_ignored(
    sandbox: FlomSandbox, name: str, kind: str
) -> None:
    result = sandbox.run("-r", name, "-l", "PR", "--", "true")
    assert result.returncode == 0, result.stderr  # FLoM's exit code: the lock is taken
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"flom: -l PR is ignored: '{name}' is a {kind} resource")
    assert "lock modes apply to simple and hierarchical resources only" in lines[0]


@pytest.mark.parametrize(("name", "args"), [("app.lock", ()), ("app", ("-l", "PR")),
                                            ("/app/x", ("-l", "PR"))])  # fmt: skip
def test_no_note_without_l_or_where_modes_apply(
    sandbox: FlomSandbox, name: str, args: tuple[str, ...]
) -> None:
    result = sandbox.run("-r", name, *args, "--", "true")
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_verbose_keeps_flom_s_warning_only(sandbox: FlomSandbox) -> None:
    result = sandbox.run("-V", "-r", "a.b", "-l", "PR", "--", "true")
    assert result.returncode == 0
    assert result.stderr.count("PR") == 1  # FLoM's WARNING line, not a second note
    assert "meaningless for set resource 'a.b'" in result.stderr


# -- item 11: flom -x with an idle resource kept by -i ---------------------------------------


def _x_keeps_idle_state(start: list[str], run: object, pid: int) -> float:
    """After ``-x``, an idle ``_s_x[3]`` kept by ``-i 8000`` still has its state 3 s
    later (the next value is 2, not 1), and the daemon exits once it has expired."""
    assert callable(run)
    quiesce = time.monotonic()
    assert run("-x").returncode == 0
    time.sleep(max(0.0, quiesce + 3 - time.monotonic()))  # past FLoM's 2 s default grace
    assert process_alive(pid), "the daemon left while a resource kept its idle state"
    again = run(*start[:-2], "--", "echo")
    assert again.returncode == 0 and again.stdout == "2\n", (again.stdout, again.stderr)
    reused = time.monotonic()
    assert wait_for(lambda: not process_alive(pid), timeout=30)
    return time.monotonic() - reused


IDLE_SEQUENCE = ["-i", "8000", "-r", "_s_x[3]", "--", "true"]


def test_quiesce_waits_out_an_idle_resource_as_flom_does(sandbox: FlomSandbox) -> None:
    assert sandbox.run(*IDLE_SEQUENCE).returncode == 0
    pid = sandbox.remember_daemon()
    assert pid is not None
    # gone about 8 s + 1 s after the last use (loosely: a busy machine is slower)
    assert 7 < _x_keeps_idle_state(IDLE_SEQUENCE, sandbox.run, pid) < 25


@needs_flom_c
def test_flom_c_quiesce_waits_out_an_idle_resource_too(sandbox: FlomSandbox) -> None:
    assert flom_c(sandbox, *IDLE_SEQUENCE).returncode == 0
    pid = daemon_pid(sandbox.socket)
    assert pid is not None
    sandbox.daemon_pids.add(pid)
    assert 7 < _x_keeps_idle_state(IDLE_SEQUENCE, lambda *a: flom_c(sandbox, *a), pid) < 25


# -- item 12a: --status against a daemon without status queries ----------------------------


def test_status_from_a_remote_peer_that_closes_on_unknown_messages(
    sandbox: FlomSandbox,
) -> None:
    peer = FakeFlomC(None)
    try:
        port = str(peer.listener.getsockname()[1])
        result = sandbox.run("-a", "127.0.0.1", "-p", port, "--status", socket_name=False)
    finally:
        peer.close()
    assert result.returncode == 99
    # Which daemon it is cannot be told from here: FLoM C's answer comes first.
    assert result.stderr.startswith(
        "flom: no status: the daemon ended the connection without a status: this daemon "
        "does not answer status queries (probably FLoM C"
    ), result.stderr
    assert peer.requests and b'verb="6"' in peer.requests[0]


def test_status_of_a_local_tls_daemon_without_tls_names_tls(
    sandbox: FlomSandbox, certs: Standard
) -> None:
    start_daemon(sandbox, *tls_options(certs.peer1, certs.ca1))
    result = sandbox.run("--status")  # pyflom's daemon: it is TLS, not FLoM C
    assert result.returncode == 99
    assert "FLoM C" not in result.stderr and "[TLS-PEER-NOT-TLS]" in result.stderr


@needs_flom_c
def test_status_is_not_asked_of_flom_c_which_would_stop(
    sandbox: FlomSandbox, flom_c_daemon: int
) -> None:
    holder = sandbox.start("-r", "held", "--", "cat", stdin=True)
    assert wait_for(lambda: flom_c(sandbox, "-r", "held", "-o", "0", "--", "true").returncode)
    result = sandbox.run("--status")
    assert result.returncode == 99
    assert "this daemon does not answer status queries" in result.stderr
    assert "probably FLoM C's" in result.stderr and "nothing was asked" in result.stderr
    assert "TLS" not in result.stderr, result.stderr
    # The daemon and its holder's lock are still there.
    assert process_alive(flom_c_daemon)
    assert flom_c(sandbox, "-r", "held", "-o", "0", "--", "true").returncode == 98
    holder.communicate(timeout=30)  # its end of input ends the command
    assert holder.returncode == 0


# A Python process with FLoM's C library loaded (as FLoM C's Python binding runs its
# daemon) serving a UNIX socket: it writes what it receives to the file argv[2].
LIBFLOM_PEER = r"""
import ctypes, socket, sys
ctypes.CDLL("libglib-2.0.so.0", mode=ctypes.RTLD_GLOBAL)  # libflom's own needs
ctypes.CDLL(sys.argv[3])
listener = socket.socket(socket.AF_UNIX)
listener.bind(sys.argv[1])
listener.listen(1)
print("ready", flush=True)
conn, _ = listener.accept()
conn.settimeout(5)
try:
    data = conn.recv(4096)
except OSError:
    data = b""
open(sys.argv[2], "wb").write(data)
"""


@needs_flom_c
def test_status_is_not_asked_of_a_python_process_running_libflom(sandbox: FlomSandbox) -> None:
    received = sandbox.path("received")
    peer = subprocess.Popen(
        [sys.executable, "-c", LIBFLOM_PEER, sandbox.socket, str(received),
         str(FLOM_C_PREFIX / "lib" / "libflom.so")],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(sandbox.env, LD_LIBRARY_PATH=str(FLOM_C_PREFIX / "lib")),
    )  # fmt: skip
    try:
        assert peer.stdout is not None and peer.stdout.readline() == "ready\n"
        result = sandbox.run("--status")
        assert peer.wait(timeout=30) == 0
    finally:
        if peer.poll() is None:
            peer.kill()
            peer.wait()
        sandbox.daemon_pids.discard(peer.pid)
    assert result.returncode == 99 and "nothing was asked" in result.stderr, result.stderr
    assert received.read_bytes() == b""


@needs_flom_c
def test_status_of_flom_c_over_tls_does_not_blame_the_certificate(
    sandbox: FlomSandbox, certs: Standard
) -> None:
    server = tls_options(certs.peer1, certs.ca1)
    assert flom_c(sandbox, "-d", "-1", *server, "--", "true").returncode == 0
    pid = sandbox.remember_daemon()
    assert pid is not None
    result = sandbox.run(*tls_options(certs.peer2, certs.ca1), "--status")
    assert result.returncode == 99
    assert "this daemon does not answer status queries" in result.stderr
    assert "certificate" not in result.stderr, result.stderr
    assert process_alive(pid)


# -- item 12b: a plain client against a TLS daemon --------------------------------------------


def test_a_plain_client_of_a_tls_daemon_is_told_what_to_give(
    sandbox: FlomSandbox, certs: Standard
) -> None:
    start_daemon(sandbox, *tls_options(certs.peer1, certs.ca1))
    for _ in range(5):  # the daemon closes or resets: both are explained
        result = sandbox.run("-d", "0", "--", "true")
        assert result.returncode == 99
        assert "Errno" not in result.stderr, result.stderr
        assert "the daemon probably uses TLS" in result.stderr
        for option in ("--tls-certificate", "--tls-private-key", "--tls-ca-certificate"):
            assert option in result.stderr
        assert "[TLS]" in result.stderr and "TlsCaCertificate" in result.stderr


def test_a_reset_before_any_answer_names_tls(sandbox: FlomSandbox) -> None:
    """A peer that resets the connection on the lock request (a TLS daemon does so when
    it closes with the request unread): the same explanation, not ``[Errno 104]``."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sandbox.socket)
    listener.listen(1)

    def reset_all() -> None:  # the client tries again (a daemon may be leaving)
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            while not conn.recv(4096, socket.MSG_PEEK).endswith(b"</msg>"):
                time.sleep(0.01)
            conn.close()  # the request unread: a reset

    thread = threading.Thread(target=reset_all, daemon=True)
    thread.start()
    try:
        result = sandbox.run("-d", "0", "--", "true")
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        thread.join(10)
        os.unlink(sandbox.socket)
        listener.close()
        sandbox.daemon_pids.discard(os.getpid())
    assert result.returncode == 99
    assert "the daemon reset the connection without answering" in result.stderr, result.stderr
    assert "--tls-certificate" in result.stderr and "Errno" not in result.stderr


# -- item 12c: no generation from FLoM C ------------------------------------------------------

SHOW_GENERATION = ["--", "sh", "-c", 'echo "gen=[$FLOM_LOCK_GENERATION]"']
NO_GENERATION = "the daemon gave no generation (FLoM C): FLOM_LOCK_GENERATION is empty"


def test_no_generation_is_said_under_verbose(sandbox: FlomSandbox, fake_flom_c: FakeFlomC) -> None:
    verbose = sandbox.run("-V", "-d", "0", "-r", "gen", *SHOW_GENERATION)
    assert verbose.returncode == 0, verbose.stderr
    assert NO_GENERATION in verbose.stdout.splitlines()
    assert "gen=[]" in verbose.stdout
    quiet = sandbox.run("-d", "0", "-r", "gen", *SHOW_GENERATION)
    assert quiet.stdout == "gen=[]\n" and NO_GENERATION not in quiet.stdout + quiet.stderr


def test_an_outer_generation_does_not_leak_into_an_inner_lock(
    sandbox: FlomSandbox, fake_flom_c: FakeFlomC
) -> None:
    env = dict(sandbox.env, FLOM_LOCK_GENERATION="77")
    result = subprocess.run(
        sandbox.args("-d", "0", "-r", "gen", *SHOW_GENERATION),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=sandbox.root,
    )
    assert result.stdout == "gen=[]\n", (result.stdout, result.stderr)


def test_a_pyflom_daemon_gives_a_generation_and_no_note(sandbox: FlomSandbox) -> None:
    result = sandbox.run("-V", "-r", "gen", *SHOW_GENERATION)
    assert result.returncode == 0
    assert NO_GENERATION not in result.stdout
    assert "gen=[]" not in result.stdout and "gen=[" in result.stdout


@needs_flom_c
def test_no_generation_from_flom_c_is_said_under_verbose(
    sandbox: FlomSandbox, flom_c_daemon: int
) -> None:
    result = sandbox.run("-V", "-r", "gen", *SHOW_GENERATION)
    assert result.returncode == 0, result.stderr
    assert NO_GENERATION in result.stdout.splitlines() and "gen=[]" in result.stdout


# -- item 13: flom-tls --version ---------------------------------------------------------------


def test_flom_tls_version() -> None:
    from pyflom import __version__

    tool = str(Path(sys.executable).with_name("flom-tls"))
    result = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"flom-tls (pyflom) {__version__}\n"


# -- item 16: the value rules have one home, without an import cycle --------------------------

VALUE_MODULES = ("pyflom.cmdline", "pyflom.configfile", "pyflom.options", "pyflom.valuerules")


def _package_imports() -> dict[str, set[str]]:
    """Module -> the pyflom modules it imports (at the top or inside a function)."""
    import ast

    import pyflom

    root = Path(pyflom.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        module = ".".join(("pyflom", *parts)).removesuffix(".__init__")
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        names = graph.setdefault(module, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.rsplit(".", max(node.level - 1, 0))[0] if node.level else ""
                source = ".".join(filter(None, (base, node.module)))
                if node.module:  # "from . import rc" needs pyflom.rc, not the package
                    names.add(source)
                names.update(f"{source}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
    return {module: names & graph.keys() - {module} for module, names in graph.items()}


def test_no_import_cycle_among_the_option_modules() -> None:
    graph = _package_imports()

    def reach(start: str) -> set[str]:
        seen: set[str] = set()
        todo = [start]
        while todo:
            for module in graph[todo.pop()] - seen:
                seen.add(module)
                todo.append(module)
        return seen

    cycles = [
        (a, b)
        for a in VALUE_MODULES
        for b in VALUE_MODULES
        if a < b and b in reach(a) and a in reach(b)
    ]
    assert cycles == [], f"import cycles: {cycles}"
    assert "pyflom.valuerules" in graph["pyflom.cmdline"] & graph["pyflom.configfile"]
