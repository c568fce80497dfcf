"""Lock/unlock pairs per second: pyflom's daemon vs FLoM C 1.7.2's, same load generator.

The load generator is a small C program compiled at bench time (gcc, temp dir) against
FLoM C's own client library, libflom: every pair is ``flom_handle_lock`` +
``flom_handle_unlock``, i.e. FLoM's model (connect, lock, unlock, disconnect).  Being C,
the client costs the same for both daemons and little enough that the daemons dominate;
a Python generator would put the Python client's own cost in both figures and hide the
difference.  The same program also has a "kept" mode, raw socket with the same bytes
but one connection for every pair (pyflom's kept connection; FLoM's daemon does not
serve a second lock on a connection).

Clients are separate processes, each on its own resource (so the figure is the daemon's
throughput, not one lock's hand-over rate), started together and stopped by the clock.
Daemons: FLoM C, pyflom on asyncio's loop (``PYFLOM_NO_UVLOOP=1``) and pyflom on uvloop
(when installed), all in the same run, UNIX socket.  Targets (issue 12): pyflom >= 1.0x
FLoM C with 1 client and >= 1.3x with 8 (connect per pair); pyflom's kept connection
>= 2x FLoM's model.  A last row, "python floor", is ``bench/floor_server.py``: a server
that grants every request without any lock logic, on pyflom's loop and socket calls.
The load generator's own CPU is the same for all, so on a small machine the floor shows
the most any Python daemon can reach there.

FLoM C is looked up as the tests do (``tests/flomc.py``): ``$FLOM_C_PREFIX``, else the
``.cache/flomc`` that ``make flomc`` builds; without it (or without gcc) the benchmark
says so and exits 0.  FLoM's code is never part of this repository.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from _common import (
    FLOM,
    daemon_pid,
    flom_c_env,
    flom_c_prefix,
    lock_request,
    rerun_line,
    unlock_request,
)

GENERATOR = r"""
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "flom.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_until(double t) {
    double d;
    while ((d = t - now()) > 0) {
        struct timespec ts = {(time_t)d, (long)((d - (time_t)d) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

static int send_all(int fd, const char *buf, size_t len) {
    while (len) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0) { if (errno == EINTR) continue; return -1; }
        buf += n; len -= (size_t)n;
    }
    return 0;
}

/* read one answer (ends with "</msg>"); 0 when it grants (rc="0") */
static int read_answer(int fd) {
    char buf[4096];
    size_t used = 0;
    for (;;) {
        ssize_t n = recv(fd, buf + used, sizeof(buf) - 1 - used, 0);
        if (n <= 0) { if (n < 0 && errno == EINTR) continue; return -1; }
        used += (size_t)n;
        buf[used] = 0;
        if (strstr(buf, "</msg>")) return strstr(buf, "rc=\"0\"") ? 0 : -1;
        if (used >= sizeof(buf) - 1) return -1;
    }
}

/* up to LIMIT libflom pairs before END, in this process; -1 on failure */
static long lib_pairs(const char *sock, const char *resource, double end, long limit) {
    long count = 0;
    flom_handle_t *h = flom_handle_new();
    if (!h || flom_handle_set_socket_name(h, sock) != FLOM_RC_OK ||
        flom_handle_set_resource_name(h, resource) != FLOM_RC_OK) return -1;
    while (count < limit && now() < end) {
        int rc = flom_handle_lock(h);
        if (rc != FLOM_RC_OK) { fprintf(stderr, "lock: %d\n", rc); return -1; }
        rc = flom_handle_unlock(h);
        if (rc != FLOM_RC_OK) { fprintf(stderr, "unlock: %d\n", rc); return -1; }
        count++;
    }
    flom_handle_delete(h);
    return count;
}

/* libflom (1.7.2) keeps one descriptor open per lock: a process ends its pairs before it
 * runs out of descriptors. The pairs run in forked children, each doing at most its
 * descriptor limit (raised to the hard limit) less a margin, one after the other. */
static long lib_mode(const char *sock, const char *resource, double start, double end) {
    struct rlimit rl;
    long count = 0, per_child = 1000000;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur != RLIM_INFINITY && (long)rl.rlim_cur - 64 < per_child)
            per_child = (long)rl.rlim_cur - 64;
    }
    if (per_child < 1) return -1;
    sleep_until(start);
    while (now() < end) {
        long done = -1;
        int fds[2], status;
        if (pipe(fds) < 0) return -1;
        pid_t pid = fork();
        if (pid < 0) return -1;
        if (pid == 0) {
            close(fds[0]);
            done = lib_pairs(sock, resource, end, per_child);
            _exit(write(fds[1], &done, sizeof(done)) == sizeof(done) && done >= 0 ? 0 : 3);
        }
        close(fds[1]);
        if (read(fds[0], &done, sizeof(done)) != sizeof(done)) done = -1;
        close(fds[0]);
        if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
            done < 0) return -1;
        count += done;
    }
    return count;
}

