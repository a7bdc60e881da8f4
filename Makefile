# Set-up on a fresh machine is one command each: `make demo` and `make test` create and fill .venv when missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test test-fast bench clean-data chromium lint-prompts lint

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rag-middleware demo

# headless Chromium renders the replay report in one test; installed here when apt can (else that test skips)
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && \
	   apt-get install -y -q chromium >/dev/null 2>&1)) || echo "chromium not installed: its test will skip"; }

# every template parses in the sandbox, uses only the documented context, and renders for every domain
lint-prompts: $(STAMP)
	$(VENV)/bin/rag-middleware prompts lint

# ruff over the package, its tests, benchmarks and domain plugins (rules and limits in pyproject.toml)
lint: $(STAMP)
	$(VENV)/bin/ruff check rag_middleware tests benchmarks knowledge_base

test: $(STAMP) chromium lint lint-prompts
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not integration"

bench: $(STAMP)
	$(PY) benchmarks/overhead.py

# mutation testing of the core modules, each against its own fast tests, 2 workers (mutation/run.py)
MUTMUT_VERSION := 3.8.1
.PHONY: mutation
mutation: | $(STAMP)
	$(PY) -m pip install -q mutmut==$(MUTMUT_VERSION)
	$(PY) mutation/run.py $(MODULES)

clean-data:
	rm -rf .rag-mw

# opt-in, before a release: Open WebUI (its own venv, about 3 GB, installed once) in front of
# `serve --upstream embedded`, driven through its API, a rating synced back, a screenshot (docs/open-webui.md)
OWUI_VENV ?= .venv-owui
OWUI_STAMP := $(OWUI_VENV)/.installed-stamp

$(OWUI_STAMP):
	test -x $(OWUI_VENV)/bin/python || python3 -m venv $(OWUI_VENV)
	$(OWUI_VENV)/bin/pip install -q torch==2.13.0
	$(OWUI_VENV)/bin/pip install -q open-webui==0.12.4
	touch $@

.PHONY: test-openwebui
test-openwebui: $(STAMP) chromium $(OWUI_STAMP)
	RAG_MW_OPENWEBUI=1 $(PY) -m pytest tests/openwebui -m openwebui -p no:cacheprovider
