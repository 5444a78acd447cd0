# mrinet: one command to train, one to test. Each target installs what is missing first.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
# installed only when no torch is present: on Linux PyPI serves 2.13.0 with CUDA, on a
# CPU-only machine with a local wheel the CPU build. Bring your own torch to choose another.
TORCH_SPEC ?= torch==2.13.0
ARGS ?=

.PHONY: help install install-dev train train-context train-cnn test test-e2e test-all test-slurm lint format docs bench bench-gpu tensorboard clean

help:
	@echo "make train        train the DTI MLP on the built-in synthetic data (ARGS='key=value ...')"
	@echo "make train-context the MLP with spatial context, then its auto-context second stage"
	@echo "make test         the fast test suite (installs dev/test extras first)"
	@echo "make test-e2e     end-to-end runs CI takes after the fast suite (tests/e2e: training, DDP, sweeps, export, MLflow, the wheel)"
	@echo "make test-all     every test but the SLURM ones, slow end-to-end runs included"
	@echo "make test-slurm   end-to-end runs on a one-node SLURM cluster started here (root, apt)"
	@echo "make lint|format  ruff"
	@echo "make docs         build the user guide site into site/ (warnings are errors)"
	@echo "make bench        performance benchmarks (ratios against baselines)"
	@echo "make bench-gpu    benchmarks 1 and 3 on a CUDA GPU (training throughput, batched PI-CS)"
	@echo "make tensorboard  serve logs/ on http://localhost:6006"

# the stamps say "installed"; a python that cannot import mrinet (another venv, or uninstalled
# since) installs again whatever the stamp says
REINSTALL := $(shell $(PYTHON) -c "import mrinet" 2>/dev/null || echo reinstall)

.PHONY: reinstall
reinstall:

.install.stamp: pyproject.toml $(REINSTALL)
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install "$(TORCH_SPEC)"
	$(PIP) install -e .
	@touch $@

.install-dev.stamp: .install.stamp pyproject.toml
	$(PIP) install -e ".[dev,test,sweep,docs]"
	# fastMRI is an oracle for tests only; --no-deps because it pins torchvision (a CUDA stack)
	$(PIP) install --no-deps "fastmri==0.3.0" "runstats>=1.8"
	@touch $@

install: .install.stamp

install-dev: .install-dev.stamp

train: .install.stamp
	$(PYTHON) -m mrinet.train experiment=dti_mlp $(ARGS)

# the two stages of the auto-context MLP (configs/experiment/dti_mlp_autocontext.yaml): the
# second takes the first's newest best.ckpt; ARGS go to both (e.g. ARGS='seed=2')
train-context: .install.stamp
	$(PYTHON) -m mrinet.train experiment=dti_mlp_context $(ARGS)
	$(PYTHON) -m mrinet.train experiment=dti_mlp_autocontext $(ARGS)

train-cnn: .install.stamp
	$(PYTHON) -m mrinet.train experiment=recon_quality_cnn $(ARGS)

test: .install-dev.stamp
	$(PYTHON) -m pytest -m "not slow and not slurm and not e2e" -q

# end-to-end runs CI takes after the fast suite: trained models exported (ONNX/TorchScript parity),
# a real mlflow server, the wheel and the examples installed beside it, and the heavier repeats of
# runs the fast suite keeps one of (DDP, sweeps on real storages, resumes)
test-e2e: .install-dev.stamp
	$(PYTHON) -m pytest -m "e2e" -q

test-all: .install-dev.stamp
	$(PYTHON) -m pytest -m "not slurm" -q

# issue 14: a real one-node SLURM cluster (scripts/slurm_local.sh installs slurm-wlm + munge
# with apt and starts it), the slurm tests against it, then the cluster stopped again (left
# running if it was running before)
test-slurm: .install-dev.stamp
	@up=$$(scripts/slurm_local.sh status >/dev/null 2>&1 && echo yes); \
	scripts/slurm_local.sh start || exit 1; \
	MRINET_SLURM_REQUIRED=1 $(PYTHON) -m pytest -m slurm -q tests/slurm; rc=$$?; \
	[ -n "$$up" ] || scripts/slurm_local.sh stop; exit $$rc

lint: .install-dev.stamp
	$(PYTHON) -m ruff check src tests scripts
	$(PYTHON) -m ruff format --check src tests scripts

format: .install-dev.stamp
	$(PYTHON) -m ruff check --fix src tests scripts
	$(PYTHON) -m ruff format src tests scripts

docs: .install-dev.stamp
	$(PYTHON) -m mkdocs build --strict

bench: .install-dev.stamp
	@for f in scripts/bench_*.py; do echo "== $$f"; $(PYTHON) $$f || exit 1; done

# issue 8: where a GPU is available, training throughput and batched PI-CS slices/s on it
bench-gpu: .install-dev.stamp
	@echo "== scripts/bench_train_throughput.py --device cuda (whole epochs: float32, then bf16-mixed)"
	$(PYTHON) scripts/bench_train_throughput.py --device cuda --repeats 5
	$(PYTHON) scripts/bench_train_throughput.py --device cuda --precision bf16-mixed --repeats 5
	@echo "== scripts/bench_pics.py --device cuda"
	$(PYTHON) scripts/bench_pics.py --device cuda --batch 64 --repeats 5

tensorboard:
	tensorboard --logdir logs

clean:
	rm -rf logs outputs multirun .pytest_cache .ruff_cache build dist src/*.egg-info .install.stamp .install-dev.stamp
