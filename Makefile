# Foresight: `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo demo-prometheus test lint bench bench-nab bench-drift bench-backtest bench-bank bench-wire bench-window chaos lock clean venv

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@echo "installing dependencies into $(VENV) (about 30 s)"
	@$(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	@# PYTHONWARNINGS: setuptools' generic "editable installation" notice, not actionable here
	@PYTHONWARNINGS=ignore $(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)
	@echo "installed: $(VENV)/bin/foresight ($$($(VENV)/bin/foresight --version))"

## the whole pipeline locally: embedded broker, worker, controller, simulated cluster
demo: $(STAMP)
	$(VENV)/bin/foresight demo --duration $${DURATION:-300} --speed $${SPEED:-60} --serve

## the demo fed from Prometheus: a local one (Debian's prometheus + promtool: apt-get install
## prometheus) holding four weeks of NYC taxi demand; 'foresight demo --sources FILE' for your own
demo-prometheus: $(STAMP)
	$(VENV)/bin/foresight demo --local-prometheus --duration $${DURATION:-120} --serve

## the whole suite: unit, doctests, integration (real broker, API emulator, browser), e2e, on
## PYTEST_WORKERS processes (pytest-xdist; default 2, 0 = serial). --dist worksteal: an idle
## process takes tests queued for the busy one (8.0-8.1 min vs 9.0-9.7 min for loadfile here); each
## process has its own broker and Prometheus (session fixtures), a module fixture is made once
## per process. A plain `python -m pytest tests/x.py` stays one process.
PYTEST_WORKERS ?= 2
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist worksteal

lint: $(STAMP)
	$(VENV)/bin/ruff check .

## fault injection (not in make test): a larger property search of the input path, then good
## and bad traffic while workers are SIGKILLed and the broker paused; fails on any loss or stall
chaos: $(STAMP)
	FORESIGHT_FUZZ_EXAMPLES=$${FUZZ:-20000} $(PY) -m pytest -q -p no:cacheprovider tests/streams/test_windowing.py -k property
	nice $(PY) benchmarks/chaos.py --duration $${DURATION:-90} --seed $${SEED:-1}

## issue 14's figures in one run (~15-20 min on 2 cores; 100,000 warm series need ~25 GB, else skipped):
## single-event ratio; per series count the aggregates ratio, then on warm models (restored from
## checkpoints trained on 100 windows, then 10 windows learnt) updates/s, steady close->forecast, RSS
bench: $(STAMP)
	$(PY) benchmarks/throughput.py --series 1000 10000 100000 --windows 20 --seeded 100 --warm 10 --backlog 3 --backlog-updates 300000 --paced 3

bench-nab: $(STAMP)
	$(PY) benchmarks/nab.py

bench-drift: $(STAMP)
	$(PY) benchmarks/drift.py

bench-wire: $(STAMP)
	$(PY) benchmarks/forecasts_wire.py

bench-window: $(STAMP)
	$(PY) benchmarks/window_path.py

bench-backtest: $(STAMP)
	$(PY) benchmarks/backtest.py

## model compute: the vectorised SeriesBank vs the per-series classes, 1,000 to 100,000 series (~3 GB)
bench-bank: $(STAMP)
	nice $(PY) benchmarks/bank.py

## regenerate the pinned lock from pyproject.toml (needs uv)
lock:
	$(PY) -m pip install --quiet uv
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) build .pytest_cache
