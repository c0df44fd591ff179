"""The world-study driver end to end on a few steps: the stages run once, resume skips finished ones, and the
summary holds the table, the recall split and every run's config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import world_study


def test_one_cell_in_a_few_steps(tmp_path, capsys):
    argv = ["--cells", "control", "--sft-steps", "2", "--val-limit", "2", "--max-new-tokens", "12",
            "--grpo-minutes", "0.01", "--best-of", "0", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "table-seed0.md").write_text("### dense-seed0\n\n| run |\n")  # another cell's earlier table
    world_study.main(argv)
    folder = tmp_path / "runs" / "control-seed0"
    assert sorted(p.name for p in folder.iterdir()) == ["grpo", "sft", "sft-more-0.01min"]
    summary = json.loads((tmp_path / "out" / "control-seed0.json").read_text())
    assert summary["runs"]["SFT"]["global_step"] == 2 and summary["runs"]["R1-SGG"]["global_step"] >= 1
    assert summary["configs"]["grpo"]["init"] == str(folder / "sft")
    assert summary["configs"]["sft_more"]["learning_rate"] == summary["configs"]["grpo"]["learning_rate"]
    assert set(summary["recall_split_sft_to_r1sgg"]) >= {"recall_change", "failures_removed", "better_valid_answers"}
    assert "| R1-SGG |" in (tmp_path / "out" / "table-seed0.md").read_text()
    capsys.readouterr()
    world_study.main(argv)  # every stage has its metrics.json: nothing trains again
    assert "[study]" not in capsys.readouterr().out
    table = (tmp_path / "out" / "table-seed0.md").read_text()
    assert table.startswith("### dense-seed0") and table.count("### control-seed0") == 1  # kept, replaced

    # R1-SGG and its control from the SFT trained on (the control above), each in its own folder
    with pytest.raises(ValueError, match="--tag"):
        world_study.main(argv + ["--start", "sft-more-0.01min"])
    with pytest.raises(FileNotFoundError, match="no finished run"):
        world_study.main(argv + ["--start", "sft-more-9min", "--tag", "later"])
    world_study.main(argv + ["--best-of", "2", "--start", "sft-more-0.01min", "--tag", "later",
                             "--matched-eval-steps", "1"])  # the later --best-of wins
    assert {"grpo-later", "sft-more-0.01min-more-0.01min"} <= {p.name for p in folder.iterdir()}
    later = json.loads((tmp_path / "out" / "control-seed0-later.json").read_text())
    assert later["start"] == "sft-more-0.01min"
    assert later["configs"]["grpo"]["init"] == str(folder / "sft-more-0.01min")
    assert later["configs"]["sft_more"]["model"] == str(folder / "sft-more-0.01min" / "final")
    assert later["configs"]["sft_more"]["eval_steps"] == 1
    assert list(later["runs"]) == ["SFT", "start: sft-more-0.01min", "R1-SGG", "SFT + GRPO's minutes of SFT"]
    # the start recorded no sampling headroom: measured as R1-SGG's end measures its own, and kept beside it
    start_sampling = later["runs"]["start: sft-more-0.01min"]["sampling"]
    assert start_sampling["best_of_k"] == later["runs"]["R1-SGG"]["sampling"]["best_of_k"] == 2
    assert (folder / "sft-more-0.01min" / "sampling.json").exists()
    assert later["recall_split_sft_to_r1sgg"]["recall_change"] == pytest.approx(
        later["runs"]["R1-SGG"]["recall"] - later["runs"]["start: sft-more-0.01min"]["recall"])


def fake_run(folder: Path, recalls: dict[int, float], sampled: float) -> Path:
    """A run directory with validations at ``recalls``' steps and six training steps."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"learning_rate": 2e-5}))
    head = ["step", "eval/recall", "eval/ap50", "eval/mean_recall", "eval/failure_rate",
            "train/sampled_recall", "train/sampled_failure_rate", "train/reward", "train/grad_norm"]
    lines = [",".join(head)]
    for step in range(7):
        if step in recalls:
            lines.append(f"{step},{recalls[step]},80,12,0,,,,")
        if step:
            lines.append(f"{step},,,,,{sampled + step},0.5,0.8,0.3")
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_placebo_comparison_pairs_the_validations(tmp_path):
    import placebo

    real = fake_run(tmp_path / "real", {0: 22.0, 3: 23.0, 6: 21.5}, sampled=18.0)
    fake = fake_run(tmp_path / "placebo", {0: 22.0, 3: 20.0, 6: 16.5}, sampled=14.0)
    placebo.main(["--real", str(real), "--placebo", str(fake), "--out", str(tmp_path / "out" / "pc")])
    summary = json.loads((tmp_path / "out" / "pc.json").read_text())
    assert (tmp_path / "out" / "pc.png").stat().st_size > 0
    assert [row["step"] for row in summary["greedy"]] == [0, 3, 6]
    last = summary["greedy"][-1]
    assert last["signal"]["eval/recall"] == 5.0 and last["placebo_change"]["eval/recall"] == -5.5
    thirds = summary["training_first_last_third"]
    assert thirds["steps"] == [[1, 2], [5, 6]]
    assert thirds["real"][0]["train/sampled_recall"] == 19.5 and thirds["placebo"][1]["train/sampled_recall"] == 19.5
    other = fake_run(tmp_path / "other", {0: 21.0, 6: 20.0}, sampled=14.0)  # another start: refused
    with pytest.raises(ValueError, match="same model"):
        placebo.compare(real, other)


