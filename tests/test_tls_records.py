"""TLS record annotation (pyflom.tls.records) and live tracing (pyflom.tls.trace).

Every scenario runs a real handshake in-process: two ``ssl.SSLContext`` objects joined
by memory BIOs, the bytes pumped between them are captured (raw wire) while the
``_msg_callback`` trace records what OpenSSL decrypted.
"""

from __future__ import annotations

import io
import ssl
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pki import Pki
from pyflom.tls import trace as tls_trace
from pyflom.tls.dump import decode_dump
from pyflom.tls.records import NotTls, TlsRecord, describe_record, parse_records
from pyflom.tls.trace import TlsTrace, keylog, session_line

TLS12 = ssl.TLSVersion.TLSv1_2
TLS13 = ssl.TLSVersion.TLSv1_3
XML = b'<?xml version="1.0" encoding="UTF-8"?><msg><verb name="lock"/></msg>'

needs_msg_callback = pytest.mark.skipif(
    not tls_trace.available(), reason="ssl.SSLContext._msg_callback missing"
)


@dataclass(frozen=True)
class Certs:
    ca1: Path
    ca2: Path
    server: tuple[Path, Path]
    client: tuple[Path, Path]  # signed by ca1
    outsider: tuple[Path, Path]  # signed by ca2


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    pki = Pki(tmp_path_factory.mktemp("records-pki"))
    ca1, ca2 = pki.ca("ca1"), pki.ca("ca2")
    server = pki.node("server", "server-id", ca="ca1")
    client = pki.node("client", "client-id", ca="ca1")
    outsider = pki.node("outsider", "outsider-id", ca="ca2")
    return Certs(
        ca1.cert,
        ca2.cert,
        (server.cert, server.key),
        (client.cert, client.key),
        (outsider.cert, outsider.key),
    )


@dataclass
class Run:
    """One in-process TLS conversation."""

    wire: list[tuple[str, bytes]] = field(default_factory=list)  # ("C>"|"S>", chunk)
    client: ssl.SSLObject | None = None
    server: ssl.SSLObject | None = None
    client_error: ssl.SSLError | None = None
    server_error: ssl.SSLError | None = None
    client_trace: str = ""
    server_trace: str = ""

    def sent(self, direction: str) -> bytes:
        return b"".join(chunk for d, chunk in self.wire if d == direction)

    def dump(self) -> str:
        """The conversation as a direction-marked plain hex dump, in wire order."""
        return "\n".join(f"{d} {chunk.hex(' ')}" for d, chunk in self.wire)


