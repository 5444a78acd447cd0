# mrinet: one command to train, one to test. Each target installs what is missing first.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
# installed only when no torch is present: on Linux PyPI serves 2.13.0 with CUDA, on a
# CPU-only machine with a local wheel the CPU build. Bring your own torch to choose another.
TORCH_SPEC ?= torch==2.13.0
ARGS ?=

.PHONY: help install install-dev train train-cnn test test-all lint format bench bench-gpu tensorboard clean

help:
	@echo "make train        train the DTI MLP on the built-in synthetic data (ARGS='key=value ...')"
	@echo "make test         the fast test suite (installs dev/test extras first)"
	@echo "make test-all     every test, slow end-to-end runs included"
	@echo "make lint|format  ruff"
	@echo "make bench        performance benchmarks (ratios against baselines)"
	@echo "make bench-gpu    benchmarks 1 and 3 on a CUDA GPU (training throughput, batched PI-CS)"
	@echo "make tensorboard  serve logs/ on http://localhost:6006"

.install.stamp: pyproject.toml
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install "$(TORCH_SPEC)"
	$(PIP) install -e .
	@touch $@

.install-dev.stamp: .install.stamp pyproject.toml
	$(PIP) install -e ".[dev,test,sweep]"
	# fastMRI is an oracle for tests only; --no-deps because it pins torchvision (a CUDA stack)
	$(PIP) install --no-deps "fastmri==0.3.0" "runstats>=1.8"
	@touch $@

install: .install.stamp

install-dev: .install-dev.stamp

train: .install.stamp
	$(PYTHON) -m mrinet.train experiment=dti_mlp $(ARGS)

train-cnn: .install.stamp
	$(PYTHON) -m mrinet.train experiment=recon_quality_cnn $(ARGS)

test: .install-dev.stamp
	$(PYTHON) -m pytest -m "not slow" -q

test-all: .install-dev.stamp
	$(PYTHON) -m pytest -q

lint: .install-dev.stamp
	ruff check src tests scripts
	ruff format --check src tests scripts

format: .install-dev.stamp
	ruff check --fix src tests scripts
	ruff format src tests scripts

bench: .install-dev.stamp
	@for f in scripts/bench_*.py; do echo "== $$f"; $(PYTHON) $$f || exit 1; done

# issue 8: where a GPU is available, training throughput and batched PI-CS slices/s on it
bench-gpu: .install-dev.stamp
	@echo "== scripts/bench_train_throughput.py --device cuda"
	$(PYTHON) scripts/bench_train_throughput.py --device cuda --repeats 5
	@echo "== scripts/bench_pics.py --device cuda"
	$(PYTHON) scripts/bench_pics.py --device cuda --batch 64 --repeats 5

tensorboard:
	tensorboard --logdir logs

clean:
	rm -rf logs outputs multirun .pytest_cache .ruff_cache build dist src/*.egg-info .install.stamp .install-dev.stamp
