# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the suite).
# Each creates .venv/ and installs what it needs on first use; later runs reuse it (a stamp file tracks
# pyproject.toml). GPU users override the torch requirement, e.g.
#   make demo TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sgglib-installed

.PHONY: install demo demo-eval test test-all bench bench-grpo gpu-wheels ablation clean-notebooks

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

# any notebook parameter: make demo ARGS="-p 01.annotation_keep=0.6 -p 04.guard=budget"
demo: $(STAMP)
	$(PY) -m sgglib.pipeline --run-id demo $(ARGS)

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

# GRPO throughput; on a GPU machine run `bash benchmarks/gpu_check.sh` (Qwen2-VL-2B dimensions, the paper's batch)
bench-grpo: $(STAMP)
	$(PY) benchmarks/grpo_throughput.py --tiny

# wheels of the pure-Python packages a bare GPU image lacks (Python 3.12, x86-64), into .whl/ for gpu_check.sh
GPU_WHEELS ?= trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 fsspec==2026.9.0 pycocotools==2.0.11
gpu-wheels:
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		--platform any -d .whl $(GPU_WHEELS)

clean-notebooks: $(STAMP)
	$(VENV)/bin/jupyter nbconvert --clear-output --inplace notebooks/*.ipynb