def converse(
    certs: Certs,
    version: ssl.TLSVersion,
    *,
    double: bool,
    server_trusts: Path | None = None,
    client_cert: tuple[Path, Path] | None = None,
    trace: bool = True,
) -> Run:
    """Handshake, then one round trip (TLS 1.3 alerts arrive on the first I/O)."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(*certs.server)
    server_ctx.minimum_version = server_ctx.maximum_version = version
    if double:
        server_ctx.verify_mode = ssl.CERT_REQUIRED
        server_ctx.load_verify_locations(server_trusts or certs.ca1)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(certs.ca1)
    client_ctx.check_hostname = False
    if double:
        client_ctx.load_cert_chain(*(client_cert or certs.client))
    client_log, server_log = io.StringIO(), io.StringIO()
    client_tracer = TlsTrace(client_log, "client", "daemon")
    server_tracer = TlsTrace(server_log, "daemon", "client")
    if trace:
        assert client_tracer.install(client_ctx)
        assert server_tracer.install(server_ctx)
    run = Run()
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="localhost")
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    run.client, run.server = client, server

    def pump() -> bool:
        moved = False
        for label, out, into in (("C>", c_out, s_in), ("S>", s_out, c_in)):
            chunk = out.read()
            if chunk:
                run.wire.append((label, chunk))
                into.write(chunk)
                moved = True
        return moved

    def step(obj: ssl.SSLObject, action: str) -> ssl.SSLError | None:
        try:
            if action == "handshake":
                obj.do_handshake()
            elif action == "write":
                obj.write(b"ping")
            else:
                obj.read(100)
        except ssl.SSLWantReadError:
            return None
        except ssl.SSLError as exc:
            return exc
        return None

    c_done = s_done = False
    for _ in range(20):
        if run.client_error is None and not c_done:
            run.client_error = step(client, "handshake")
            c_done = run.client_error is None and client.version() is not None
        if run.server_error is None and not s_done:
            run.server_error = step(server, "handshake")
            s_done = run.server_error is None and server.version() is not None
        if not pump() and (c_done or run.client_error) and (s_done or run.server_error):
            break
    if c_done and (s_done or run.server_error):
        # one round trip: the client writes, the server reads and answers, the client reads
        run.client_error = run.client_error or step(client, "write")
        pump()
        if s_done:
            run.server_error = run.server_error or step(server, "read")
            run.server_error = run.server_error or step(server, "write")
        pump()
        run.client_error = run.client_error or step(client, "read")
        pump()
    run.client_trace, run.server_trace = client_log.getvalue(), server_log.getvalue()
    return run


def handshake_in_memory(
    client_ctx: ssl.SSLContext,
    server_ctx: ssl.SSLContext,
    rounds: int = 4,
    name_server: Callable[[ssl.SSLObject], None] | None = None,
) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    """Run a handshake between two contexts over memory BIOs, ``rounds`` exchanges."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    if name_server is not None:
        name_server(server)
    for _ in range(rounds):
        for obj in (client, server):
            try:
                obj.do_handshake()
            except ssl.SSLWantReadError:
                pass
            s_in.write(c_out.read())
            c_in.write(s_out.read())
    return client, server


def lines_with(lines: list[str] | str, *needles: str) -> list[str]:
    if isinstance(lines, str):
        lines = lines.splitlines()
    return [line for line in lines if all(n in line for n in needles)]


def xxd_format(data: bytes) -> str:
    """``xxd`` output (the real tool when installed)."""
    try:
        return subprocess.run(["xxd"], input=data, capture_output=True, check=True).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        out = []
        for off in range(0, len(data), 16):
            chunk = data[off : off + 16]
            groups = " ".join(chunk[i : i + 2].hex() for i in range(0, len(chunk), 2))
            text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
            out.append(f"{off:08x}: {groups:<39}  {text}")
        return "\n".join(out) + "\n"


def hexdump_c_format(data: bytes) -> str:
    """``hexdump -C`` output (the real tool when installed), ``*`` lines included."""
    try:
        result = subprocess.run(["hexdump", "-C"], input=data, capture_output=True, check=True)
        return result.stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        out, previous, starred = [], None, False
        for off in range(0, len(data), 16):
            chunk = data[off : off + 16]
            if chunk == previous and len(chunk) == 16:
                if not starred:
                    out.append("*")
                starred = True
                continue
            starred, previous = False, chunk
            left, right = chunk[:8].hex(" "), chunk[8:].hex(" ")
            text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
            out.append(f"{off:08x}  {left:<23}  {right:<23}  |{text}|")
        out.append(f"{len(data):08x}")
        return "\n".join(out) + "\n"


def wireshark_format(data: bytes) -> str:
    """Wireshark "Copy as Hex Dump": 4-digit offset, 16 bytes, ASCII column."""
    out = []
    for off in range(0, len(data), 16):
        chunk = data[off : off + 16]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        out.append(f"{off:04x}   {chunk.hex(' '):<47}   {text}")
    return "\n".join(out) + "\n"


def client_hello(certs: Certs) -> bytes:
    run = converse(certs, TLS13, double=False, trace=False)
    first_direction, first_chunk = run.wire[0]
    assert first_direction == "C>"
    return first_chunk


# -- parse_records / describe_record ------------------------------------------------------


