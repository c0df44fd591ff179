"""How much of one training step's gradient is signal: GRPO's against SFT's, from the same start.

Each probe runs a recipe from its start for ``--draws`` optimizer steps with the update taken out: a callback copies
each step's accumulated gradient (unclipped: the probe sets ``max_grad_norm`` 0) and then drops it, so the optimizer
has nothing to apply and the weights never leave the start (checked at the end). The K gradients are K independent
draws of one step's gradient at the same point: fresh prompts and fresh samples for GRPO, fresh batches for SFT.
From them, with unbiased estimates (the mean of the K·(K−1) cross products for |μ|²):

- ``signal``: |μ|², the squared norm of the expected gradient, the direction the recipe moves the model on average;
- ``noise``: tr Σ, the expected squared distance of one step's gradient from μ;
- ``snr``: signal / noise per step. Averaging n steps' gradients (or n times the samples in a step) multiplies it by
  n, so ``steps_for_snr_1`` = 1 / snr is how many steps' worth of samples make the signal as large as the noise;
- ``adam_signal_share``: the mean over coordinates of μᵢ² / E[gᵢ²]. Adam divides each coordinate by the root of its
  E[gᵢ²], so this is the share of an Adam step's squared length that points along μ; over N steps the expected
  displacement grows about as √(1 + (N − 1)·share) times a random walk of the same steps;
- the same per parameter group (vision tower, embedding / LM head, language layers), and the cosine between the
  probes' expected gradients (the cross product of independent means is unbiased for ⟨μ_a, μ_b⟩).

Standard errors are jackknife estimates over the draws.

    .venv/bin/python benchmarks/gradient_noise.py \\
        --grpo reports/study/control-seed0/grpo-real-curve/config.json \\
        --sft reports/study/control-seed0/sft-more-12min/config.json \\
        --variant placebo=shuffle_rewards=true --draws 64 \\
        --out reports/reference/study/gradient-noise-control-seed0.json

``--grpo`` and ``--sft`` are run directories' ``config.json``: the GRPO run's recipe and start, and an SFT recipe of
the same world (its data, batch and prompt), which the probe runs from GRPO's start. ``--variant NAME=field=value,…``
adds a GRPO probe with those fields changed (repeatable). Probe run directories go beside the GRPO run, as
``probe-<GRPO run>-<name>/``, each with its draws and its config in ``gradients.pt`` (``--reuse`` reads draws made
by the same config instead of probing again).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from world_study import literal  # noqa: E402  (this folder is on sys.path when a benchmark runs)

from sgglib.config import parse_cli  # noqa: E402
from sgglib.models import PARAMETER_GROUPS, parameter_group  # noqa: E402
from sgglib.runs import write_json  # noqa: E402


class GradientProbe(TrainerCallback):
    """Copy each optimizer step's gradient into one row of ``rows`` and drop it: the optimizer then has no gradient
    to apply and the weights stay where they started. Run with ``max_grad_norm`` 0 so the copy is unclipped."""

    def __init__(self):
        self.rows: list[torch.Tensor] = []
        self.names: list[tuple[str, int]] = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not self.names:
            self.names = [(n, p.numel()) for n, p in params]
        self.rows.append(torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).detach().reshape(-1)
                                    .to(torch.float32).cpu() for _, p in params]))
        for _, p in params:
            p.grad = None

    def matrix(self) -> torch.Tensor:
        return torch.stack(self.rows)

    def group_slices(self) -> dict[str, list[slice]]:
        out: dict[str, list[slice]] = {g: [] for g in PARAMETER_GROUPS}
        at = 0
        for name, n in self.names:
            out[parameter_group(name)].append(slice(at, at + n))
            at += n
        return out


def _signal_noise(gram: torch.Tensor) -> tuple[float, float]:
    """Unbiased |μ|² and tr Σ from the Gram matrix of K draws."""
    k = gram.shape[0]
    diag, total = float(gram.diagonal().sum()), float(gram.sum())
    signal = (total - diag) / (k * (k - 1))
    return signal, diag / k - signal


def _jackknife_se(values: list[float]) -> float:
    k = len(values)
    mean = sum(values) / k
    return ((k - 1) / k * sum((v - mean) ** 2 for v in values)) ** 0.5


def _adam_share(s1: torch.Tensor, s2: torch.Tensor, k: int, live: torch.Tensor) -> float:
    """Mean over the ``live`` coordinates of the unbiased μᵢ² over E[gᵢ²], from the draws' sums of g and g²."""
    mu2 = (s1 * s1 - s2) / (k * (k - 1))
    second = s2 / k
    ratio = torch.where(second > 0, mu2 / second.clamp_min(1e-300), torch.zeros_like(second))
    return float(ratio[live].mean()) if bool(live.any()) else 0.0


