"""Speed of the GRPO rewards: 512 completions (64 prompts × 8) of 20-object, 15-relation graphs.

Target: the default reward suite ≤ 0.3 ms per completion on 2 cores. Completions are what a policy writes: perturbed
copies of the GT on the Qwen2-VL 1000 grid (jittered, renamed, dropped and extra objects, wrong predicates), in TRL's
chat form, with ~8% failures (cut off, broken JSON). Each sample gets its own copy of the solution dict, as TRL hands
them over. Every reward is timed from cold (all caches cleared: parse, ground truth, matching), so each number
includes its own parse; a preset is timed as GRPO runs it — its functions one after another, the first parsing for
the rest. Reports the best and median wall time of ``--repeats`` runs and the best CPU time (on a shared machine the
CPU time is the fair number). Writes ``reports/bench/rewards_speed.json`` and prints a table.

    python benchmarks/rewards_speed.py [--prompts 64] [--group 8] [--repeats 7] [--seed 0]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import random
import statistics
import time
from pathlib import Path

import sgglib.rewards as R

ROOT = Path(__file__).resolve().parents[1]
OBJECTS = [f"object {i}" for i in range(150)]
PREDICATES = [f"predicate {i}" for i in range(50)]
# the reference's reward functions with spaCy replaced by exact match (measured by hand in an early experiment, not rerunnable from here), ms per completion
REFERENCE_MS = {"format_reward": 0.04, "edge_hard_reward": 0.07, "edge_relax_reward": 0.22, "node_acc_reward": 0.64,
                "node_box_reward": 0.65, "edge_soft_reward": 0.64}
TARGET_MS = 0.3


def make_gt(rng: random.Random) -> dict:
    objs = []
    for k in range(20):
        w, h = rng.uniform(0.05, 0.5), rng.uniform(0.05, 0.5)
        x, y = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
        objs.append({"id": f"{rng.choice(OBJECTS)}.{k + 1}", "bbox": [x, y, x + w, y + h]})
    rels = []
    for _ in range(15):
        s, o = rng.sample(range(20), 2)
        rels.append({"subject": objs[s]["id"], "predicate": rng.choice(PREDICATES), "object": objs[o]["id"]})
    return {"objects": objs, "relationships": rels}


def make_completion(rng: random.Random, gt: dict) -> str:
    objs, ids = [], {}
    for k, o in enumerate(gt["objects"]):
        if rng.random() < 0.1:
            continue  # missed object
        x1, y1, x2, y2 = o["bbox"]
        j = 0.05 if rng.random() < 0.7 else 0.3
        dx, dy = rng.gauss(0, j) * (x2 - x1), rng.gauss(0, j) * (y2 - y1)
        name = o["id"].rsplit(".", 1)[0] if rng.random() < 0.8 else rng.choice(OBJECTS)
        ids[o["id"]] = f"{name}.{k + 1}"
        objs.append({"id": ids[o["id"]], "bbox": [int((x1 + dx) * 1000), int((y1 + dy) * 1000), int((x2 + dx) * 1000),
                                                  int((y2 + dy) * 1000)]})
    for k in range(rng.randint(0, 4)):  # extras
        x, y = rng.randint(0, 800), rng.randint(0, 800)
        objs.append({"id": f"{rng.choice(OBJECTS)}.{30 + k}", "bbox": [x, y, x + rng.randint(20, 200),
                                                                      y + rng.randint(20, 200)]})
    rels = [{"subject": ids[r["subject"]], "object": ids[r["object"]],
             "predicate": r["predicate"] if rng.random() < 0.6 else rng.choice(PREDICATES)}
            for r in gt["relationships"] if r["subject"] in ids and r["object"] in ids]
    while len(rels) < 15:
        s, o = rng.sample(objs, 2)
        rels.append({"subject": s["id"], "predicate": rng.choice(PREDICATES), "object": o["id"]})
    text = f"<think>I see {len(objs)} objects.</think><answer>{json.dumps({'objects': objs, 'relationships': rels})}"
    u = rng.random()
    if u < 0.04:
        return text[: len(text) * 2 // 3]  # cut off by the length limit
    if u < 0.06:
        return text.replace('"relationships"', "'relationships'") + "</answer>"  # broken JSON
    return text + "</answer>"


def timed(fn, repeats: int, n: int) -> dict[str, float]:
    """ms per completion of ``fn()`` from cold caches: wall clock of the best run (least disturbed by other
    processes) and median run, and the best run's CPU time of this process (what it costs when the cores are shared,
    e.g. by the trainer's other workers)."""
    wall, cpu = [], []
    for _ in range(repeats):
        R.clear_caches()
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"min": round(min(wall) / n * 1e3, 4), "median": round(statistics.median(wall) / n * 1e3, 4),
            "cpu": round(min(cpu) / n * 1e3, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench" / "rewards_speed.json"))
    args = ap.parse_args()

    rng = random.Random(args.seed)
    gts = [make_gt(rng) for _ in range(args.prompts)]
    completions = [[{"role": "assistant", "content": make_completion(rng, gt)}] for gt in gts for _ in range(args.group)]
    solution = [copy.deepcopy(gt) for gt in gts for _ in range(args.group)]
    box_scale = [(1000.0, 1000.0)] * len(completions)
    n = len(completions)
    kwargs = {"solution": solution, "box_scale": box_scale}

    load_before = os.getloadavg()
    per_fn = {name: timed(lambda f=fn: f(completions, **kwargs), args.repeats, n) for name, fn in R.REWARD_FUNCS.items()}
    parse_only = timed(lambda: R.format_reward(completions), args.repeats, n)
    presets = {}
    for name in R.PRESETS:
        fns = R.make_rewards(R.PRESETS[name])
        presets[name] = timed(lambda fns=fns: [f(completions, **kwargs) for f in fns], args.repeats, n)
    failures = sum(v == 0.0 for v in R.format_reward(completions))
    default = presets[R.DEFAULT_PRESET]

    result = {
        "completions": n, "prompts": args.prompts, "group": args.group, "objects": 20, "relations": 15,
        "failed_format": failures, "repeats": args.repeats,
        "ms_per_completion": per_fn, "ms_per_completion_parse_and_format": parse_only,
        "ms_per_completion_presets": presets,
        "default_preset": R.DEFAULT_PRESET, "target_ms": TARGET_MS,
        "within_target": {k: default[k] <= TARGET_MS for k in default},
        "reference_ms_exact_match": REFERENCE_MS,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_1min": [round(load_before[0], 2), round(os.getloadavg()[0], 2)]},
        "command": f"python benchmarks/rewards_speed.py --prompts {args.prompts} --group {args.group} "
                   f"--repeats {args.repeats} --seed {args.seed}",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")

    print(f"{n} completions ({args.prompts} prompts × {args.group}), 20 objects / 15 relations, {failures} without a "
          f"valid format; {args.repeats} cold runs each; load average {load_before[0]:.1f} on {os.cpu_count()} cpus")
    print(f"{'ms per completion':44s} {'best':>7s} {'median':>7s} {'cpu':>7s} {'reference':>10s}")
    print("each reward from cold (incl. its own parse)")
    for k, v in per_fn.items():
        ref = f"{REFERENCE_MS[k]:.2f}" if k in REFERENCE_MS else "–"
        print(f"  {k:42s} {v['min']:7.3f} {v['median']:7.3f} {v['cpu']:7.3f} {ref:>10s}")
    print(f"  {'(parse + format only)':42s} {parse_only['min']:7.3f} {parse_only['median']:7.3f} "
          f"{parse_only['cpu']:7.3f}")
    print("presets (parse once, all functions)")
    for k, v in presets.items():
        label = k + (" (default)" if k == R.DEFAULT_PRESET else "")
        print(f"  {label:42s} {v['min']:7.3f} {v['median']:7.3f} {v['cpu']:7.3f}   {' + '.join(R.PRESETS[k])}")
    verdict = {True: "ok", False: "MISSED"}
    print(f"target: default suite ≤ {TARGET_MS} ms per completion: "
          + ", ".join(f"{k} {verdict[default[k] <= TARGET_MS]}" for k in ("min", "median", "cpu")))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
