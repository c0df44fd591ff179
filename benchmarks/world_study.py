"""The 2×2 study: density × incomplete, ambiguous annotation, with the default world as the control (neither).

The dense world has 3–16 objects with a long tail (``count_skew`` 0.7: mean 7.3, 17 % of its answers over 250
tokens); the sparse one keeps 60 % of the related pairs, each labelled with one of the predicates that hold. The
decoding budget of validation and rollouts is 250 tokens in every cell, so the densest answers do not fit, as long
VG answers do not fit a 1,024-token budget; the control's and the sparse world's answers (at most 162) always fit.
For each cell: SFT (the demo's recipe, 1,000 steps), GRPO from it (R1-SGG: the demo's recipe for ``--grpo-minutes``),
and a compute-matched control — the same SFT checkpoint trained on with SFT for the same minutes at GRPO's learning
rate. Greedy validation on 200 images; at the end of SFT and GRPO, ``--best-of`` samples on 48 images (the sampling
headroom). Each cell's summary — the table's metrics, the structure of the answers, precision against the complete
graph, the recall split and the headroom — goes to ``reports/reference/study/<cell>-seed<N>[-<tag>].json`` with the
commands, and the tables to ``table-seed<N>[-<tag>].md`` there. A stage whose ``metrics.json`` exists is not run again.

    .venv/bin/python benchmarks/world_study.py                         # all four cells, one seed
    .venv/bin/python benchmarks/world_study.py --sft-only               # the SFTs alone (they may share the CPU)
    .venv/bin/python benchmarks/world_study.py --cells dense --grpo-minutes 12 --tag 12min
    .venv/bin/python benchmarks/world_study.py --cells dense --seed 1 -g guard=budget --tag budget

Run directories: ``reports/study/<cell>-seed<N>/`` with ``sft/``, ``grpo[-<tag>]/`` and ``sft-more-<minutes>min/``
(the compute-matched control, one per GRPO budget). ``--start sft-more-12min --tag T`` starts R1-SGG and its control
from that control instead of the SFT (an SFT trained on for 12 more minutes); its control is
``sft-more-12min-more-<minutes>min/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sgglib import data, diagnostics, prompts  # noqa: E402
from sgglib.analysis import Run, gt_rows, load_run  # noqa: E402
from sgglib.data.synthetic import WorldConfig  # noqa: E402
from sgglib.models import box_convention, load_processor  # noqa: E402
from sgglib.runs import read_json, read_metrics_csv, reports_dir, write_json  # noqa: E402
from sgglib.train.common import load_rows  # noqa: E402
from sgglib.train.grpo import GRPORunConfig, train_grpo  # noqa: E402
from sgglib.train.sft import SFTRunConfig, train_sft  # noqa: E402
from sgglib.train.start import model_sampling  # noqa: E402

DENSE = {"min_objects": 3, "max_objects": 16, "count_skew": 0.7}
SPARSE = {"annotation_keep": 0.6, "predicate_choice": "preferred", "preference_skew": 1.0}
CELLS = {"control": {}, "dense": DENSE, "sparse": SPARSE, "dense+sparse": {**DENSE, **SPARSE}}
TABLE_KEYS = ("failure_rate", "ap50", "recall", "mean_recall")


def literal(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def run_once(stage: str, out: Path, fn, cfg) -> Run:
    """Run ``fn(cfg)`` into ``out`` unless it finished before; return the run."""
    if not (out / "metrics.json").exists():
        t0 = time.time()
        fn(cfg)
        print(f"[study] {stage}: {time.time() - t0:.0f} s", flush=True)
    return load_run(out, stage)


def answers_over_budget(model_dir: Path, rows, budget: int) -> float:
    """% of the validation rows whose correct answer (the SFT target) is longer than ``budget`` tokens of the model's
    tokenizer: the answers a budget-bound decode cannot finish."""
    processor = load_processor(model_dir)
    convention = box_convention(processor)
    lengths = [len(processor.tokenizer(prompts.sft_target(r, convention)).input_ids) for r in rows]
    return 100 * sum(n > budget for n in lengths) / max(1, len(lengths))


TRAINING_KEYS = ("reward_format", "reward_edge_hard", "reward_size_penalty", "frac_reward_zero_std", "entropy",
                 "sampled_failure_rate", "sampled_recall", "sampled_relations", "step_time", "grad_norm",
                 "greedy_reward", "beats_greedy",  # only with baseline="greedy"
                 "credit_dropped", "credit_shift", "credit_unaligned")  # only with credit="triplet" / "causal"


def training_thirds(run_dir: Path) -> dict[str, list[float] | float | None]:
    """GRPO's logged training statistics (``train/<key>``), averaged over the first and the last third of its steps,
    and its mean step time (s) over all steps."""
    rows = [r for r in read_metrics_csv(run_dir / "metrics.csv") if r.get("train/reward") not in (None, "")]
    third = max(1, len(rows) // 3)

    def mean(part, key):
        values = [float(r[key]) for r in part if r.get(key) not in (None, "")]
        return sum(values) / len(values) if values else None

    thirds = {key: [mean(rows[:third], "train/" + key), mean(rows[-third:], "train/" + key)]
              for key in TRAINING_KEYS if any(("train/" + key) in r for r in rows)}
    return {**thirds, "mean_step_time": mean(rows, "train/step_time")}


def start_headroom(start_dir: Path, cfg: GRPORunConfig) -> dict:
    """The sampling headroom of a start that did not record one, measured as the end of a GRPO run measures its own
    (``cfg.best_of`` samples on the first ``best_of_images`` validation rows, ``model_sampling``) and kept in
    ``<start>/sampling.json``, beside the start's own files."""
    path = start_dir / "sampling.json"
    if not path.exists():
        import torch

        _, val_rows = load_rows(cfg)
        torch.manual_seed(cfg.seed)
        vocabulary = data.vocabulary(cfg.dataset) if cfg.prompt == "closed" else None
        write_json(path, model_sampling(start_dir / "final", val_rows, cfg, vocabulary))
    return read_json(path)