/* gen lib|kept SOCKET RESOURCE START END [LOCKBYTES UNLOCKBYTES]: pairs done in [START, END) */
int main(int argc, char **argv) {
    const char *mode = argv[1], *sock = argv[2], *resource = argv[3];
    double start = atof(argv[4]), end = atof(argv[5]);
    long count = 0;
    if (strcmp(mode, "lib") == 0) {
        count = lib_mode(sock, resource, start, end);
        if (count < 0) return 3;
    } else {
        const char *lock = argv[6], *unlock = argv[7];
        size_t lock_len = strlen(lock), unlock_len = strlen(unlock);
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        strncpy(addr.sun_path, sock, sizeof(addr.sun_path) - 1);
        if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) return 2;
        sleep_until(start);
        while (now() < end) {
            if (send_all(fd, lock, lock_len) || read_answer(fd) ||
                send_all(fd, unlock, unlock_len)) { fprintf(stderr, "kept: failed\n"); return 3; }
            count++;
        }
        close(fd);
    }
    printf("%ld\n", count);
    return 0;
}
"""


def build_generator(prefix: Path, workdir: str) -> str:
    """Compile the load generator; return its path."""
    source = Path(workdir, "gen.c")
    source.write_text(GENERATOR)
    binary = str(Path(workdir, "gen"))
    cmd = ["gcc", "-O2", "-o", binary, str(source), f"-I{prefix}/include"]
    cmd += [f"-L{prefix}/lib", f"-Wl,-rpath,{prefix}/lib", "-lflom"]
    # libflom's own dependencies (the .so does not record glib's): glib, gthread, openssl
    pkg = subprocess.run(
        ["pkg-config", "--libs", "glib-2.0", "gthread-2.0", "openssl"],
        capture_output=True,
        text=True,
    )
    cmd += pkg.stdout.split() if pkg.returncode == 0 else ["-lglib-2.0", "-lssl", "-lcrypto"]
    subprocess.run(cmd, check=True)
    return binary


@contextlib.contextmanager
def floor_server(_argv: list[str], env: dict[str, str]) -> Iterator[str]:
    """bench/floor_server.py on a fresh socket; yield its path."""
    root = tempfile.mkdtemp(prefix="pyflom-floor-", dir="/tmp")
    path = os.path.join(root, "sock")
    script = str(Path(__file__).with_name("floor_server.py"))
    proc = subprocess.Popen([sys.executable, script, path], env=env)
    try:
        deadline = time.monotonic() + 10
        while daemon_pid(path) is None:
            assert time.monotonic() < deadline and proc.poll() is None, "floor did not start"
            time.sleep(0.02)
        yield path
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def daemon(argv: list[str], env: dict[str, str]) -> Iterator[str]:
    """A daemon started by ``argv + [-s path, -d -1, --, true]``; yield its socket path."""
    root = tempfile.mkdtemp(prefix="pyflom-vsc-", dir="/tmp")
    path = os.path.join(root, "sock")
    env = dict(env, HOME=root)
    subprocess.run([*argv, "-s", path, "-d", "-1", "--", "true"], check=True, env=env)
    deadline = time.monotonic() + 10
    pid = daemon_pid(path)
    while pid is None and time.monotonic() < deadline:
        time.sleep(0.02)
        pid = daemon_pid(path)
    assert pid is not None, f"daemon {argv[0]} did not start"
    try:
        yield path
    finally:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.01)
        shutil.rmtree(root, ignore_errors=True)


def run_clients(gen: str, mode: str, path: str, clients: int, seconds: float) -> float:
    """Pairs per second summed over ``clients`` generator processes."""
    start = time.time() + 0.3 + 0.02 * clients
    end = start + seconds
    procs = []
    for i in range(clients):
        name = f"BenchRes{i}"
        extra = []
        if mode == "kept":
            extra = [lock_request(name).decode(), unlock_request(name).decode()]
        argv = [gen, mode, path, name, repr(start), repr(end), *extra]
        procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, text=True))
    total = 0
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + 60)
        if proc.returncode != 0:
            raise RuntimeError(f"generator failed ({proc.returncode})")
        total += int(out)
    return total / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="best of, per figure")
    args = parser.parse_args()
    prefix = flom_c_prefix()
    if prefix is None or shutil.which("gcc") is None:
        print(
            "FLoM C (`make flomc`, or set FLOM_C_PREFIX) or gcc not found: bench_vs_flomc skipped"
        )
        return
    try:
        import uvloop  # noqa: F401

        loops = ["asyncio", "uvloop"]
    except ImportError:
        loops = ["asyncio"]
    base_env = {k: v for k, v in os.environ.items() if k != "PYFLOM_NO_UVLOOP"}
    flomc_env = flom_c_env(prefix, base_env)
    daemons: dict[str, tuple[list[str], dict[str, str]]] = {
        "FLoM C": ([str(prefix / "bin/flom")], flomc_env),
        "pyflom asyncio": ([FLOM], dict(base_env, PYFLOM_NO_UVLOOP="1")),
    }
    if "uvloop" in loops:
        daemons["pyflom uvloop"] = ([FLOM], base_env)
    daemons["python floor"] = ([], base_env)  # bench/floor_server.py: no locks at all
    cases = [("lib", 1), ("lib", 8), ("kept", 1), ("kept", 8)]
    results: dict[tuple[str, str, int], float] = {}
    with tempfile.TemporaryDirectory(prefix="pyflom-gen-") as workdir:
        gen = build_generator(prefix, workdir)
        for _ in range(args.rounds):  # interleaved rounds: noise hits every daemon alike
            for label, (argv, env) in daemons.items():
                start = floor_server if label == "python floor" else daemon
                with start(argv, env) as path:
                    for mode, clients in cases:
                        if mode == "kept" and label == "FLoM C":
                            continue
                        rate = run_clients(gen, mode, path, clients, args.seconds)
                        key = (label, mode, clients)
                        results[key] = max(results.get(key, 0.0), rate)
    print(f"pairs/s, best of {args.rounds} x {args.seconds:g} s, UNIX socket, a resource a client")
    print(f"{'daemon':16s} {'model':22s} {'clients':>7s} {'pairs/s':>9s} {'vs FLoM C':>10s}")
    for (label, mode, clients), rate in results.items():
        model = "connect per pair" if mode == "lib" else "kept connection"
        ref = results[("FLoM C", "lib", clients)]
        print(f"{label:16s} {model:22s} {clients:7d} {rate:9.0f} {rate / ref:9.2f}x")
    print("targets: connect per pair >= 1.0x (1 client), >= 1.3x (8); kept >= 2x FLoM's model")
    print("python floor: bench/floor_server.py grants every request and keeps no state, on")
    print("pyflom's loop and socket calls: no Python daemon here can pass its figures")
    print(rerun_line("bench_vs_flomc.py", f"--seconds {args.seconds:g} --rounds {args.rounds}"))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