def test_parse_records_splits_a_real_client_hello_and_keeps_the_tail(certs: Certs) -> None:
    hello = client_hello(certs)
    records, tail = parse_records(hello)
    assert tail == b""
    assert [(r.content_type, r.length) for r in records] == [(22, len(hello) - 5)]
    assert records[0].payload[0] == 1  # client_hello
    records, tail = parse_records(hello + hello[:7])
    assert len(records) == 1
    assert tail == hello[:7]
    records, tail = parse_records(hello[:-1])
    assert records == []
    assert tail == hello[:-1]


def test_describe_record_names_type_version_message_and_ends_with_hex(certs: Certs) -> None:
    hello = client_hello(certs)
    (record,), _ = parse_records(hello)
    line = describe_record(record, handshake_done=False, tls13=False)
    assert line.startswith(f"handshake(22) TLS 1.0 len={len(hello) - 5} client_hello(1) len=")
    assert line.endswith("| " + hello[:16].hex(" "))


def test_describe_record_alerts_and_tls13_encrypted_records() -> None:
    alert = TlsRecord(21, 0x0303, 2, bytes([2, 48]))
    assert describe_record(alert, handshake_done=False, tls13=False).startswith(
        "alert(21) TLS 1.2 len=2 fatal(2) unknown_ca(48)"
    )
    nineteen = TlsRecord(23, 0x0303, 19, bytes(19))
    text = describe_record(nineteen, handshake_done=False, tls13=True)
    assert (
        "probably an encrypted alert (19 bytes = 2 alert bytes + content type + 16-byte tag)"
        in (text)
    )
    ordinary = TlsRecord(23, 0x0303, 60, bytes(60))
    assert "encrypted handshake" in describe_record(ordinary, handshake_done=False, tls13=True)
    assert "encrypted handshake" not in describe_record(ordinary, handshake_done=True, tls13=True)
    ccs = TlsRecord(20, 0x0303, 1, b"\x01")
    assert "middlebox compatibility" in describe_record(ccs, handshake_done=False, tls13=True)
    assert "middlebox" not in describe_record(ccs, handshake_done=False, tls13=False)


# -- raw bytes: what is visible without keys ----------------------------------------------


def test_tls12_double_authentication_is_visible_in_clear(certs: Certs) -> None:
    run = converse(certs, TLS12, double=True)
    assert run.client_error is None and run.server_error is None
    lines = decode_dump(run.dump())
    assert lines_with(lines, "S>", "certificate_request(13)")
    client_certs = lines_with(lines, "C>", "certificate(11)", "subject=")
    assert client_certs and "CN=client-id" in client_certs[-1]
    assert lines_with(lines, "S>", "certificate(11)", "CN=server-id")
    assert lines_with(lines, "S>", "server_hello(2)", "selects TLS 1.2")
    assert lines_with(lines, "C>", "encrypted handshake message (finished")


def test_tls12_simple_authentication_has_no_certificate_request(certs: Certs) -> None:
    run = converse(certs, TLS12, double=False)
    assert run.client_error is None and run.server_error is None
    lines = decode_dump(run.dump())
    assert lines_with(lines, "S>", "certificate(11)", "CN=server-id")
    assert not lines_with(lines, "certificate_request(13)")
    assert not lines_with(lines, "C>", "certificate(11)")


def test_tls13_raw_bytes_hide_certificates(certs: Certs) -> None:
    run = converse(certs, TLS13, double=True)
    assert run.client_error is None and run.server_error is None
    lines = decode_dump(run.dump())
    assert lines_with(lines, "S>", "server_hello(2)", "selects TLS 1.3")
    assert lines_with(lines, "S>", "change_cipher_spec(20)", "middlebox compatibility")
    assert lines_with(lines, "S>", "application_data(23)", "encrypted handshake")
    assert not lines_with(lines, "certificate_request(13)")
    assert not lines_with(lines, "certificate(11)")


