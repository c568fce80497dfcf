"""TLS for pyflom (FLoM's security levels 2 and 3).

Loaded only when TLS is configured, so a plain ``flom`` run never imports ``ssl``.

* :mod:`.files` — which files a side uses, and whether the peer id is checked;
* :mod:`.contexts` — ``ssl`` contexts built from those files, cached and reloaded when
  the files change; loading failures as :class:`~pyflom.tls.contexts.TlsSetupError`;
* :mod:`.identity` — the peer certificate's fields and CN (FLoM's peer-id check);
* :mod:`.client` — the client's handshake and its channel;
* :mod:`.serverside` — the daemon's non-blocking TLS layer (memory BIOs).
"""
