"""TLS cost: lock+unlock pairs per second over TLS, and ``flom -- true`` over TLS.

* Library, FLoM's model (connect, TLS handshake, lock, unlock, disconnect per pair),
  with pyflom's session resumption (the default) and without it (every handshake a
  full one), and one kept TLS connection; the baseline is the same loop without TLS,
  measured in the same run.  Issue 5's target: >= 900 pairs/s connect-per-pair (FLoM C
  does about 90/s here: it reloads every file for every connection).
* The command: ``flom -- true`` over TLS vs without, alternating, in the same run.

Certificates are EC P-256, made for the run by tests/pki.py (``cryptography``).
"""

from __future__ import annotations

import argparse
import contextlib
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyflom
from _common import FLOM, pairs_per_second, private_daemon, rerun_line
from pyflom.tls import client as tls_client
from pyflom.uniqueid import peer_id

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def tls_options(root: Path) -> list[str]:
    from pki import Pki, standard

    certs = standard(Pki(root), peer_id() or "bench")
    return [
        f"--tls-certificate={certs.peer1.cert}",
        f"--tls-private-key={certs.peer1.key}",
        f"--tls-ca-certificate={certs.ca1.cert}",
    ]


def settings_for(path: str, options: list[str]) -> pyflom.Settings:
    values = {}
    for option in options:
        key, value = option[2:].split("=", 1)
        values[key.replace("-", "_")] = value
    return pyflom.Settings(socket_name=path, **values)


def library(path: str, options: list[str], seconds: float) -> dict[str, float]:
    """Pairs/s for each model against the daemon on ``path``."""
    settings = settings_for(path, options)
    figures = {"connect per pair": pairs_per_second(pyflom.Handle("B", settings=settings), seconds)}
    if options:
        figures["connect per pair, no resumption"] = full_handshakes(settings, seconds)
    kept = pyflom.Handle("B", settings=settings, keep_connection=True)
    figures["kept connection"] = pairs_per_second(kept, seconds)
    return figures


def full_handshakes(settings: pyflom.Settings, seconds: float) -> float:
    """Connect-per-pair pairs/s with every handshake a full one (sessions forgotten)."""
    handle = pyflom.Handle("B", settings=settings)
    count = 0
    start = time.perf_counter()
    while (now := time.perf_counter()) < start + seconds:
        tls_client._sessions.clear()
        handle.lock()
        handle.unlock()
        count += 1
    handle.close()
    return count / (now - start)


def openssl_floor(options: list[str], seconds: float) -> float:
    """Resumed TLS 1.3 handshakes per second with both ends in this process over memory
    BIOs: no sockets, no pyflom, no lock; what OpenSSL alone allows here."""
    from pyflom.tls.contexts import build_context
    from pyflom.tls.files import TlsFiles

    files = TlsFiles(*(option.split("=", 1)[1] for option in options), False)
    server, client = build_context(files, True), build_context(files, False)
    for context in (server, client):
        setattr(context, "_msg_callback", None)  # noqa: B010 - OpenSSL alone, no Python

    def handshake(session: ssl.SSLSession | None) -> ssl.SSLObject:
        c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
        ours = client.wrap_bio(c_in, c_out, session=session)
        theirs = server.wrap_bio(s_in, s_out, server_side=True)
        for _ in range(4):
            for end, out, peer_in in ((ours, c_out, s_in), (theirs, s_out, c_in)):
                with contextlib.suppress(ssl.SSLWantReadError):
                    end.do_handshake()
                peer_in.write(out.read())
        with contextlib.suppress(ssl.SSLWantReadError):
            ours.read(1)  # the session tickets
        return ours

    session = handshake(None).session
    count = 0
    start = time.perf_counter()
    while (now := time.perf_counter()) < start + seconds:
        assert handshake(session).session_reused
        count += 1
    return count / (now - start)


def command_ms(path: str, options: list[str], runs: int) -> float:
    """Median wall time of ``flom -- true`` in ms."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([FLOM, "-s", path, *options, "-d", "0", "--", "true"], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=20, help="flom -- true runs per side")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pyflom-bench-pki-") as pki_dir:
        options = tls_options(Path(pki_dir))
        with private_daemon() as plain_path, private_daemon(*options) as tls_path:
            plain = library(plain_path, [], args.seconds)
            secure = library(tls_path, options, args.seconds)
            floor = openssl_floor(options, args.seconds)
            plain_ms = tls_ms = 0.0
            for _ in range(2):  # alternate, to share the machine's noise
                plain_ms += command_ms(plain_path, [], args.runs // 2)
                tls_ms += command_ms(tls_path, options, args.runs // 2)
    print(f"{'library model':34} {'plain':>10} {'TLS':>10}  TLS/plain")
    for model, value in secure.items():
        base = plain.get(model, plain["connect per pair"])
        print(f"{model:34} {base:8.0f}/s {value:8.0f}/s  {value / base:.2f}x")
    print(f"{'OpenSSL alone: resumed handshakes':34} {'':>10} {floor:8.0f}/s  (upper bound)")
    print(
        f"flom -- true (median of {args.runs}): plain {plain_ms / 2:.1f} ms, "
        f"TLS {tls_ms / 2:.1f} ms, {tls_ms / plain_ms:.2f}x"
    )
    print(rerun_line("bench_tls.py", f"--seconds {args.seconds:g}", f"--runs {args.runs}"))


if __name__ == "__main__":
    main()
