"""A thread that watches the connection of one held lock and says once when it ends
(``on_lost=`` of the blocking library; the ``flom`` command watches in its monitor)."""

from __future__ import annotations

import os
import select
import threading
import time
import weakref

from .transport import CONNECTION_ENDED, connection_ended

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_RECHECK_S = 0.2  # without POLLRDHUP: how soon to look again after data without an end


class LossWatch:
    """Waits, in a daemon thread, for socket ``fd`` to end; then calls
    ``handle._lost_seen()`` once.

    :meth:`stop` (before the socket is closed) ends the watch: after it returns, the
    thread never looks at ``fd`` again, so a descriptor reused meanwhile is safe.  The
    watch holds the handle weakly and stops when it is collected: a poll on a socket
    keeps it open, and a handle dropped while locked must release its lock."""

    def __init__(self, fd: int, handle: Any, name: str) -> None:
        self.fd = fd
        self.handle = weakref.ref(handle)
        self._guard = threading.Lock()
        self._stopped = False
        self._wake_read, self._wake_write = os.pipe()
        self._finalizer = weakref.finalize(handle, self.stop)
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self.fd, CONNECTION_ENDED or select.POLLIN)
        poller.register(self._wake_read, select.POLLIN)
        try:
            while True:
                poller.poll()
                with self._guard:
                    if self._stopped:
                        return
                    ended = connection_ended(self.fd)
                    if ended:
                        self._stopped = True
                if ended:
                    handle = self.handle()
                    if handle is not None:
                        handle._lost_seen()
                    return
                if not CONNECTION_ENDED:  # data, not an end: look again a little later
                    time.sleep(_RECHECK_S)
        finally:
            with self._guard:
                self._stopped = True
                os.close(self._wake_read)
                os.close(self._wake_write)
                self._wake_read = self._wake_write = -1

    def stop(self) -> None:
        """End the watch (the lock is released, or its loss is being handled)."""
        self._finalizer.detach()
        with self._guard:
            if self._stopped:
                return
            self._stopped = True
            os.write(self._wake_write, b"x")
