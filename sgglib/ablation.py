"""GRPO ablations (group size, reward set; the paper's ablations): notebook 04 under papermill once per setting, each into its own run
directory that notebook 05 (``sgglib.analysis``) compares by the config fields ``group_size`` / ``rewards``.

    python -m sgglib.ablation                                   # G 4/8/16 (hard) and hard/relax/soft (G 8): 5 runs
    python -m sgglib.ablation --out ablation-short -p max_steps=100 -p init=reports/sft-reference
    python -m sgglib.ablation --dry-run                         # list the runs and their parameters

Runs land in ``reports/<out>/ablation-g<G>-<rewards>/`` (config, metrics.csv/json, curves, the executed notebook
``04_grpo.ipynb``); ``reports/<out>/ablation.json`` records what ran, how long, and what failed. A run whose
``metrics.json`` exists is skipped (delete it or pass ``--force`` to redo it); a failing run does not stop the others.
Every run starts from the same checkpoint with the same seed, so they differ only in the ablated setting.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from .pipeline import parse_overrides
from .runs import make_run_dir, repo_path, write_json

NOTEBOOK = "04_grpo.ipynb"


def ablation_settings(group_sizes: Sequence[int] = (4, 8, 16), reward_sets: Sequence[str] = ("hard", "relax", "soft"),
                      base_group_size: int = 8, base_rewards: str = "hard") -> dict[str, dict[str, Any]]:
    """``{run name: notebook parameters}``: one axis at a time around (``base_group_size``, ``base_rewards``); the
    shared centre run appears once."""
    settings = {f"ablation-g{g}-{base_rewards}": {"group_size": g, "rewards": base_rewards} for g in group_sizes}
    settings.update({f"ablation-g{base_group_size}-{r}": {"group_size": base_group_size, "rewards": r}
                     for r in reward_sets})
    return settings


def run_ablation(out: str | Path = "ablation", overrides: Mapping[str, Any] | None = None,
                 settings: Mapping[str, Mapping[str, Any]] | None = None, force: bool = False,
                 dry_run: bool = False, log=print) -> dict[str, Any]:
    """Execute notebook 04 per setting into ``<out>/<name>/``; returns (and writes) the summary ``ablation.json``."""
    import papermill as pm

    root = make_run_dir(out, kind="ablation")
    settings = settings if settings is not None else ablation_settings()
    summary: dict[str, Any] = {"notebook": NOTEBOOK, "overrides": dict(overrides or {}), "runs": {}}
    for name, params in settings.items():
        run_dir = root / name
        parameters = {**dict(overrides or {}), **params, "run_dir": str(run_dir)}
        entry: dict[str, Any] = {"parameters": parameters}
        if dry_run or ((run_dir / "metrics.json").exists() and not force):
            entry["status"] = "dry-run" if dry_run else "skipped (metrics.json exists)"
            log(f"{name}: {entry['status']}  {params}")
        else:
            log(f"{name}: running {params}")
            run_dir.mkdir(parents=True, exist_ok=True)
            t0 = time.time()
            try:
                pm.execute_notebook(str(repo_path("notebooks", NOTEBOOK)), str(run_dir / NOTEBOOK),
                                    parameters=parameters, cwd=str(repo_path("notebooks")), kernel_name="python3",
                                    progress_bar=False)
                entry["status"] = "done"
            except pm.PapermillExecutionError as err:  # one failed setting must not cost the others
                entry["status"] = f"failed: {err.ename}: {err.evalue}"
                log(f"{name}: {entry['status']}")
            entry["seconds"] = round(time.time() - t0, 1)
        summary["runs"][name] = entry
        write_json(root / "ablation.json", summary)
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="ablation", help="folder under reports/ (or absolute) for the runs")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                        help="notebook 04 parameter for every run (repeatable), e.g. -p max_steps=100")
    parser.add_argument("--group-sizes", default="4,8,16", help="comma-separated G values (rewards: hard)")
    parser.add_argument("--rewards", default="hard,relax,soft", help="comma-separated reward presets (G: 8)")
    parser.add_argument("--force", action="store_true", help="rerun settings that already have metrics.json")
    parser.add_argument("--dry-run", action="store_true", help="list the runs without executing them")
    args = parser.parse_args(argv)
    overrides = parse_overrides(args.param).get("*", {})
    settings = ablation_settings([int(g) for g in args.group_sizes.split(",")], args.rewards.split(","))
    summary = run_ablation(args.out, overrides, settings, force=args.force, dry_run=args.dry_run)
    failed = [n for n, e in summary["runs"].items() if str(e.get("status", "")).startswith("failed")]
    if failed:
        raise SystemExit(f"failed runs: {failed}")


if __name__ == "__main__":
    main()
