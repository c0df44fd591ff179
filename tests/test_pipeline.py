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


def test_the_demo_validates_on_200_images_and_samples_before_and_after_rl(tmp_path):
    # every trained run of `make demo` is validated on the same 200 images; SFT and R1-SGG also sample best-of-8
    # (notebook 05's headroom before and after RL), the compute-matched control and R1-SGG-Zero do not
    _grpo_run(tmp_path)
    params = {s.key: pipeline.stage_parameters(s, tmp_path, "tiny-base") for s in pipeline._stages("tiny-base")
              if s.key in ("03", "03-matched", "04", "04-zero")}
    assert {k: p["val_limit"] for k, p in params.items()} == dict.fromkeys(params, 200)
    assert {k: p["best_of"] for k, p in params.items()} == {"03": 8, "03-matched": 0, "04": 8, "04-zero": 0}


def test_the_world_01_prepared_reaches_every_later_stage(tmp_path):
    # notebook 01 records the world's folder in runs/data/dataset.json; 02, 03, both GRPO runs and the compute-matched
    # SFT get that folder as their dataset, and the folder gives back 01's knobs (a dense, sparse world here)
    from sgglib.data import synthetic_dir, world_of
    from sgglib.data.synthetic import WorldConfig

    world = WorldConfig(max_objects=12, count_skew=0.7, annotation_keep=0.6, predicate_choice="preferred")
    data.load_sgg("synthetic", split="val", world=world, num_images=2, seed=3, cache_dir=tmp_path / "cache")
    folder = synthetic_dir(world, 3, tmp_path / "cache")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dataset.json").write_text(json.dumps({"dataset": str(folder)}))
    _grpo_run(tmp_path)
    stages = [s for s in pipeline._stages("tiny-base") if s.key in ("02", "03", "04-zero", "04", "03-matched")]
    assert len(stages) == 5
    for stage in stages:
        assert pipeline.stage_parameters(stage, tmp_path, "tiny-base")["dataset"] == str(folder), stage.key
    assert world_of(folder) == (world, 3)


def _grpo_run(runs, **config):
    grpo = runs / "grpo"
    grpo.mkdir(parents=True)
    (grpo / "config.json").write_text(json.dumps({"learning_rate": 2e-5, "max_minutes": 0.0, **config}))
    (grpo / "metrics.csv").write_text("step,time_s,train/loss,eval/recall,train/train_runtime\n0,0.0,,20.0,\n"
                                      "1,31.0,0.5,,\n2,61.0,0.4,,\n3,91.0,0.4,,\n3,91.1,,,140.0\n3,99.0,,21.0,\n")
    (grpo / "metrics.json").write_text("{}")


def test_compute_matched_sft_continues_sft_for_r1sggs_minutes_at_its_learning_rate(tmp_path):
    stage = {s.key: s for s in pipeline._stages("tiny-base")}["03-matched"]
    with pytest.raises(FileNotFoundError, match="no finished R1-SGG run"):  # the pipeline skips it then
        pipeline.stage_parameters(stage, tmp_path, "tiny-base")
    _grpo_run(tmp_path, max_minutes=2.5)  # a budget of 2.5 minutes; it trained 1.5 (3 steps of 30 s)
    params = pipeline.stage_parameters(stage, tmp_path, "tiny-base")
    # the budget and the schedule are R1-SGG's, not the "03" table's 1,000 annealed steps in 8 minutes; the rest of
    # the "03" settings (validation) reach it
    assert params["model"] == str(tmp_path / "sft" / "final") and params["run_dir"] == str(tmp_path / "sft-matched")
    assert params["max_minutes"] == 1.5 and params["max_steps"] > pipeline.DEMO["03"]["max_steps"]
    assert (params["learning_rate"], params["lr_scheduler"], params["warmup_ratio"]) == (2e-5, "constant", 0.0)
    assert params["val_limit"] == pipeline.DEMO["03"]["val_limit"]
    # a notebook-wide -p (meant for SFT) does not change what is matched; the stage's own -p does
    wide = pipeline.stage_parameters(stage, tmp_path, "tiny-base", overrides=pipeline.parse_overrides(
        ["03.max_minutes=20", "03.batch_size=8"]))
    assert wide["max_minutes"] == 1.5 and wide["batch_size"] == 8
    own = pipeline.stage_parameters(stage, tmp_path, "tiny-base",
                                    overrides=pipeline.parse_overrides(["03-matched.max_minutes=1"]))
    assert own["max_minutes"] == 1


def test_compute_matched_sft_matches_the_time_r1sgg_trained(tmp_path):
    # R1-SGG ran 3 steps of ~30 s with no time budget; its step-0 validation and final one are not training time
    _grpo_run(tmp_path)
    assert pipeline.matched_sft(tmp_path / "sft", tmp_path / "grpo")["max_minutes"] == 1.5


def test_missing_notebooks_are_skipped_and_05_still_reports(tmp_path):
    # only 05 exists: 01-04 are skipped with a reason, 05 runs on no runs at all and says what is missing
    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    shutil.copy(repo_path("notebooks", "05_analysis.ipynb"), nb_dir)
    lines = []
    record = pipeline.run_pipeline("empty", model="unused", notebooks_dir=nb_dir, out_root=tmp_path / "reports",
                                   overrides={"05": {"num_panels": 1, "num_pannels": 2}}, progress=False,
                                   log=lines.append)
    # a -p NN.name that 05 does not declare is named, not dropped in silence; a declared one passes
    assert any("NOT PASSED" in line and line.endswith(": num_pannels") for line in lines), lines
    assert record["stages"][-1]["parameters"]["num_panels"] == 1
    status = {s["stage"]: s["status"] for s in record["stages"]}
    assert status == {"01": "skipped", "02": "skipped", "03": "skipped", "04-zero": "skipped", "04": "skipped",
                      "03-matched": "skipped", "05": "ok"}
    assert any("04_grpo.ipynb does not exist yet" in line for line in lines)
    root = tmp_path / "reports" / "empty"
    summary = json.loads((root / "metrics.json").read_text())
    assert summary["table"] == [] and len(summary["missing"]) == 5
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


def test_papermill_reads_every_parameter_line_of_every_notebook():
    # papermill skips a parameters-cell line it cannot parse (an "=" in the comment does it) and the pipeline then
    # drops the -p that names it as undeclared: every assignment line must be one declared parameter
    import papermill as pm

    for path in sorted(repo_path("notebooks").glob("*.ipynb")):
        cell = next(c for c in json.loads(path.read_text())["cells"] if "parameters" in c["metadata"].get("tags", []))
        assigned = {line.split("=")[0].strip() for line in "".join(cell["source"]).splitlines()
                    if "=" in line and not line.lstrip().startswith("#")}
        assert assigned == set(pm.inspect_notebook(str(path))), path.name