def noise_stats(rows: torch.Tensor) -> dict[str, float]:
    """Signal, noise, SNR and Adam's signal share of K gradient draws (one per row), with jackknife errors."""
    k = rows.shape[0]
    if k < 3:
        raise ValueError(f"{k} gradient draws: the estimates need at least 3")
    x = rows.to(torch.float64)
    gram = x @ x.T
    signal, noise = _signal_noise(gram)
    s1, s2 = x.sum(0), (x * x).sum(0)
    live = s2 > 0
    keep = torch.ones(k, dtype=torch.bool)
    loo, loo_share = [], []
    for i in range(k):
        keep[i] = False
        loo.append(_signal_noise(gram[keep][:, keep]))
        keep[i] = True
        loo_share.append(_adam_share(s1 - x[i], s2 - x[i] * x[i], k - 1, live))
    snr = signal / noise if noise > 0 else float("nan")
    return {"draws": k, "signal": signal, "signal_se": _jackknife_se([s for s, _ in loo]), "noise": noise,
            "snr": snr, "snr_se": _jackknife_se([s / n if n > 0 else float("nan") for s, n in loo]),
            "steps_for_snr_1": 1 / snr if snr > 0 else None,
            "mean_grad_norm": float(gram.diagonal().mean()) ** 0.5,
            "adam_signal_share": _adam_share(s1, s2, k, live), "adam_signal_share_se": _jackknife_se(loo_share)}


def cosine(a: torch.Tensor, b: torch.Tensor) -> dict[str, float] | None:
    """cos(μ_a, μ_b) from two independent probes' K draws each (rows): ⟨mean_a, mean_b⟩ over the unbiased norms,
    with a jackknife error (draw i left out of both). None when either signal is not above twice its error."""
    sa, sb = noise_stats(a), noise_stats(b)
    if sa["signal"] <= 2 * sa["signal_se"] or sb["signal"] <= 2 * sb["signal_se"] or a.shape[0] != b.shape[0]:
        return None
    x, y = a.to(torch.float64), b.to(torch.float64)
    k = x.shape[0]
    cross, ga, gb = x @ y.T, x @ x.T, y @ y.T

    def cos(keep):
        c, n = cross[keep][:, keep], int(keep.sum())
        norms = _signal_noise(ga[keep][:, keep])[0] * _signal_noise(gb[keep][:, keep])[0]
        return float(c.sum()) / n ** 2 / norms ** 0.5

    keep = torch.ones(k, dtype=torch.bool)
    value, loo = cos(keep), []
    for i in range(k):
        keep[i] = False
        loo.append(cos(keep))
        keep[i] = True
    return {"cosine": value, "se": _jackknife_se(loo)}


def probe(kind: str, cfg, run_dir: Path, reuse: bool = False
          ) -> tuple[torch.Tensor, dict[str, list[slice]], float | None]:
    """Run ``cfg`` (a GRPORunConfig or SFTRunConfig) with the gradient probe into ``run_dir`` (emptied first), check
    that its final weights equal its start's, and keep the draws in ``run_dir/gradients.pt`` with the config that
    made them. Returns the draws (one row each), each parameter group's columns and the training loop's seconds per
    step (None for draws kept by a version that did not time them). With ``reuse``, an earlier
    probe's draws are read instead when its config was the same."""
    from sgglib.models import load_model_and_processor
    from sgglib.train.grpo import train_grpo, weights_digest
    from sgglib.train.sft import train_sft

    cfg = dataclasses.replace(cfg, run_dir=str(run_dir), max_grad_norm=0.0, eval_steps=0, val_limit=0, best_of=0,
                              save_steps=0, resume=False, max_minutes=0.0)
    recipe = json.loads(json.dumps(dataclasses.asdict(cfg)))
    saved = run_dir / "gradients.pt"
    if reuse and saved.exists():
        kept = torch.load(saved)
        if kept.get("config") == recipe:
            print(f"[probe] {run_dir.name}: {cfg.max_steps} draws read from {saved}", flush=True)
            return (kept["rows"], {g: [slice(*span) for span in spans] for g, spans in kept["groups"].items()},
                    kept.get("seconds_per_step"))
        print(f"[probe] {run_dir.name}: {saved} came from another config; probing again", flush=True)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    callback = GradientProbe()
    t0 = time.perf_counter()
    if kind == "grpo":
        start = train_grpo(cfg, extra_callbacks=[callback])["init"]
    else:
        train_sft(cfg, extra_callbacks=[callback])
        start = cfg.model
    seconds = time.perf_counter() - t0  # the whole run: loading, the steps, saving final/
    print(f"[probe] {run_dir.name}: {len(callback.rows)} draws in {seconds:.0f} s", flush=True)
    digests = [weights_digest(load_model_and_processor(path, dtype="float32")[0])
               for path in (start, run_dir / "final")]
    if digests[0] != digests[1]:
        raise RuntimeError(f"{run_dir}: the probe's weights moved from {start}; the update was not taken out")
    rows, groups = callback.matrix(), callback.group_slices()
    per_step = seconds / max(1, len(callback.rows))
    torch.save({"rows": rows, "groups": {g: [[s.start, s.stop] for s in spans] for g, spans in groups.items()},
                "config": recipe, "seconds_per_step": per_step}, saved)
    return rows, groups, per_step


