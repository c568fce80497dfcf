"""pyflom on etcd: daemons as stateless gateways (optional extra ``pyflom[etcd]``)."""
