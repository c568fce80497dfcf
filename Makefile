# pyflom: two entry points from a fresh clone.
#   make demo  - create .venv, install pyflom, run a real command under a lock
#   make test  - create .venv with the dev extras, lint, type-check, run the whole suite
#   make etcd  - unpack an etcd server for the etcd backend's tests into .cache/etcd
#   make demo-ha - a local 3-member etcd, two gateways: locks that survive lost machines
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEMO_SOCKET := /tmp/pyflom-demo-$(shell id -u)

.PHONY: demo demo-ha test lint bench clean etcd

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q .
	touch $@

$(VENV)/.dev-installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	@echo '$$ flom -s $(DEMO_SOCKET) -d 2000 -r demo -l EX -- sh -c "echo holding the lock on demo; sleep 1"'
	@$(BIN)/flom -s $(DEMO_SOCKET) -d 2000 -r demo -l EX -- sh -c 'echo "  holding the lock on demo (pid $$$$)"; sleep 1'
	@echo '$$ two writers racing for the same lock (they run one after the other):'
	@( $(BIN)/flom -s $(DEMO_SOCKET) -d 2000 -r demo -- sh -c 'echo "  writer A starts"; sleep 1; echo "  writer A ends"' & \
	   $(BIN)/flom -s $(DEMO_SOCKET) -d 2000 -r demo -- sh -c 'echo "  writer B starts"; sleep 1; echo "  writer B ends"' & \
	   wait )
	@echo '$$ flom -s $(DEMO_SOCKET) -d 2000 -- sh -c "exit 7"; echo exit status $$?'
	@$(BIN)/flom -s $(DEMO_SOCKET) -d 2000 -- sh -c 'exit 7'; echo "  exit status $$?"

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -n 4 -q tests

# Debian's etcd-server package, unpacked (not installed: no service is started). Tests
# find it there; without it they skip, unless PYFLOM_REQUIRE_ETCD=1.
ETCD_DIR := .cache/etcd
ETCD_BIN := $(ETCD_DIR)/usr/bin/etcd

etcd: $(ETCD_BIN)

$(ETCD_BIN):
	rm -rf $(ETCD_DIR)/deb && mkdir -p $(ETCD_DIR)/deb
	cd $(ETCD_DIR)/deb && { apt-get download etcd-server 2>/dev/null || \
	    { apt-get update -qq && apt-get download etcd-server; }; }
	dpkg-deb -x $(ETCD_DIR)/deb/etcd-server_*.deb $(ETCD_DIR)
	rm -rf $(ETCD_DIR)/deb
	$@ --version | head -1
	touch $@

# The etcd extra (etcd3aio) on top of the plain install; a dev venv already has it.
$(VENV)/.etcd-installed: $(VENV)/.installed
	$(BIN)/python -c 'import etcd3aio' 2>/dev/null || $(BIN)/python -m pip install -q '.[etcd]'
	touch $@

demo-ha: $(VENV)/.etcd-installed $(ETCD_BIN)
	@$(BIN)/python contrib/demo_ha.py

bench: $(VENV)/.installed
	$(BIN)/python -m compileall -q src >/dev/null
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
