"""sgglib.analysis and notebook 05 on small FAKE run directories, written here in the formats the real code writes:
zero-shot (sgglib.models.zero_shot: metrics-<kind>.json, predictions-<kind>.jsonl, metrics.json by kind), SFT
(sgglib.train.sft.train: config.json, metrics.csv from CSVLogger, predictions.jsonl from models.predict, metrics.json =
global_step + metrics.evaluate) and GRPO runs laid out like SFT with reward columns. Metrics come from the real
evaluator, so the numbers are consistent with the predictions."""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path

import nbformat
import papermill as pm
import pytest
from matplotlib.figure import Figure

from sgglib import analysis, data, prompts
from sgglib.metrics import compute_metrics
from sgglib.runs import repo_path, write_json

NB05 = repo_path("notebooks", "05_analysis.ipynb")
N_IMAGES = 6


def _completion(row, keep: float, rng: random.Random) -> str:
    """The SFT target of ``row`` (Qwen2-VL 0-1000 grid) with a fraction ``keep`` of its relations."""
    target = json.loads(prompts.sft_target(row).split("```json", 1)[1].rsplit("```", 1)[0])
    target["relationships"] = [r for r in target["relationships"] if rng.random() < keep]
    return "```json\n" + json.dumps(target) + "\n```"


def _predictions(rows, keep: float, fail_every: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"image_id": str(r["image_id"]), "box_scale": [1000.0, 1000.0], "sample": 0,
             "completion": "I see some shapes." if fail_every and i % fail_every == 0 else _completion(r, keep, rng)}
            for i, r in enumerate(rows)]


def _score(rows, records) -> dict:
    gts = {str(r["image_id"]): {k: r[k] for k in ("width", "height", "objects", "relationships")} for r in rows}
    return compute_metrics({r["image_id"]: r["completion"] for r in records}, gts,
                    pred_box_scale={r["image_id"]: tuple(r["box_scale"]) for r in records}, similarity="exact")


