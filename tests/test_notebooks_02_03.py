"""Smoke runs of notebooks 02 (zero-shot baselines) and 03 (SFT) under papermill with tiny parameters: a tiny model
built in a temp dir, a handful of images, a few tokens and steps. They check the notebooks run top to bottom and
that overrides reach the run directory, not the numbers."""

from __future__ import annotations

import json

import nbformat
import papermill as pm
import pytest

from sgglib import data, prompts
from sgglib.runs import repo_path
from sgglib.embedded.model import TinyModelConfig, build_tiny_model

NB02 = repo_path("notebooks", "02_zero_shot_baselines.ipynb")
NB03 = repo_path("notebooks", "03_sft.ipynb")
TINY = TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64,
                       mrope_section=(2, 3, 3), vision_depth=1, vision_embed_dim=32, vision_heads=2, vocab_size=400)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    rows = data.load_sgg("synthetic", split="val")
    texts = [prompts.sft_target(rows[i]) for i in range(20)] + [prompts.open_prompt()] * 5
    return build_tiny_model(tmp_path_factory.mktemp("tiny"), TINY, texts=texts)


def run(notebook, tmp_path, **parameters):
    pm.execute_notebook(str(notebook), str(tmp_path / "out.ipynb"), kernel_name="python3", progress_bar=False,
                        cwd=str(repo_path("notebooks")), parameters=parameters)


@pytest.mark.parametrize("notebook", [NB02, NB03], ids=lambda p: p.name)
def test_committed_notebook_is_clean_and_parameterised(notebook):
    # outputs stripped, no execution counts, first code cell tagged `parameters`
    nb = nbformat.read(notebook, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    assert all(not c.outputs and c.execution_count is None for c in code)


def test_02_zero_shot_runs_headless(tmp_path, tiny_model):
    out = tmp_path / "run"
    run(NB02, tmp_path, model=str(tiny_model), limit=3, max_new_tokens=6, batch_size=2, num_examples=1,
        run_dir=str(out))
    config = json.loads((out / "config.json").read_text())
    assert config["limit"] == 3 and config["prompts"] == ["open", "closed"]  # overrides reached the config
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"open", "closed"} and metrics["open"]["num_images"] == 3
    assert len((out / "predictions-closed.jsonl").read_text().splitlines()) == 3
    assert (out / "figures" / "example-0.png").exists()


def test_03_sft_runs_headless(tmp_path, tiny_model):
    out = tmp_path / "run"
    run(NB03, tmp_path, model=str(tiny_model), train_limit=8, max_steps=2, batch_size=2, eval_steps=1,
        val_limit=2, eval_max_new_tokens=6, save_steps=2, num_examples=1, run_dir=str(out))
    config = json.loads((out / "config.json").read_text())
    assert config["max_steps"] == 2 and config["batch_size"] == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["global_step"] == 2 and metrics["num_images"] == 2
    assert "eval/failure_rate" in (out / "metrics.csv").read_text()
    assert (out / "final" / "model.safetensors").exists() and (out / "curves.png").exists()
