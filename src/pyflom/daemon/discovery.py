"""Answering multicast discover queries: "where does the daemon listen?" (FLoM verb 4).

Datagrams are hostile input like any other: anything larger than FLoM's 512-byte
buffer, malformed, or not a discover request is dropped (and logged), never answered.
"""

from __future__ import annotations

import asyncio
import socket

from .. import codec
from .log import DaemonLog

DATAGRAM_MAX = 512  # FLoM daemons' receive buffer
READ_BURST = 64  # datagrams handled per wake-up, so a flood cannot starve the lock service


class DiscoveryResponder:
    """Reads discover requests on a joined UDP socket and answers each sender by unicast."""

    def __init__(self, sock: socket.socket, address: str, port: int, log: DaemonLog) -> None:
        self.sock = sock
        self.log = log
        self.reply = codec.encode(codec.DiscoverAnswer(address=address, port=port))
        self.sock.setblocking(False)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Begin answering on ``loop``."""
        loop.add_reader(self.sock.fileno(), self.on_readable)

    def stop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Stop answering."""
        loop.remove_reader(self.sock.fileno())

    def on_readable(self) -> None:
        """Answer every pending well-formed discover request (a bounded burst)."""
        for _ in range(READ_BURST):
            try:
                data, sender = self.sock.recvfrom(DATAGRAM_MAX + 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.log.warning(f"FLM005W discovery socket error: {exc}")
                return
            if self._is_discover_request(data):
                self.log.info(f"FLM005I discovery query received from {sender[0]}/{sender[1]}")
                try:
                    self.sock.sendto(self.reply, sender)
                except OSError as exc:
                    self.log.warning(f"FLM005W cannot answer {sender[0]}/{sender[1]}: {exc}")
            else:
                self.log.info(
                    f"FLM006W ignoring a {len(data)}-byte datagram from {sender[0]}/{sender[1]}:"
                    " not a discover request"
                )

    @staticmethod
    def _is_discover_request(data: bytes) -> bool:
        if len(data) > DATAGRAM_MAX:
            return False
        try:
            return isinstance(codec.decode(data), codec.DiscoverRequest)
        except codec.CodecError:
            return False
