# pyflom: two entry points from a fresh clone.
#   make demo  - create .venv, install pyflom, run a real command under a lock
#   make test  - create .venv with the dev extras, lint, type-check, run the whole suite
#   make etcd  - unpack an etcd server for the etcd backend's tests into .cache/etcd
#   make demo-ha - a local 3-member etcd, two gateways: locks that survive lost machines
#   make flomc - build FLoM C 1.7.2 (the reference peer) into .cache/flomc for the interop tests
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEMO_SOCKET := /tmp/pyflom-demo-$(shell id -u)

.PHONY: demo demo-ha test lint bench clean etcd flomc print-flomc-tarball

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

# FLoM C 1.7.2, built from its unmodified source tarball (kept outside the repository,
# default ../shared/peers/ next to the main checkout; FLOM_C_TARBALL=path overrides) into
# .cache/flomc. Interop tests and benches find it there; without it they skip, unless
# PYFLOM_REQUIRE_FLOMC=1. Rebuilt only when the tarball's sha256 differs from the one
# recorded in .cache/flomc/SOURCE_SHA256. Missing build packages are installed with apt.
FLOMC_DIR := .cache/flomc
FLOMC_BUILD := .cache/flomc-build
FLOMC_DEPS := libglib2.0-dev libdbus-1-dev libssl-dev libfuse3-dev fuse3 dbus pkg-config \
	automake autoconf libtool m4 make gcc
FLOMC_MAIN_CHECKOUT := $(dir $(shell git rev-parse --path-format=absolute --git-common-dir 2>/dev/null))
FLOM_C_TARBALL ?= $(abspath $(firstword $(wildcard ../shared/peers/flom-1.7.2.tar.gz \
	$(FLOMC_MAIN_CHECKOUT)../shared/peers/flom-1.7.2.tar.gz) ../shared/peers/flom-1.7.2.tar.gz))

print-flomc-tarball:
	@echo '$(FLOM_C_TARBALL)'

flomc:
	@test -f '$(FLOM_C_TARBALL)' || { echo "make flomc: no FLoM C tarball at $(FLOM_C_TARBALL)" \
	    "(set FLOM_C_TARBALL=/path/to/flom-1.7.2.tar.gz)" >&2; exit 1; }
	@sum=$$(sha256sum '$(FLOM_C_TARBALL)' | cut -d' ' -f1); \
	if [ -x $(FLOMC_DIR)/bin/flom ] && [ "$$(cat $(FLOMC_DIR)/SOURCE_SHA256 2>/dev/null)" = "$$sum" ]; then \
	    echo "FLoM C already built in $(FLOMC_DIR) from $(FLOM_C_TARBALL) (sha256 $$sum)"; exit 0; fi; \
	missing=$$(command -v dpkg-query >/dev/null && for p in $(FLOMC_DEPS); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "installing FLoM C's build packages:" $$missing; \
	    { apt-get -o DPkg::Lock::Timeout=300 update -qq && \
	      DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
	        $$missing >/dev/null; } || { echo "make flomc: could not install" $$missing \
	        "(as root: apt-get install" $$missing")" >&2; exit 1; }; fi; \
	set -e; rm -rf $(FLOMC_DIR) $(FLOMC_BUILD); mkdir -p $(FLOMC_BUILD); \
	tar xzf '$(FLOM_C_TARBALL)' -C $(FLOMC_BUILD) --strip-components=1; \
	cd $(FLOMC_BUILD); \
	autoreconf -fi >autoreconf.log 2>&1 || { tail -20 autoreconf.log; exit 1; }; \
	./configure --prefix='$(CURDIR)/$(FLOMC_DIR)' --disable-testcases --disable-python \
	    --disable-java --disable-php --disable-perl >configure.log 2>&1 || { tail -20 configure.log; exit 1; }; \
	make -j2 >make.log 2>&1 || { tail -40 make.log; exit 1; }; \
	make install >install.log 2>&1 || { tail -20 install.log; exit 1; }; \
	cd '$(CURDIR)'; rm -rf $(FLOMC_BUILD); \
	echo "$$sum" >$(FLOMC_DIR)/SOURCE_SHA256; \
	LD_LIBRARY_PATH=$(FLOMC_DIR)/lib $(FLOMC_DIR)/bin/flom --version | grep 'package version'; \
	echo "FLoM C built in $(FLOMC_DIR) from $(FLOM_C_TARBALL) (sha256 $$sum)"

bench: $(VENV)/.installed
	$(BIN)/python -m compileall -q src >/dev/null
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
