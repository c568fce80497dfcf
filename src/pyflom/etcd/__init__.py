"""The etcd backend: pyflom daemons as stateless gateways keeping every lock in an etcd
cluster (docs/ha.md).

:mod:`.config` (what the cluster is and how to reach it) imports only the standard library;
:mod:`.connect` needs the optional ``etcd3aio`` client (``pip install 'pyflom[etcd]'``).
"""
