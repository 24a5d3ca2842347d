# Two commands on a fresh machine:  `make app`  and  `make test`.
# Both create .venv and install what they need the first time; later runs start at once.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501
# `make app GPU=1` on Linux with an NVIDIA driver also installs TensorFlow's CUDA libraries (tensorflow[and-cuda]).
GPU ?= 0
RUNTIME := $(VENV)/.runtime$(if $(filter 1,$(GPU)),-gpu)

.PHONY: app test chromium postgres orthanc

app: $(RUNTIME)
	MALLOC_ARENA_MAX=2 $(BIN)/streamlit run app.py --server.port $(PORT)

# The second run moves every model score by a deterministic +-1e-6 (as scores move between CPUs and batch
# sizes), so a test that only passes with this machine's exact scores fails here, not on someone else's.
test: $(VENV)/.test chromium postgres orthanc
	$(BIN)/ruff check .
	$(BIN)/python -m pytest
	PNEUMONIA_PERTURB_SCORES=1e-6 $(BIN)/python -m pytest -m score_sensitive -q

$(VENV)/.runtime: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.runtime-gpu: $(VENV)/.runtime
	$(BIN)/python -m pip install --quiet "$$(grep -m1 '^tensorflow' requirements.txt | sed 's/^tensorflow/tensorflow[and-cuda]/')"
	touch $@

$(VENV)/.test: $(VENV)/.runtime requirements-test.txt
	$(BIN)/python -m pip install --quiet -r requirements-test.txt
	touch $@

# Debian's Chromium for the end-to-end test. Where it cannot be installed, that test skips and says why.
chromium:
	@command -v chromium >/dev/null 2>&1 || \
	  { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq >/dev/null 2>&1 && $$SUDO apt-get install -y -qq chromium >/dev/null 2>&1 \
	    && echo "installed chromium" || echo "could not install chromium: the browser test will skip"; }

# Debian's PostgreSQL server for the reader-study store's tests against a real server (each test run starts its own
# throwaway cluster in a temporary folder, as the postgres user). Where it cannot be installed, those tests skip.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq >/dev/null 2>&1 && $$SUDO apt-get install -y -qq postgresql >/dev/null 2>&1 \
	    && echo "installed postgresql" || echo "could not install postgresql: the PostgreSQL tests will skip"; }

# Debian's Orthanc and its DICOMweb plugin for the PACS round trip's tests (tests/test_pacs.py starts its own throwaway
# server: a temporary folder, a loopback port, a test user). apt starts no service. Where they cannot be installed,
# those tests skip (and fail under PNEUMONIA_REQUIRE_ORTHANC=1, as in CI).
orthanc:
	@{ command -v Orthanc >/dev/null 2>&1 || [ -x /usr/sbin/Orthanc ]; } && ls /usr/share/orthanc/plugins/libOrthancDicomWeb.so >/dev/null 2>&1 || \
	  { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq >/dev/null 2>&1 && $$SUDO apt-get install -y -qq orthanc orthanc-dicomweb >/dev/null 2>&1 \
	    && echo "installed orthanc" || echo "could not install orthanc: the PACS tests will skip"; }
