# The two commands of the README: `make run` and `make test`. Each sets itself up.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
TSTAMP  = $(VENV)/.installed-test-$(shell cksum pyproject.toml | cut -d' ' -f1)

BIOME   = node_modules/.bin/biome

.PHONY: run test check lint typecheck bench screenshots browser systools nginx caddy promtool llama docker clean

$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(TSTAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

## Debian's chromium for the browser tests (never `playwright install`).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

## unshare and ip for the fuzz run's network namespace; Debian's python3 for the tests that
## run modelyard as other OS users (they cannot reach an interpreter under /root).
systools:
	@command -v ip >/dev/null 2>&1 && command -v unshare >/dev/null 2>&1 && test -x /usr/bin/python3 || { \
	  echo "installing iproute2, util-linux and python3 for the security tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq iproute2 util-linux python3 >/dev/null; }

## Debian's nginx: the reverse proxy in front of modelyard in the proxy tests (docs/PROXY.md),
## and the file server of the download benchmark.
nginx:
	@test -x /usr/sbin/nginx || { \
	  echo "installing Debian's nginx for the proxy tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nginx curl openssl >/dev/null; }

## Debian's caddy: the other reverse proxy of docs/PROXY.md, run by the proxy tests. The
## tests start their own caddy; the package's service is disabled, and stopped if systemd
## runs (without systemd, nothing started it: the package ships only systemd units).
caddy:
	@test -x /usr/bin/caddy || { \
	  echo "installing Debian's caddy for the proxy tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq caddy >/dev/null; \
	  if command -v systemctl >/dev/null 2>&1; then \
	    $$SUDO systemctl disable caddy.service caddy-api.service >/dev/null 2>&1; \
	    if [ -d /run/systemd/system ]; then $$SUDO systemctl stop caddy.service; fi; \
	  fi; }

## promtool (Debian's prometheus package) for the check of docs/monitoring's PromQL.
promtool:
	@command -v promtool >/dev/null 2>&1 || { \
	  echo "installing Debian's prometheus for promtool"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

## The genuine llama-server the tests run: the packaged one, or (on a CPU it cannot run on)
## one built once from llama.cpp's sources into ~/.cache/modelyard-tests.
llama: $(TSTAMP)
	$(BIN)/python -m tests.support.llama_build

## Debian's Docker engine and debootstrap for the container tests, then their images: built
## once per machine into the test daemon's store under ~/.cache/modelyard-tests/docker.
docker: $(TSTAMP) llama
	@command -v dockerd >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1 || { \
	  echo "installing docker.io and debootstrap for the container tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq docker.io debootstrap >/dev/null; }
	$(BIN)/python -m tests.support.docker_engine

## Biome (the dashboard's JS/CSS linter and formatter), pinned in package-lock.json, into the
## ignored node_modules/ (npm from Debian when the machine has none).
$(BIOME): package.json package-lock.json
	@command -v npm >/dev/null 2>&1 || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq npm >/dev/null; }
	npm ci --no-audit --no-fund --silent
	touch $@

run: $(STAMP)
	$(BIN)/modelyard serve

test: $(TSTAMP) browser systools nginx caddy promtool llama docker
	$(BIN)/python -m pytest -q

lint: $(TSTAMP) $(BIOME)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIOME) ci

typecheck: $(TSTAMP)
	$(BIN)/mypy src benchmarks

check: lint typecheck test

bench: $(TSTAMP) llama docker nginx
	$(BIN)/python -m benchmarks

## The README's pictures: the browser tests, saving what they see under docs/screenshots.
screenshots: $(TSTAMP) browser
	MODELYARD_SCREENSHOTS=1 $(BIN)/python -m pytest -q tests/e2e

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache node_modules
