"""The floor of any Python daemon here: a server that grants every lock request at once
and keeps no state, on the same loop (uvloop) and socket calls as pyflom's daemon.

Run by :mod:`bench_vs_flomc` as a reference: pyflom's figures can approach it, never
pass it.  ``python bench/floor_server.py SOCKET`` serves until killed.
"""

from __future__ import annotations

import asyncio
import socket
import sys

from pyflom import codec

GRANT = codec.encode(codec.LockAnswer(codec.STEP_FIRST_ANSWER, 0, None, "0" * 32, 1))
LOCK = b'verb="1"'


async def serve(path: str) -> None:
    loop = asyncio.get_running_loop()
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(128)
    listener.setblocking(False)

    def on_readable(conn: socket.socket) -> None:
        try:
            data = conn.recv(65536)
        except BlockingIOError:
            return
        if not data:
            loop.remove_reader(conn.fileno())
            conn.close()
            return
        for _ in range(data.count(LOCK)):
            conn.send(GRANT)

    def on_accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except BlockingIOError:
                return
            conn.setblocking(False)
            loop.add_reader(conn.fileno(), on_readable, conn)
            on_readable(conn)

    loop.add_reader(listener.fileno(), on_accept)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(sys.argv[1]))