def _jsonl(path: Path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _csv(path: Path, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(k for r in rows for k in r))  # CSVLogger: one header, empty cells elsewhere
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def write_fake_runs(root: Path, rows=None) -> dict[str, Path]:
    """Zero-shot, SFT, R1-SGG-Zero, R1-SGG and two group-size ablations under ``root``; returns label → dir."""
    rows = rows if rows is not None else [data.load_sgg("synthetic", split="val")[i] for i in range(N_IMAGES)]
    out = {}
    zs = root / "zero-shot"
    zs.mkdir(parents=True)
    write_json(zs / "config.json", {"model": "tiny-base", "dataset": "synthetic", "split": "val", "limit": len(rows),
                                    "prompts": ["open", "closed"]})
    by_kind = {}
    for kind, seed in (("open", 1), ("closed", 2)):
        records = _predictions(rows, keep=0.2, fail_every=2, seed=seed)
        _jsonl(zs / f"predictions-{kind}.jsonl", records)
        by_kind[kind] = _score(rows, records)
        write_json(zs / f"metrics-{kind}.json", by_kind[kind])
    write_json(zs / "metrics.json", by_kind)
    out["zero-shot"] = zs
    specs = {"sft": ({}, 0.5, 3), "grpo-zero": ({"init": "base", "group_size": 8, "rewards": "hard"}, 0.6, 0),
             "grpo": ({"init": "sft", "group_size": 8, "rewards": "hard"}, 0.9, 0),
             "ablation-g4": ({"init": "sft", "group_size": 4, "rewards": "hard"}, 0.7, 0),
             "ablation-g16": ({"init": "sft", "group_size": 16, "rewards": "hard"}, 0.8, 0)}
    for seed, (name, (extra, keep, fail_every)) in enumerate(specs.items()):
        run = root / name
        run.mkdir()
        write_json(run / "config.json", {"model": "tiny-base", "dataset": "synthetic", "val_split": "val",
                                         "max_steps": 4, "run_dir": str(run), **extra})
        records = _predictions(rows, keep, fail_every, seed)
        _jsonl(run / "predictions.jsonl", records)
        metrics = _score(rows, records)
        write_json(run / "metrics.json", {"global_step": 4, **metrics})
        log = []
        for step in (1, 2, 3, 4):
            train = {"step": step, "time_s": 0.5 * step, "train/loss": 1.0 / step}
            if extra:
                train.update({"train/reward_format": 0.5 + step / 10, "train/reward_edge": step / 2,
                              "train/reward_edge_std": 0.1, "train/sampled_failure_rate": 10.0 / step,
                              "train/sampled_recall": 10.0 * step})
            log.append(train)
            if step % 2 == 0:
                log.append({"step": step, "time_s": 0.5 * step, "eval/failure_rate": metrics["failure_rate"],
                            "eval/recall": metrics["recall"] * step / 4, "eval/mean_recall": metrics["mean_recall"]})
        _csv(run / "metrics.csv", log)
        out[name] = run
    return out


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return root, write_fake_runs(root)


def test_collect_runs_reads_each_kind_and_names_what_is_missing(fake, tmp_path):
    # a zero-shot run reads the chosen prompt; an empty path and an unfinished run are reported, not raised
    root, dirs = fake
    (tmp_path / "unfinished").mkdir()
    runs, missing = analysis.collect_runs({"zero": str(dirs["zero-shot"]), "SFT": str(dirs["sft"]), "nothing": "",
                                           "half": str(tmp_path / "unfinished")})
    assert set(runs) == {"zero", "SFT"}
    assert runs["zero"].config["prompt"] == "closed" and runs["zero"].predictions_file.name.endswith("closed.jsonl")
    assert missing == ["nothing: not given", f"half: {tmp_path / 'unfinished'} has no metrics.json (did the run "
                       "finish?)"]
    assert runs["SFT"].series("eval/recall")[0] == [2.0, 4.0]  # only the eval rows carry that column


def test_results_table_has_the_paper_columns(fake):
    # the Table 1 columns, values straight from metrics.json, NaN for an absent key, '–' in Markdown
    _, dirs = fake
    runs, _ = analysis.collect_runs({"SFT": str(dirs["sft"]), "R1-SGG": str(dirs["grpo"])})
    del runs["R1-SGG"].metrics["F@100"]
    rows = analysis.results_table(runs)
    assert [r["run"] for r in rows] == ["SFT", "R1-SGG"]
    assert rows[0]["Recall"] == runs["SFT"].metrics["recall"] and rows[0]["FR"] == pytest.approx(100 / 3, abs=0.01)
    assert math.isnan(rows[1]["F@100"])
    md = analysis.format_markdown(rows)
    assert md.splitlines()[0] == "| run | FR | AP@50 | Recall | mRecall | F@100 |" and md.rstrip().endswith("– |")


def test_run_spec_orders_rows_and_adds_ablations_once(fake):
    # the paper's order first; the glob adds the ablation dirs but not a main run it also matches
    root, dirs = fake
    spec = analysis.run_spec(sft=str(dirs["sft"]), grpo=str(dirs["grpo"]), ablations=f"{root}/*g*")
    assert list(spec)[:4] == ["zero-shot base", "SFT", "R1-SGG-Zero", "R1-SGG"]
    assert sorted(k for k in spec if k.startswith("ablation")) == ["ablation ablation-g16", "ablation ablation-g4",
                                                                  "ablation grpo-zero"]


def test_plots_return_figures_and_find_the_ablation(fake):
    # curves pick reward components (not their std) and the sampled failure rate and recall (sgglib.train.grpo's keys); group_size is the ablation
    _, dirs = fake
    runs, _ = analysis.collect_runs({k: str(v) for k, v in dirs.items()})
    keys = analysis.curve_keys(runs)
    assert keys["reward components"] == ["train/reward_edge", "train/reward_format"]
    assert keys["sampled failure rate and recall"] == ["train/sampled_failure_rate", "train/sampled_recall"]
    assert analysis.ablation_params(runs) == ["group_size"]  # rewards are all "hard"
    for fig in (analysis.plot_curves(runs), analysis.plot_long_tail(runs), analysis.plot_ablation(runs, "group_size")):
        assert isinstance(fig, Figure)
    assert isinstance(analysis.plot_curves({}), Figure) and isinstance(analysis.plot_long_tail({}), Figure)


def test_best_worst_by_hard_recall(fake):
    # a failed completion scores 0 and is among the worst; recall per image is in %
    _, dirs = fake
    run = analysis.load_run(dirs["sft"])
    rows = analysis.gt_rows(run)
    assert len(rows) == N_IMAGES
    scores = dict(analysis.per_image_recall(run, rows))
    assert scores[str(rows[0]["image_id"])] == 0.0  # image 0 failed (fail_every=3)
    best, worst = analysis.best_worst(run, rows, n=2)
    assert str(rows[0]["image_id"]) in worst and scores[best[0]] == max(scores.values())


def test_committed_notebook_is_clean_and_parameterised():
    # outputs stripped, no execution counts, first code cell tagged `parameters`
    nb = nbformat.read(NB05, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    assert all(not c.outputs and c.execution_count is None for c in code)


def test_notebook_05_runs_headless_on_fake_runs(fake, tmp_path):
    # papermill with the fake runs (one main run left out): table, figures and metrics.json land in report_dir
    root, dirs = fake
    report = tmp_path / "report"
    pm.execute_notebook(str(NB05), str(tmp_path / "out.ipynb"), kernel_name="python3", progress_bar=False,
                        cwd=str(repo_path("notebooks")),
                        parameters={"zero_shot_run": str(dirs["zero-shot"]), "sft_run": str(dirs["sft"]),
                                    "grpo_run": str(dirs["grpo"]), "ablation_runs": f"{root}/ablation-*",
                                    "num_panels": 1, "report_dir": str(report)})
    summary = json.loads((report / "metrics.json").read_text())
    assert [r["run"] for r in summary["table"]] == ["zero-shot base", "SFT", "R1-SGG", "ablation ablation-g16",
                                                    "ablation ablation-g4"]
    assert summary["missing"] == ["R1-SGG-Zero: not given"]
    names = {p.name for p in (report / "figures").iterdir()}
    assert {"curves.png", "long_tail.png", "ablation_group_size.png"} <= names
    assert any(n.startswith("best-R1-SGG") for n in names) and any(n.startswith("worst-SFT") for n in names)
    assert "| R1-SGG |" in (report / "table.md").read_text()
    changes = json.loads((report / "answer_changes.json").read_text())  # SFT → R1-SGG, per greedy answer
    assert set(changes) == {"R1-SGG"} and changes["R1-SGG"]["answers"] > 0
    assert 0 <= changes["R1-SGG"]["unchanged_relations"] <= 100


def test_summarize_run_reads_zero_shot_and_training_runs(fake):
    # benchmarks/summarize_run.py writes reports/reference/*_summary.json from run directories alone
    import summarize_run

    _, dirs = fake
    zs = summarize_run.summarize(dirs["zero-shot"], "cmd")
    closed = json.loads((dirs["zero-shot"] / "metrics-closed.json").read_text())
    assert set(zs) == {"note", "command", "open", "closed"}
    assert zs["closed"]["failure_rate"] == closed["failure_rate"] == 50.0
    assert zs["closed"]["failures"] == closed["failures"] and zs["closed"]["first_completions"][0] == "I see some shapes."
    grpo = summarize_run.summarize(dirs["grpo"], "cmd")
    metrics = json.loads((dirs["grpo"] / "metrics.json").read_text())
    assert grpo["steps"] == 4 and grpo["final_greedy"]["recall"] == metrics["recall"]
    assert [p["step"] for p in grpo["curve"]] == [2.0, 4.0]


def test_miss_reasons_sorts_each_gt_relation(fake, tmp_path):
    # a hand-made prediction: one relation with another predicate, one object moved away, one image unparseable
    root, dirs = fake
    rows = [data.load_sgg("synthetic", split="val")[i] for i in range(N_IMAGES)]
    row = next(r for r in rows if len(r["relationships"]) >= 3)
    target = json.loads(prompts.sft_target(row).split("```json", 1)[1].rsplit("```", 1)[0])
    first, moved = target["relationships"][0], target["relationships"][1]["object"]
    target["relationships"][0] = {**first, "predicate": "no such predicate"}
    target["objects"] = [{**o, "bbox": [0, 0, 1, 1]} if o["id"] == moved else o for o in target["objects"]]
    other = next(r for r in rows if r is not row and r["relationships"])
    records = [{"image_id": str(row["image_id"]), "box_scale": [1000, 1000], "completion": json.dumps(target)},
               {"image_id": str(other["image_id"]), "box_scale": [1000, 1000], "completion": "no graph here"}]
    run = analysis.Run("hand", tmp_path, {}, {}, predictions_file=tmp_path / "predictions.jsonl")
    _jsonl(run.predictions_file, records)
    reasons = analysis.miss_reasons(run, [row, other])
    rels = row["relationships"]
    touches_moved = sum(moved in (r["subject"], r["object"]) for r in rels)
    wrong = 0 if moved in (first["subject"], first["object"]) else 1
    assert reasons["all"] == {"hit": len(rels) - touches_moved - wrong, "wrong predicate": wrong, "pair missed": 0,
                              "object missed": touches_moved, "no graph": len(other["relationships"])}
    assert sum(reasons[first["predicate"]].values()) == sum(r["predicate"] == first["predicate"]
                                                            for r in rels + other["relationships"])
    # on the fake runs (targets with relations dropped, some failures) the hits are Hard Recall's pooled hits
    sft = analysis.load_run(dirs["sft"])
    all_sft = analysis.miss_reasons(sft, rows)["all"]
    assert all_sft["object missed"] == all_sft["wrong predicate"] == 0
    n = sum(all_sft.values())
    assert all_sft["hit"] == pytest.approx(sft.metrics["recall_pooled"] * n / 100)
    assert "| all |" in analysis.miss_reason_table(analysis.miss_reasons(sft, rows))