def by_group(rows: torch.Tensor, groups: dict[str, list[slice]]) -> dict[str, torch.Tensor]:
    """The draws' columns of each parameter group."""
    return {group: torch.cat([rows[:, s] for s in slices], dim=1) for group, slices in groups.items() if slices}


def parse_variant(text: str) -> tuple[str, dict]:
    """``NAME=field=value[,field=value…]`` → the name and the fields, values read as world_study's ``-g`` reads them."""
    name, _, fields = text.partition("=")
    if not name or not fields:
        raise ValueError(f"--variant {text!r}: expected NAME=field=value[,field=value…]")
    return name, {key: literal(value) for key, _, value in (item.partition("=") for item in fields.split(","))}


def main(argv=None) -> dict:
    from sgglib.train.grpo import GRPORunConfig, resolve_init
    from sgglib.train.sft import SFTRunConfig

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grpo", required=True, help="a GRPO run's config.json: the recipe and its start")
    ap.add_argument("--sft", required=True,
                    help="an SFT run's config.json on the same world: its recipe, run from GRPO's start")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=FIELD=VALUE[,FIELD=VALUE]",
                    help="a further GRPO probe with these config fields changed (repeatable)")
    ap.add_argument("--draws", type=int, default=64, help="gradient draws per probe")
    ap.add_argument("--out", required=True, help="the JSON to write")
    ap.add_argument("--reuse", action="store_true",
                    help="read a probe's draws from its gradients.pt when the same config made them")
    args = ap.parse_args(argv)
    grpo_cfg = dataclasses.replace(parse_cli(GRPORunConfig, [args.grpo]), max_steps=args.draws)
    sft_cfg = dataclasses.replace(parse_cli(SFTRunConfig, [args.sft]), max_steps=args.draws)
    start = Path(resolve_init(grpo_cfg.init, grpo_cfg.model_id)).resolve()
    if Path(sft_cfg.dataset).resolve() != Path(grpo_cfg.dataset).resolve():
        raise ValueError(f"the GRPO recipe trains on {grpo_cfg.dataset} and the SFT one on {sft_cfg.dataset}: the "
                         "probes compare one world's gradients")
    sft_cfg = dataclasses.replace(sft_cfg, model=str(start))  # both probes at one point: GRPO's start
    folder = Path(args.grpo).resolve().parent.parent
    probes = {"sft": ("sft", sft_cfg, {}), "grpo": ("grpo", grpo_cfg, {})}
    for text in args.variant:
        name, changes = parse_variant(text)
        probes[name] = ("grpo", dataclasses.replace(grpo_cfg, **changes), changes)
    results, rows, groups = {}, {}, {}
    for name, (kind, cfg, changes) in probes.items():
        run_dir = folder / f"probe-{Path(args.grpo).resolve().parent.name}-{name}"
        rows[name], slices, per_step = probe(kind, cfg, run_dir, args.reuse)
        groups[name] = by_group(rows[name], slices)
        samples = cfg.prompts_per_step * cfg.group_size if kind == "grpo" else cfg.batch_size * cfg.grad_accum
        stats = noise_stats(rows[name])
        results[name] = {"kind": kind, "changes": changes, "samples_per_step": samples, "seconds_per_step": per_step,
                         **stats,
                         "samples_for_snr_1": samples * stats["steps_for_snr_1"] if stats["steps_for_snr_1"] else None,
                         "groups": {g: noise_stats(x) for g, x in groups[name].items()}, "weights_unchanged": True}
    names = list(results)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    cosines = {f"{a}~{b}": {"all": cosine(rows[a], rows[b]),
                            **{g: cosine(groups[a][g], groups[b][g]) for g in groups[a]}} for a, b in pairs}
    out = {"start": str(start), "grpo_config": str(Path(args.grpo).resolve()),
           "sft_config": str(Path(args.sft).resolve()), "probes": results, "cosine_of_expected_gradients": cosines,
           "command": " ".join(["python"] + sys.argv), "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_json(Path(args.out), out)
    for name, r in results.items():
        print(f"{name:>14}: snr {r['snr']:.4f} ± {r['snr_se']:.4f}  adam share {r['adam_signal_share']:.4f} ± "
              f"{r['adam_signal_share_se']:.4f}  samples for snr 1 {r['samples_for_snr_1'] or float('nan'):.0f}  "
              f"|g| {r['mean_grad_norm']:.3f}")
    for pair, values in cosines.items():
        print(f"{pair:>24}: " + "  ".join(f"{g} {v['cosine']:+.2f} ± {v['se']:.2f}" if v else f"{g} –"
                                          for g, v in values.items()))
    return out


if __name__ == "__main__":
    main()
