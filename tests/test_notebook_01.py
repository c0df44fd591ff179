"""Smoke run of notebooks/01_data_prep.ipynb under papermill with tiny parameters (headless, into tmp dirs)."""

from __future__ import annotations

import json

import nbformat
import papermill as pm

from sgglib.runs import repo_path

NOTEBOOK = repo_path("notebooks", "01_data_prep.ipynb")


def test_committed_notebook_is_clean_and_parameterised():
    # outputs stripped, no execution counts, first code cell tagged `parameters`
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    assert all(not c.outputs and c.execution_count is None for c in code)


def test_notebook_runs_headless_with_tiny_parameters(tmp_path):
    run = tmp_path / "run"
    pm.execute_notebook(
        str(NOTEBOOK), str(tmp_path / "out.ipynb"), kernel_name="python3", progress_bar=False,
        cwd=str(repo_path("notebooks")),
        parameters={"split": "val", "num_images": 12, "max_objects": 6, "num_examples": 2,
                    "run_dir": str(run), "cache_dir": str(tmp_path / "cache")},
    )
    config = json.loads((run / "config.json").read_text())
    assert config["num_images"] == 12 and config["world"]["max_objects"] == 6  # override reached the config
    stats = json.loads((run / "stats.json").read_text())
    assert stats["images"] == 12 and stats["mean_objects"] <= 6
    assert {p.name for p in (run / "figures").iterdir()} == {
        "objects_per_image.png", "relations_per_image.png", "predicates.png", "categories.png", "examples.png"}