def test_tls13_rejected_client_certificate_is_a_19_byte_record(certs: Certs) -> None:
    run = converse(certs, TLS13, double=True, server_trusts=certs.ca2)
    assert run.server_error is not None
    assert run.client_error is not None and "UNKNOWN_CA" in str(run.client_error)
    lines = decode_dump(run.dump())
    flagged = lines_with(lines, "S>", "application_data(23) TLS 1.2 len=19 probably an encrypted")
    assert len(flagged) == 1
    assert flagged[0].endswith("| 17 03 03 00 13 " + run.sent("S>")[-19:][:11].hex(" "))
    assert not lines_with(lines, "alert(21)")  # nothing in clear


def test_tls12_rejected_client_certificate_is_a_clear_alert(certs: Certs) -> None:
    run = converse(certs, TLS12, double=True, server_trusts=certs.ca2)
    assert run.server_error is not None and run.client_error is not None
    lines = decode_dump(run.dump())
    alerts = lines_with(lines, "S>", "alert(21) TLS 1.2 len=2 fatal(2) unknown_ca(48)")
    assert len(alerts) == 1
    assert alerts[0].endswith("| 15 03 03 00 02 02 30")
    records, tail = parse_records(run.sent("S>"))
    assert tail == b"" and records[-1].payload == b"\x02\x30"


# -- live trace (_msg_callback) ------------------------------------------------------------


@needs_msg_callback
def test_tls13_trace_shows_double_authentication(certs: Certs) -> None:
    run = converse(certs, TLS13, double=True)
    assert run.client_error is None and run.server_error is None
    server, client = run.server_trace, run.client_trace
    assert lines_with(server, "daemon#1 -> client", "handshake certificate_request(13)")
    assert lines_with(client, "client#1 <- daemon", "handshake certificate_request(13)")
    sent = lines_with(client, "client#1 -> daemon", "handshake certificate(11)")
    assert len(sent) == 1 and "CN=client-id" in sent[0]
    received = lines_with(server, "<- client", "handshake certificate(11)")
    assert len(received) == 1 and "CN=client-id" in received[0]
    assert lines_with(client, "<- daemon", "server_hello(2)", "selects TLS 1.3")


@needs_msg_callback
def test_tls13_trace_simple_authentication_has_no_client_certificate(certs: Certs) -> None:
    run = converse(certs, TLS13, double=False)
    assert run.client_error is None and run.server_error is None
    assert not lines_with(run.server_trace, "certificate_request(13)")
    assert not lines_with(run.client_trace, "-> daemon", "certificate(11)")
    assert lines_with(run.client_trace, "<- daemon", "certificate(11)", "CN=server-id")


@needs_msg_callback
def test_trace_decodes_the_inner_content_type_as_a_content_type(certs: Certs) -> None:
    run = converse(certs, TLS13, double=True)
    inner = lines_with(run.client_trace, "inner content type")
    assert lines_with(inner, "<- daemon", "inner content type handshake(22)")
    assert lines_with(inner, "-> daemon", "inner content type application_data(23)")
    for quirk in ("certificate_status", "supplemental_data", "CERTIFICATE_STATUS"):
        assert quirk not in run.client_trace + run.server_trace


@needs_msg_callback
def test_trace_line_format_and_one_line_per_record_header(certs: Certs) -> None:
    run = converse(certs, TLS12, double=True)
    header_lines = lines_with(run.client_trace, " record ")
    records_sent, _ = parse_records(run.sent("C>"))
    records_received, _ = parse_records(run.sent("S>"))
    assert len(lines_with(header_lines, "-> daemon")) == len(records_sent)
    assert len(lines_with(header_lines, "<- daemon")) == len(records_received)
    first = run.client_trace.splitlines()[0].split(" ", 4)
    stamp, side, arrow, peer, text = first
    assert len(stamp.split("T")[1].split(".")[1]) >= 3  # milliseconds
    assert (side, arrow, peer) == ("client#1", "->", "daemon")
    assert text.startswith("record handshake(22) TLS 1.0 len=")


