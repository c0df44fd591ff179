"""The `make demo` driver (sgglib.pipeline): overrides, skipping notebooks that do not exist, and a smoke run of the
real notebooks with tiny parameters and a tiny model built in a temp dir."""

from __future__ import annotations

import json
import shutil

import pytest

from sgglib import data, pipeline, prompts
from sgglib.runs import repo_path
from sgglib.embedded.model import TinyModelConfig, build_tiny_model

TINY = TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64,
                       mrope_section=(2, 3, 3), vision_depth=1, vision_embed_dim=32, vision_heads=2, vocab_size=400)


def test_parse_overrides():
    # literals parse, other text stays a string; NN. prefixes pick one notebook; "04" settings reach both GRPO stages
    table = pipeline.parse_overrides(["03.max_steps=2", "limit=5", "model=Qwen/Qwen2-VL-2B-Instruct", "04.beta=0.0"])
    assert table == {"03": {"max_steps": 2}, "*": {"limit": 5, "model": "Qwen/Qwen2-VL-2B-Instruct"},
                     "04": {"beta": 0.0}}
    assert pipeline._for_stage(table, "04-zero") == {"limit": 5, "model": "Qwen/Qwen2-VL-2B-Instruct", "beta": 0.0}
    with pytest.raises(ValueError):
        pipeline.parse_overrides(["max_steps"])


def test_user_overrides_beat_the_budget_table_which_sizes_only_the_embedded_model(tmp_path):
    sft = {s.key: s for s in pipeline._stages("tiny-base")}["03"]
    demo = pipeline.stage_parameters(sft, tmp_path, "tiny-base")
    assert demo["max_minutes"] == pipeline.DEMO["03"]["max_minutes"] and demo["run_dir"] == str(tmp_path / "sft")
    mine = pipeline.stage_parameters(sft, tmp_path, "tiny-base", overrides=pipeline.parse_overrides(["max_minutes=0"]))
    assert mine["max_minutes"] == 0  # a plain -p beats the table's "03" entry
    hub_id = "Qwen/Qwen2-VL-2B-Instruct"
    hub = pipeline.stage_parameters({s.key: s for s in pipeline._stages(hub_id)}["03"], tmp_path, hub_id)
    assert "max_minutes" not in hub and "max_steps" not in hub and hub["model"] == hub_id


def test_missing_notebooks_are_skipped_and_05_still_reports(tmp_path):
    # only 05 exists: 01-04 are skipped with a reason, 05 runs on no runs at all and says what is missing
    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    shutil.copy(repo_path("notebooks", "05_analysis.ipynb"), nb_dir)
    lines = []
    record = pipeline.run_pipeline("empty", model="unused", notebooks_dir=nb_dir, out_root=tmp_path / "reports",
                                   progress=False, log=lines.append)
    status = {s["stage"]: s["status"] for s in record["stages"]}
    assert status == {"01": "skipped", "02": "skipped", "03": "skipped", "04-zero": "skipped", "04": "skipped",
                      "05": "ok"}
    assert any("04_grpo.ipynb does not exist yet" in line for line in lines)
    root = tmp_path / "reports" / "empty"
    summary = json.loads((root / "metrics.json").read_text())
    assert summary["table"] == [] and len(summary["missing"]) == 4
    assert (root / "html" / "05_analysis.html").stat().st_size > 1000 and (root / "pipeline.json").exists()


@pytest.mark.slow
def test_smoke_pipeline_on_the_real_notebooks(tmp_path):
    # 01 → 03 and 05 end to end with tiny sizes: executed notebooks, HTML, run dirs, and a table with SFT in it
    rows = data.load_sgg("synthetic", split="val")
    model = build_tiny_model(tmp_path / "tiny", TINY,
                             texts=[prompts.sft_target(rows[i]) for i in range(20)] + [prompts.open_prompt()] * 5)
    record = pipeline.run_pipeline("smoke", model=str(model), smoke=True, stages=["01", "02", "03", "05"],
                                   overrides={"01": {"cache_dir": str(tmp_path / "cache")}},
                                   out_root=tmp_path / "reports", progress=False, log=print)
    assert record["ok"], record
    root = tmp_path / "reports" / "smoke"
    assert {p.name for p in (root / "html").iterdir()} == {
        "01_data_prep.html", "02_zero_shot_baselines.html", "03_sft.html", "05_analysis.html"}
    assert json.loads((root / "runs" / "sft" / "config.json").read_text())["max_steps"] == 2  # smoke sizes arrived
    table = json.loads((root / "metrics.json").read_text())["table"]
    assert [r["run"] for r in table] == ["zero-shot base", "SFT"]
    assert (root / "figures" / "curves.png").exists()