def test_weight_drift_measures_distance_against_adam_sized_steps(tmp_path):
    import torch
    import weight_drift
    from safetensors.torch import save_file

    def run(name: str, w: torch.Tensor, lr: float, steps: int, extra: dict | None = None, **config) -> Path:
        (tmp_path / name / "final").mkdir(parents=True)
        save_file({"w": w, "step": torch.tensor([steps]), **(extra or {})},
                  str(tmp_path / name / "final" / "model.safetensors"))
        (tmp_path / name / "config.json").write_text(json.dumps({"learning_rate": lr, **config}))
        (tmp_path / name / "metrics.json").write_text(json.dumps({"global_step": steps}))
        return tmp_path / name

    parts = {"model.visual.p": torch.zeros(2, 2), "model.embed_tokens.weight": torch.zeros(2, 2)}
    start = run("start", torch.zeros(4, 4), 1e-3, 1, parts)
    moved = run("moved", torch.full((4, 4), 0.25), 0.01, 25)  # 16 parameters each 0.25 away: distance 1.0
    sgd = run("sgd", torch.full((4, 4), 0.5), 0.5, 2, optim="sgd", max_grad_norm=1.0)  # steps lr × clipped norm
    (sgd / "metrics.csv").write_text("step,train/grad_norm\n1,3.0\n2,1.0\n")
    other = run("other", torch.full((4, 4), 0.5), 0.5, 2, optim="adafactor")  # no yardstick: distance only
    cosine = run("cosine", torch.full((4, 4), 0.5), 0.5, 2, lr_scheduler="cosine")  # nor with a schedule
    for path, text in ((start, '{"objects": [], "relationships": []}'), (moved, '{"objects": []')):
        (path / "predictions.jsonl").write_text(json.dumps({"image_id": "a", "completion": text}) + "\n")
    grouped = run("grouped", torch.zeros(4, 4), 0.01, 25,  # the language layers stay, the other two move
                  {"model.visual.p": torch.full((2, 2), 0.5), "model.embed_tokens.weight": torch.ones(2, 2)})
    weight_drift.main(["--start", str(start), str(moved), str(sgd), str(other), str(cosine), str(grouped),
                       "--out", str(tmp_path / "drift.json")])
    row, sgd_row, other_row, cosine_row, grouped_row = json.loads((tmp_path / "drift.json").read_text())["runs"]
    groups = grouped_row["groups"]
    assert grouped_row["distance"] == pytest.approx(5 ** 0.5) and groups["language"]["distance"] == 0
    assert groups["vision"]["distance"] == pytest.approx(1.0) and groups["embedding"]["distance"] == pytest.approx(2.0)
    # each group against a random walk of its own parameters: 0.01 × √(4 parameters × 25 steps) = 0.1
    assert groups["vision"]["distance_over_random_walk"] == pytest.approx(10.0)
    assert groups["embedding"]["distance_over_random_walk"] == pytest.approx(20.0)
    assert sgd_row["groups"]["language"]["distance_over_random_walk"] is None  # Adam's yardstick only
    # both kept their greedy answers: the one answer changed (to a failure)
    assert row["greedy_answers"]["answers"] == 1 and row["greedy_answers"]["unchanged_text"] == 0
    assert "greedy_answers" not in sgd_row
    assert cosine_row["distance"] == pytest.approx(2.0) and cosine_row["random_walk"] is None
    assert sgd_row["distance"] == pytest.approx(2.0) and sgd_row["straight_line"] == pytest.approx(1.0)
    assert sgd_row["random_walk"] == pytest.approx(0.5 * 2 ** 0.5)
    assert other_row["distance"] == pytest.approx(2.0) and other_row["random_walk"] is None
    assert row["parameters"] == 16 and row["distance"] == pytest.approx(1.0)  # the integer tensor is left out
    assert row["random_walk"] == pytest.approx(0.01 * 4 * 5) and row["straight_line"] == pytest.approx(0.01 * 4 * 25)
    assert row["distance_over_random_walk"] == pytest.approx(1.0 / 0.2)
    with pytest.raises(FileNotFoundError, match="safetensors"):
        weight_drift.weights(tmp_path)


def test_weight_drift_splits_the_embedding_into_the_answers_rows_and_the_rest(mini_cell):
    import torch
    import weight_drift

    key = "model.language_model.embed_tokens.weight"
    moved = torch.tensor([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]])
    split = weight_drift.embedding_rows({key: torch.zeros(3, 2)}, {key: moved}, {0, 7})  # id 7 is past the table
    assert split == {"answer_tokens": 1, "vocabulary": 3, "answer_rows_distance": 5.0, "other_rows_distance": 1.0}

    from sgglib import data, prompts
    from sgglib.models import box_convention, load_processor

    ids = weight_drift.answer_token_ids(mini_cell / "sft", 3)
    processor = load_processor(mini_cell / "sft" / "final")
    config = json.loads((mini_cell / "sft" / "config.json").read_text())
    first = data.load_sgg(config["dataset"], split="train")[0]
    assert set(processor.tokenizer(prompts.sft_target(first, box_convention(processor))).input_ids) <= ids
    assert len(ids) < len(processor.tokenizer)  # the answers use a small part of the vocabulary