@needs_msg_callback
def test_tls13_rejection_in_the_trace(certs: Certs) -> None:
    run = converse(certs, TLS13, double=True, server_trusts=certs.ca2)
    server = run.server_trace
    assert lines_with(server, "-> client", "record application_data(23)", "len=19 probably an")
    assert lines_with(server, "-> client", "inner content type alert(21)")
    assert lines_with(server, "-> client", "alert fatal(2) unknown_ca(48)")
    assert lines_with(run.client_trace, "<- daemon", "alert fatal(2) unknown_ca(48)")


@needs_msg_callback
def test_trace_numbers_connections_sharing_one_trace(certs: Certs) -> None:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(*certs.server)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(certs.ca1)
    client_ctx.check_hostname = False
    log = io.StringIO()
    tracer = TlsTrace(log, "daemon", "client")
    assert tracer.install(server_ctx)
    servers = []
    for n in range(2):
        _, server = handshake_in_memory(
            client_ctx,
            server_ctx,
            rounds=1,
            name_server=lambda obj, n=n: tracer.set_peer(obj, f"127.0.0.1:{4000 + n}"),
        )
        servers.append(server)
    assert [tracer.connection_number(s) for s in servers] == [1, 2]
    assert lines_with(log.getvalue(), "daemon#1 <- 127.0.0.1:4000 record handshake(22)")
    assert lines_with(log.getvalue(), "daemon#2 <- 127.0.0.1:4001 record handshake(22)")


@needs_msg_callback
def test_install_keeps_and_uninstall_restores_the_previous_callback(certs: Certs) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    seen: list[int] = []

    def previous(conn: object, direction: str, *rest: object) -> None:
        seen.append(1)

    context._msg_callback = previous  # type: ignore[attr-defined]
    log = io.StringIO()
    tracer = TlsTrace(log, "client", "daemon")
    assert tracer.install(context)
    assert tracer.install(context)  # idempotent
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    obj = context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO())
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    assert seen == [1, 1]  # header + client_hello, once each
    assert len(log.getvalue().splitlines()) == 2
    tracer.uninstall(context)
    assert context._msg_callback is previous  # type: ignore[attr-defined]


@needs_msg_callback
def test_trace_says_when_the_peer_does_not_speak_tls(certs: Certs) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certs.server)
    log = io.StringIO()
    assert TlsTrace(log, "daemon", "client").install(context)
    incoming = ssl.MemoryBIO()
    server = context.wrap_bio(incoming, ssl.MemoryBIO(), server_side=True)
    incoming.write(XML)
    with pytest.raises(ssl.SSLError, match="WRONG_VERSION_NUMBER"):
        server.do_handshake()
    (line,) = log.getvalue().splitlines()
    assert line.endswith(
        "daemon#1 <- client record not TLS: plain text: '<?xml' (XML: FLoM's "
        "protocol without TLS? then the peer is not configured for TLS)"
    )


def test_install_reports_missing_msg_callback(monkeypatch: pytest.MonkeyPatch) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)

    class OldSSLContext:  # an ssl module whose SSLContext has no _msg_callback
        pass

    monkeypatch.setattr(ssl, "SSLContext", OldSSLContext)
    assert not tls_trace.available()
    assert TlsTrace(io.StringIO(), "client").install(context) is False


# -- session line, key log -----------------------------------------------------------------


