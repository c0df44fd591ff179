# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the suite).
# Each creates .venv/ and installs what it needs on first use; later runs reuse it (a stamp file tracks
# pyproject.toml). GPU users override the torch requirement, e.g.
#   make demo TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sgglib-installed

.PHONY: install demo demo-eval test test-all bench bench-grpo ablation clean-notebooks

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m sgglib.pipeline --run-id demo

# evaluate the shipped example predictions (seconds; no model)
demo-eval: $(STAMP)
	$(PY) -m sgglib.evaluate --pred data/examples/predictions.jsonl --gt data/examples/ground_truth.jsonl

test: $(STAMP)
	$(PY) -m pytest -q

test-all: $(STAMP)
	$(PY) -m pytest -q -m ""

bench: $(STAMP)
	$(PY) benchmarks/rewards_speed.py
	$(PY) benchmarks/metrics_speed.py
	$(PY) benchmarks/tokenizer_coverage.py

# GRPO ablations (group size 4/8/16, hard/relax/soft) into reports/ablation/; override e.g. ARGS="-p max_steps=100"
ablation: $(STAMP)
	$(PY) -m sgglib.ablation $(ARGS)

# GRPO throughput; on a GPU machine run `$(PY) benchmarks/grpo_throughput.py` (Qwen2-VL-2B dimensions)
bench-grpo: $(STAMP)
	$(PY) benchmarks/grpo_throughput.py --tiny

clean-notebooks: $(STAMP)
	$(VENV)/bin/jupyter nbconvert --clear-output --inplace notebooks/*.ipynb