def cell(name: str, seed: int, grpo_minutes: float, best_of: int, grpo_overrides: dict, root: Path,
         sft_steps: int = 1000, val_limit: int = 200, max_new_tokens: int = 250, tag: str = "",
         sft_only: bool = False, start: str = "sft", matched_eval_steps: int = 0) -> dict | None:
    world = WorldConfig(**CELLS[name])
    data.load_sgg("synthetic", split="val", world=world, seed=seed)  # writes the world's folder
    dataset = str(data.synthetic_dir(world, seed))
    folder = root / f"{name}-seed{seed}"
    common = dict(dataset=dataset, val_limit=val_limit, seed=seed, eval_max_new_tokens=max_new_tokens)
    sft_cfg = SFTRunConfig(run_dir=str(folder / "sft"), max_steps=sft_steps, eval_steps=0, best_of=best_of, **common)
    sft = run_once("SFT", folder / "sft", train_sft, sft_cfg)
    if sft_only:
        return None
    start_dir = folder / start
    if not (start_dir / "metrics.json").exists():
        raise FileNotFoundError(f"{start_dir} holds no finished run to start from: --start names a stage of this "
                                "cell's folder, e.g. sft-more-12min after a run with --grpo-minutes 12")
    if start != "sft" and not tag:
        raise ValueError("--start other than sft needs a --tag, so that its runs do not take the grpo/ of the SFT's")
    start_run = load_run(start_dir, start)
    grpo_dir = folder / ("grpo-" + tag if tag else "grpo")
    grpo_cfg = GRPORunConfig(init=str(start_dir), run_dir=str(grpo_dir), max_steps=5000,
                             max_minutes=grpo_minutes, eval_steps=0, best_of=best_of,
                             max_completion_length=max_new_tokens, **common)
    grpo_cfg = dataclasses.replace(grpo_cfg, **grpo_overrides)
    grpo = run_once("R1-SGG", grpo_dir, train_grpo, grpo_cfg)
    # one compute-matched control per start and GRPO budget, shared by levers
    more_dir = folder / f"{start}-more-{grpo_minutes:g}min"
    more_cfg = SFTRunConfig(model=str(start_dir / "final"), run_dir=str(more_dir), max_steps=50_000,
                            max_minutes=grpo_minutes, learning_rate=grpo_cfg.learning_rate, lr_scheduler="constant",
                            warmup_ratio=0.0, eval_steps=matched_eval_steps, **common)
    more = run_once("SFT + same minutes", more_dir, train_sft, more_cfg)
    if best_of and start != "sft" and not start_run.metrics.get("sampling"):
        start_run.metrics["sampling"] = start_headroom(start_dir, grpo_cfg)
    runs = {"SFT": sft, **({f"start: {start}": start_run} if start != "sft" else {}), "R1-SGG": grpo,
            "SFT + GRPO's minutes of SFT": more}
    rows = gt_rows(sft)
    summary = {
        "cell": name, "seed": seed, "start": start, "world": dataclasses.asdict(world), "dataset": dataset,
        "stats": {**{k: v for k, v in data.graph_stats(data.load_sgg(dataset, split="val")).items()
                     if k in ("mean_objects", "mean_relations")},
                  "answers_over_budget": answers_over_budget(folder / "sft" / "final", rows, max_new_tokens)},
        "runs": {label: {**{k: run.metrics.get(k) for k in TABLE_KEYS}, "global_step": run.metrics.get("global_step"),
                         "structure": diagnostics.output_stats(run),
                         "complete_graph": diagnostics.complete_graph_scores(run, rows),
                         "sampling": diagnostics.sampling_headroom(run)} for label, run in runs.items()},
        # from where R1-SGG started: the SFT, or --start's run (the key keeps its name for the earlier summaries)
        "recall_split_sft_to_r1sgg": diagnostics.recall_split(start_run.metrics, grpo.metrics),
        "grpo_training_first_last_third": training_thirds(grpo_dir),
        "configs": {"sft": read_json(folder / "sft" / "config.json"), "start": read_json(start_dir / "config.json"),
                    "grpo": read_json(grpo_dir / "config.json"),
                    "sft_more": read_json(more_dir / "config.json")},
        "table": diagnostics.study_table(runs, rows),
    }
    return summary


