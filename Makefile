# make run   : set up .venv (once), then run the quickstart search on bundled MNIST and leave it in MLflow
# make test  : set up .venv (once), then run the tests
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test test-fast ui bench replay peers peers-replay table-report clean

setup: $(STAMP)

# Re-installs only when pyproject.toml changes. torch is installed first, pinned, so that pip
# takes the CPU wheel where one is provided locally instead of resolving a CUDA build. pip compiles
# the bytecode at install: these machines set PYTHONDONTWRITEBYTECODE=1, so with --no-compile every
# process (each Ray worker, each server) would compile torch, ray and mlflow again (measured
# 2026-12-02: the tests took twice as long).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/vaesearch run configs/quickstart.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not integration"

ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

bench: $(STAMP)
	$(BIN)/python benchmarks/trainable_overhead.py

# The searcher and bandit comparison on the recorded learning-curve table (benchmarks/README.md).
TABLE ?= benchmarks/data/mnist5k-w0.0625
replay: $(STAMP)
	for w in 1 2; do $(BIN)/python -m benchmarks.replay --table $(TABLE) --seeds 100 --workers $$w \
	  --budget-epochs 1000 --out benchmarks/results/replay-w$$w || exit 1; done
	$(BIN)/python -m benchmarks.replay --table $(TABLE) --seeds 100 --workers 4 --budget-epochs 1000 \
	  --bandit --bandit-configs all --bandit-seeds 10 --bandit-budgets 0.2 0.4 0.6 1.0 --out benchmarks/results/replay-w4

# Syne Tune's methods on the same table (benchmarks/README.md, "Peers: Syne Tune"). Its own venv:
# syne-tune 0.14.2 needs numpy<1.27, our runtime pins numpy 2 (benchmarks/peers/requirements.txt).
PEERS_VENV := .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed
PEERS_OUT = benchmarks/results/peers-$(notdir $(TABLE))
peers: $(PEERS_STAMP)
$(PEERS_STAMP): benchmarks/peers/requirements.txt
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r benchmarks/peers/requirements.txt
	touch $(PEERS_STAMP)

# The comparison. Ours: ~12 min on 2 loaded cores; Syne Tune's ASHA/BOHB/DEHB: ~1.5 h; MOBSTER and
# Hyper-Tune refit a GP at every suggestion (well over 5 min a replay here), hence fewer seeds.
# PEERS_METHODS: a subset of Syne Tune's (e.g. "st:asha st:bohb st:dehb st:asha-snap", ~25 min), else all.
PEERS_SEEDS ?= --seeds-for st:mobster=5 st:hypertune=5
PEERS_METHODS ?=
peers-replay: $(STAMP) $(PEERS_STAMP)
	nice -n 19 $(BIN)/python -m benchmarks.peers.ours --table $(TABLE) --workers 1 2 4 8 --seeds 50 \
	  --budget-epochs 1000 --out $(PEERS_OUT)/ours.json
	PYTHONPATH=. nice -n 19 $(PEERS_VENV)/bin/python -m benchmarks.peers.run --table $(TABLE) --workers 1 2 4 8 \
	  --seeds 50 $(if $(PEERS_METHODS),--methods $(PEERS_METHODS),$(PEERS_SEEDS)) --budget-epochs 1000 \
	  --out $(PEERS_OUT)/syne-tune.json
	$(BIN)/python -m benchmarks.peers.report --results $(PEERS_OUT)/ours.json $(PEERS_OUT)/syne-tune.json --out $(PEERS_OUT)

# Everything issue 16 reports for one complete table: how hard its decoder choice is, the decoder
# bandits, and the peers' comparison (benchmarks/README.md, "Tables where the decoder matters").
table-report: $(STAMP) $(PEERS_STAMP)
	$(BIN)/python -m benchmarks.decoder_ranking --table $(TABLE) --out benchmarks/results/decoder-ranking/$(notdir $(TABLE)).json
	$(BIN)/python -m benchmarks.replay --table $(TABLE) --methods random --seeds 2 --workers 4 --budget-epochs 1000 \
	  --bandit --bandit-configs all --bandit-seeds 10 --bandit-budgets 0.2 0.4 0.6 1.0 --no-plot \
	  --out benchmarks/results/bandits-$(notdir $(TABLE))
	$(MAKE) peers-replay TABLE=$(TABLE) PEERS_METHODS="$(or $(PEERS_METHODS),st:asha st:bohb st:dehb st:asha-snap)"

clean:
	rm -rf $(VENV) $(PEERS_VENV) *.egg-info build