def test_session_line_auth_both_and_server(certs: Certs) -> None:
    double = converse(certs, TLS13, double=True)
    assert double.server is not None and double.client is not None
    line = session_line(double.server, check="ok")
    assert line.startswith("established TLSv1.3 TLS_AES_256_GCM_SHA384 AUTH=BOTH peer subject=")
    assert "CN=client-id issuer=" in line and 'CN=pyflom test CA ca1"' in line
    assert line.endswith("peer-id check: ok")
    client_line = session_line(double.client, check="skipped", we_presented_cert=True)
    assert "AUTH=BOTH" in client_line and "CN=server-id" in client_line
    single = converse(certs, TLS13, double=False)
    assert single.server is not None
    assert "AUTH=SERVER peer subject=(none)" in session_line(single.server, check="n/a")


@needs_msg_callback
def test_log_session_uses_what_the_trace_saw_sent(certs: Certs) -> None:
    for double, expected in ((True, "AUTH=BOTH"), (False, "AUTH=SERVER")):
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(*certs.server)
        if double:
            server_ctx.verify_mode = ssl.CERT_REQUIRED
            server_ctx.load_verify_locations(certs.ca1)
        client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client_ctx.load_verify_locations(certs.ca1)
        client_ctx.check_hostname = False
        client_ctx.load_cert_chain(*certs.client)  # configured in both cases
        log = io.StringIO()
        tracer = TlsTrace(log, "client", "daemon")
        assert tracer.install(client_ctx)
        client, _ = handshake_in_memory(client_ctx, server_ctx)
        line = tracer.log_session(client, check="ok")
        assert expected in line
        assert log.getvalue().splitlines()[-1].endswith(line)


def test_keylog_writes_nss_key_log(certs: Certs, tmp_path: Path) -> None:
    path = tmp_path / "keys.log"
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(*certs.server)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(certs.ca1)
    client_ctx.check_hostname = False
    keylog(client_ctx, path)
    handshake_in_memory(client_ctx, server_ctx, rounds=3)
    text = path.read_text()
    assert "CLIENT_HANDSHAKE_TRAFFIC_SECRET " in text
    assert "SERVER_TRAFFIC_SECRET_0 " in text


# -- decode_dump input forms ---------------------------------------------------------------


def test_decode_dump_reads_xxd_output_of_a_client_hello(certs: Certs) -> None:
    hello = client_hello(certs)
    dump = xxd_format(hello)
    assert dump.startswith("00000000: 1603 01")
    lines = decode_dump(dump)
    assert lines[0] == describe_record(
        parse_records(hello)[0][0], handshake_done=False, tls13=False
    )
    assert "client_hello(1)" in lines[0]
    assert "offers TLS 1.3" in lines[1] and "server name 'localhost'" in lines[1]
    assert len(lines) == 2


def test_decode_dump_reads_hexdump_c_output_of_a_client_hello(certs: Certs) -> None:
    hello = client_hello(certs)
    dump = hexdump_c_format(hello)
    assert dump.startswith("00000000  16 03 01")
    lines = decode_dump(dump)
    assert lines == decode_dump(hello.hex())
    assert lines[0].startswith(f"handshake(22) TLS 1.0 len={len(hello) - 5} client_hello(1)")


def test_decode_dump_expands_hexdump_repeat_lines() -> None:
    record = bytes.fromhex("170303") + (80).to_bytes(2, "big") + bytes(80)
    dump = hexdump_c_format(record)
    assert "\n*\n" in dump  # repeated zero lines collapsed by hexdump
    assert decode_dump(dump) == decode_dump(record.hex())
    assert decode_dump(dump)[0].startswith("application_data(23) TLS 1.2 len=80 ")


def test_decode_dump_reads_wireshark_and_plain_forms(certs: Certs) -> None:
    hello = client_hello(certs)
    expected = decode_dump(hello.hex())
    assert decode_dump(wireshark_format(hello)) == expected
    spaced = "\n".join(hello[i : i + 20].hex(" ").upper() for i in range(0, len(hello), 20))
    assert decode_dump(spaced) == expected
    assert decode_dump(", ".join(f"0x{b:02x}" for b in hello)) == expected
    short = hello[:21]  # a last line whose ASCII column looks like hex ("...")
    assert decode_dump(wireshark_format(short)) == decode_dump(short.hex())