def merge_tables(old: str, new: str) -> str:
    """``old``'s ``### <cell>`` sections with ``new``'s replacing those of the same cell and the rest appended: a
    run of some cells keeps the other cells' tables."""
    def sections(text):
        parts = {}
        for block in ("\n" + text).split("\n### ")[1:]:
            parts[block.split(None, 1)[0]] = "### " + block.strip("\n") + "\n"
        return parts

    merged = {**sections(old), **sections(new)}
    return "\n".join(merged.values())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", default=",".join(CELLS), help=f"comma-separated cells of {sorted(CELLS)}")
    ap.add_argument("--seed", type=int, default=0, help="world and training seed")
    ap.add_argument("--grpo-minutes", type=float, default=4.0, help="GRPO's time budget, and the control's")
    ap.add_argument("--best-of", type=int, default=8, help="samples per image for the headroom (0 = off)")
    ap.add_argument("-g", "--grpo", action="append", default=[], metavar="FIELD=VALUE",
                    help="a GRPORunConfig field for the R1-SGG runs (repeatable), e.g. -g guard=budget")
    ap.add_argument("--sft-steps", type=int, default=1000, help="SFT steps (the demo's recipe: 1,000)")
    ap.add_argument("--val-limit", type=int, default=200, help="validation images")
    ap.add_argument("--max-new-tokens", type=int, default=250,
                    help="the decoding budget of validation and rollouts: the dense world's longest answers exceed it")
    ap.add_argument("--tag", default="",
                    help="names the R1-SGG runs of a lever (-g …) or budget: grpo-<tag>/, <cell>-seed<N>-<tag>.json")
    ap.add_argument("--sft-only", action="store_true",
                    help="train the cells' SFTs and stop: their steps are fixed, so they may share the CPU; the "
                         "minute-budgeted R1-SGG and compute-matched runs should not")
    ap.add_argument("--start", default="sft",
                    help="the stage of the cell's folder that R1-SGG and its compute-matched control start from: sft "
                         "(the demo's recipe) or an earlier control that trained the SFT on, e.g. sft-more-12min")
    ap.add_argument("--matched-eval-steps", type=int, default=0,
                    help="validate the compute-matched control every N steps (a curve; its minutes include them)")
    ap.add_argument("--runs", default=str(reports_dir("study")), help="where the run directories go (not committed)")
    ap.add_argument("--out", default=str(reports_dir("reference", "study")), help="where the summaries go")
    args = ap.parse_args(argv)
    overrides = {k: literal(v) for k, v in (item.split("=", 1) for item in args.grpo)}
    root = Path(args.out)
    lines = []
    for name in args.cells.split(","):
        summary = cell(name, args.seed, args.grpo_minutes, args.best_of, overrides, Path(args.runs), args.sft_steps,
                       args.val_limit, args.max_new_tokens, args.tag, args.sft_only, args.start,
                       args.matched_eval_steps)
        if summary is None:
            continue
        suffix = f"-seed{args.seed}" + (f"-{args.tag}" if args.tag else "")
        lines += [f"### {name}{suffix}" + (f" (R1-SGG with {overrides})" if overrides else ""), "", summary["table"], ""]
        write_json(root / f"{name}{suffix}.json", {**summary, "command": " ".join(["python"] + sys.argv)})
    if not lines:
        return
    table = root / f"table-seed{args.seed}{'-' + args.tag if args.tag else ''}.md"
    table.write_text(merge_tables(table.read_text() if table.exists() else "", "\n".join(lines)))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
