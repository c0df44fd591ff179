"""The world-study driver end to end on a few steps: the stages run once, resume skips finished ones, and the
summary holds the table, the recall split and every run's config."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import world_study  # noqa: E402


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