def test_decode_dump_directions_are_separate_streams(certs: Certs) -> None:
    run = converse(certs, TLS12, double=True)
    # split every chunk in two lines so that records straddle the lines of a direction
    text = []
    for direction, chunk in run.wire:
        half = len(chunk) // 2
        text += [f"{direction} {chunk[:half].hex()}", f"{direction} {chunk[half:].hex()}"]
    lines = decode_dump("\n".join(text))
    assert lines == decode_dump(run.dump())
    marked = decode_dump(run.dump().replace("C>", ">").replace("S>", "<"))
    assert [line[2:] for line in marked] == [line[3:] for line in lines]


def test_decode_dump_reassembles_a_handshake_message_split_over_records(certs: Certs) -> None:
    hello = client_hello(certs)
    message = hello[5:]
    first, second = message[:100], message[100:]
    split = (
        bytes.fromhex("160301")
        + len(first).to_bytes(2, "big")
        + first
        + bytes.fromhex("160301")
        + len(second).to_bytes(2, "big")
        + second
    )
    lines = decode_dump(split.hex())
    assert "client_hello(1) len=" in lines[0] and "(continues)" in lines[0]
    assert "continuation of client_hello(1)" in lines[1]
    assert "offers TLS 1.3" in lines[2]


def test_decode_dump_of_a_truncated_record_still_names_it(certs: Certs) -> None:
    hello = client_hello(certs)
    lines = decode_dump(hello[:48].hex())
    assert lines[0].startswith(f"handshake(22) TLS 1.0 len={len(hello) - 5} client_hello(1)")
    assert lines_with(lines, "the dump ends inside this record: 43 of")


# -- what is not TLS ----------------------------------------------------------------------


def test_parse_records_rejects_plain_text_clearly() -> None:
    with pytest.raises(NotTls) as info:
        parse_records(XML)
    assert "plain text: '<?xml ve...'" in str(info.value)
    assert info.value.offset == 0
    with pytest.raises(NotTls, match=r"plain text: 'GET / HT\.\.\.' \(HTTP\)"):
        parse_records(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(NotTls, match="exceeds the TLS maximum"):
        parse_records(bytes.fromhex("1603037fff"))


def test_parse_records_says_where_tls_stops(certs: Certs) -> None:
    hello = client_hello(certs)
    with pytest.raises(NotTls) as info:
        parse_records(hello + XML)
    assert info.value.offset == len(hello)
    assert len(info.value.records) == 1
    assert f"at byte {len(hello)} (after 1 record(s))" in str(info.value)


def test_decode_dump_rejects_non_tls_input_clearly() -> None:
    with pytest.raises(NotTls, match=r"text, not a hex dump.*plain text: '<\?xml ve\.\.\.'"):
        decode_dump(XML.decode())
    with pytest.raises(NotTls, match=r"plain text: '<\?xml ve\.\.\.' \(XML"):
        decode_dump(xxd_format(XML))


def test_decode_dump_rejects_bad_hex_with_a_message() -> None:
    with pytest.raises(ValueError, match=r"odd number of hex digits \(9\)"):
        decode_dump("16 03 01 00 0")
    with pytest.raises(ValueError, match=r"line 2: 'z' is not a hex digit"):
        decode_dump("16 03 01\n00 zz\n")
    with pytest.raises(ValueError, match="no hex bytes"):
        decode_dump("  \n\n")
    with pytest.raises(ValueError, match=r"line 2: offset 0x20 where 0x10 was expected"):
        decode_dump(
            "00000000  16 03 01 00 20 01 00 00  1c 03 03 00 00 00 00 00  |................|\n"
            "00000020  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  |................|\n"
        )
    with pytest.raises(ValueError, match="openssl s_client -msg"):
        decode_dump(">>> TLS 1.3, Handshake [length 0200], ClientHello\n    01 00 01 fc\n")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-v"]))
