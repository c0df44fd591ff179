"""GRPO with the graph rewards through stock TRL ``GRPOTrainer`` — R1-SGG and R1-SGG-Zero
(``docs/method.md#rewards``, ``docs/method.md#training-recipes``).

Rows of a scene-graph dataset become TRL GRPO rows (:func:`sgglib.prompts.grpo_example`): ``image`` (a dataset
column, TRL's VLM mode), a conversational ``prompt``, ``solution`` (the GT graph in [0, 1]) and ``box_scale`` (the
frame the model writes boxes in: 0–1000 for Qwen2-VL, resized pixels for Qwen2.5-VL). The rewards of
:mod:`sgglib.rewards` (unweighted) are TRL ``reward_funcs`` and the config's weights TRL's ``reward_weights``, so
``train/reward_<name>`` columns are unweighted (Hard Recall as a fraction, the size guard in [−1, 0]) and
``train/reward`` is the weighted total the advantage sees. Everything else goes through TRL's public hooks:
callbacks (:mod:`sgglib.train.callbacks`) and a weight-0 reward that only *measures* the sampled completions via
``log_metric`` (:class:`SampledStats`).

A run directory: ``config.json``, ``metrics.csv`` (every ``logging_steps``: ``train/reward``,
``train/reward_<component>``, ``train/sampled_failure_rate``, ``train/sampled_recall``, ``train/completion_length``,
``train/clip_ratio``, ``train/kl`` (only when β > 0), loss, grad norm; every ``eval_steps`` and at step 0: greedy
``eval/failure_rate``, ``eval/ap50``, ``eval/recall``, ``eval/mean_recall``), ``checkpoints/`` (resumable),
``final/``, ``predictions.jsonl`` + ``metrics.json`` (final greedy validation, with the step-0 one as ``initial``),
``curves.png`` (the training reward beside greedy validation recall — the reward-hacking check — and sampled
against greedy failure rate and recall).

Multi-process: ``accelerate launch`` works unchanged (``configs/accelerate/*.yaml``); ``prompts_per_step`` is global.
Logging and validation happen on the main process only (greedy validation uses the unwrapped model, so with ZeRO-3 /
FSDP sharding set ``eval_steps=0`` and evaluate ``final/`` afterwards).

Command line (every field of :class:`GRPORunConfig` is a flag)::

    python -m sgglib.train.grpo --init sft --max-steps 300 --run-dir grpo-ref
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from .. import data, prompts, rewards
from ..config import parse_cli
from ..models import box_convention, load_model_and_processor, pixel_bounds
from ..parse import completion_text, parse_completion
from ..runs import repo_path, reports_dir, write_json
from .callbacks import MEASURE_ONLY, callbacks
from .credit import CREDIT_MODES, credit_trainer
from .placebo import placebo_trainer
from .self_critical import self_critical_trainer
from .shared_prompt import shared_prompt_trainer
from .start import START_RULES, choose_start
from .common import (EVAL_KEYS, TrainConfig, check_master_weights, finish_run, load_rows, lora_config,
                     shared_run_dir, train_resuming, trainer_kwargs, use_bf16)


@dataclass
class GRPORunConfig(TrainConfig):
    """One GRPO run: the shared :class:`~sgglib.train.common.TrainConfig` fields and GRPO's own. Defaults: the
    embedded world and tiny model on 2 CPU cores; :data:`PAPER_GRPO` holds the paper's real-path parameters."""

    init: str = "sft"
    """``sft`` (R1-SGG: the newest ``reports/sft*/final`` of notebook 03 or ``reports/*/runs/sft/final`` of ``make
    demo``), ``base``
    (R1-SGG-Zero: ``model_id`` itself), or a path: a model directory or an SFT run directory (its ``final/``)"""
    model_id: str = "tiny-base"
    """the base model ``init="base"`` starts from: an embedded name, a directory or a hub id
    (``Qwen/Qwen2-VL-2B-Instruct`` on the real path)"""
    prompt: str = "closed"
    """``closed`` (vocabulary listed; the paper's main setting) or ``open``"""
    rewards: str = "hard"
    """a preset (``hard`` = format + Hard Recall, ``relax``, ``soft`` = format + node_acc + node_box + edge_soft; each
    with the size guard) or explicit weights ``"format_reward:1,edge_hard_reward:5"`` (names from
    ``sgglib.rewards.REWARD_FUNCS``): the one place reward weights are set"""
    rare_predicate_power: float = 0.0
    """rare-predicate weighting of the edge rewards (Hard Recall / Relax): each GT triplet counts
    ``(max count / count of its predicate in the training split) ** power``; 0 = off (the paper), 0.5 a middle
    ground, 1 ≈ every predicate equal (what mRecall measures). See ``rewards.rare_predicate_weights``"""
    guard: str = "strict"
    """the size guard: ``strict`` charges every duplicate, self-relation and repeated triplet (relative to the GT's
    size) as well as padding beyond the budget; ``budget`` charges only the padding beyond the budget, so a slip
    costs nothing it did not earn (``docs/method.md#the-size-guard``)"""
    dangling: str = "drop"
    """a relation to an undefined id: ``drop`` it and score the rest (ours); ``zero`` the sample's edge reward (the
    reference's semantics)"""
    reward_sim: str = "exact"
    """name similarity for relax/soft rewards: ``exact`` or ``embedding`` (all-MiniLM-L6-v2;
    ``docs/method.md#name-similarity``)"""
    format_strict: bool = False
    """True: the format reward needs ``<think>…</think><answer>…</answer>`` (the reference, :data:`PAPER_GRPO`);
    False (default): it also pays half for a valid untagged graph (the reference's unused non-strict mode) — with
    the plain system prompt a strict format reward would be 0 for every sample and carry no signal"""
    group_size: int = 8
    """G, completions sampled per prompt (the paper: 8; 16 was more stable)"""
    prompts_per_step: int = 4
    """prompts per optimizer step across all processes (the paper: 32); completions per step = this × G; the
    per-device batch is prompts_per_step × G / processes / grad_accum"""
    max_steps: int = 300
    """optimizer steps; -1 = one epoch over the training split (the paper)"""
    learning_rate: float = 2e-5
    """AdamW learning rate (the paper: 6e-7; on the embedded model 1e-4 diverged and 2e-5 was stable,
    ``docs/findings.md#grpo-from-sft``)"""
    beta: float = 0.0
    """KL coefficient (the paper: 0 beat 0.04); > 0 loads a reference model"""
    epsilon: float = 0.2
    """PPO clip range"""
    num_iterations: int = 1
    """optimisation passes per generated batch (μ); 1 = strictly on-policy, as the reference"""
    loss_type: str = "dapo"
    """TRL loss normalisation (``dapo`` TRL's default, ``grpo`` the reference's per-sequence mean, ``dr_grpo``)"""
    scale_rewards: str = "group"
    """advantage scaling: ``group`` (r − mean)/std as the reference, ``batch`` or ``none``"""
    start: str = "final"
    """which checkpoint of the SFT run ``init`` names GRPO starts from: ``final`` (its ``final/``, the paper) or
    ``best-of-k`` (of its kept checkpoints and ``final/``, the one whose samples, drawn as GRPO's groups, reach the
    highest best-of-k Hard Recall on the first ``best_of_images`` training rows; ``sgglib.train.start``)"""
    baseline: str = "group"
    """what a sample's reward is compared with: ``group`` the mean reward of its group (GRPO, the paper) or
    ``greedy`` the reward of the current policy's greedy answer to the same prompt, the first of each group's
    ``group_size`` rollouts decoded greedily in the same ``generate`` call (self-critical, SCST): only samples that
    beat the greedy answer are reinforced (``docs/method.md#the-advantage-baseline``)"""
    shuffle_rewards: bool = False
    """the placebo control: shuffle each group's rewards among its samples before the advantages, so the run keeps
    GRPO's samples and update sizes without the information of which sample is better
    (``docs/method.md#the-placebo-control``); a control run, not a training recipe"""
    credit: str = "sequence"
    """how a sample's advantage reaches its tokens (``docs/method.md#per-triplet-credit``): ``sequence`` every token
    (GRPO, the paper); ``triplet`` a relation triplet's tokens drop the advantage when the triplet disagrees with
    its sign (a miss in a sample above its group's baseline, a hit in one below); ``causal`` a token's advantage
    leaves out the Hard Recall its sample's earlier triplets earned, against its group's mean for as many triplets
    (reward-to-go: GRPO's expected gradient, meant to carry less noise); ``relations`` (an ablation) the tokens
    before the ``"relationships"`` key, the object list and its boxes, get 0"""
    share_prompt: bool = True
    """run each distinct prompt once per group in the loss's forward and backward, its key/value cache shared by its
    G completions (exact; ``docs/method.md#one-prompt-pass-per-group``); False = TRL's G full sequences. Qwen2-VL
    family only; with gradient checkpointing TRL's path runs either way"""
    max_completion_length: int = 400
    """sampling budget in tokens (the paper: 1024); a cut answer is a ``truncated`` failure"""
    temperature: float = 0.7
    """sampling temperature (the paper: 1.0; samples of the embedded model at 1.0 are far worse than greedy,
    ``docs/findings.md#grpo-from-sft``)"""
    top_p: float = 1.0
    """nucleus sampling (the paper: 0.9)"""
    top_k: int = 0
    """top-k sampling, 0 = off (the paper: 50)"""
    use_vllm: bool = False
    """generate rollouts with vLLM (GPU only, needs ``pip install vllm``)"""
    vllm_mode: str = "colocate"
    """``colocate`` (vLLM shares the training GPUs) or ``server`` (``trl vllm-serve`` on other GPUs)"""
    vllm_gpu_memory_utilization: float = 0.3
    """share of each GPU vLLM may take in colocate mode"""
    vllm_server_host: str = "0.0.0.0"
    """host of the ``trl vllm-serve`` process in server mode"""
    extra: str = ""
    """further ``trl.GRPOConfig`` fields as a JSON object, passed through unchanged
    (``'{"vllm_server_port": 8001}'``)"""

    def reward_weights(self) -> dict[str, float]:
        """``{reward name: weight}`` of :attr:`rewards` (:func:`sgglib.rewards.reward_weights`)."""
        return rewards.reward_weights(self.rewards)

    def check(self) -> "GRPORunConfig":
        """Raise ``ValueError`` for an impossible setting; returns the config."""
        super().check()
        self.reward_weights()
        if self.extra and not isinstance(json.loads(self.extra), dict):
            raise ValueError(f"extra must be a JSON object of GRPOConfig fields, got {self.extra!r}")
        if self.group_size < 2:
            raise ValueError("group_size must be >= 2 (the advantage is relative to the group)")
        if self.prompts_per_step < 1:
            raise ValueError("prompts_per_step must be >= 1")
        if self.prompt not in ("open", "closed") or self.vllm_mode not in ("colocate", "server"):
            raise ValueError("prompt must be open/closed and vllm_mode colocate/server")
        if self.beta < 0 or not 0 < self.top_p <= 1 or self.temperature <= 0:
            raise ValueError("beta >= 0, 0 < top_p <= 1 and temperature > 0 required")
        if self.guard not in ("strict", "budget") or self.dangling not in ("drop", "zero"):
            raise ValueError(f"guard must be strict/budget and dangling drop/zero, got {self.guard!r}, {self.dangling!r}")
        if self.rare_predicate_power < 0:
            raise ValueError(f"rare_predicate_power must be >= 0, got {self.rare_predicate_power}")
        if self.start not in START_RULES:
            raise ValueError(f"start must be one of {START_RULES}, got {self.start!r}")
        if self.baseline not in ("group", "greedy"):
            raise ValueError(f"baseline must be group or greedy, got {self.baseline!r}")
        if self.baseline == "greedy" and self.use_vllm:
            raise ValueError("baseline='greedy' decodes a row of each group greedily with transformers' generate: "
                             "not with vLLM")
        if self.credit not in ("sequence", *CREDIT_MODES):
            raise ValueError(f"credit must be one of {('sequence', *CREDIT_MODES)}, got {self.credit!r}")
        if self.credit in ("triplet", "causal") and self.shuffle_rewards:
            raise ValueError("shuffle_rewards is the placebo of sequence credit: per-triplet credit would still see "
                             "which triplets hit")
        edge_rewards = {n for n in self.reward_weights() if n.startswith("edge_")}
        if self.credit == "causal" and not (edge_rewards == {"edge_hard_reward"} and self.baseline == "group"
                                            and not self.rare_predicate_power and self.dangling == "drop"):
            raise ValueError("credit='causal' splits Hard Recall over the triplets: it needs edge_hard_reward as the "
                             "only edge reward, unweighted (rare_predicate_power 0), dangling='drop' and "
                             "baseline='group'")
        if self.shuffle_rewards and self.baseline != "group":
            raise ValueError("shuffle_rewards is the placebo of the group-mean baseline; use it with baseline='group'")
        return self


# The paper's GRPO (docs/method.md#training-recipes; the reference's scripts/grpo/*): from the SFT checkpoint of
# Qwen2-VL-2B-Instruct, VG150, 1 epoch, 32 prompts/step × G = 8, lr 6e-7, β = 0, temperature 1.0, top_p 0.9, top_k 50, 1024 completion tokens,
# max_pixels 512·28·28, ε = 0.2, bf16 (autocast over fp32 master weights), vLLM rollouts. Its old TRL fork
# normalised the loss per sequence (``grpo``) and scaled advantages by the group std. 16 GPUs × 2 completions each (grad_accum 8 on one 8-GPU node).
PAPER_GRPO = GRPORunConfig(
    init="reports/sft-paper", model_id="Qwen/Qwen2-VL-2B-Instruct", dataset="vg150", prompt="closed",
    rewards="hard", group_size=8, prompts_per_step=32, max_steps=-1, learning_rate=6e-7, beta=0.0, epsilon=0.2,
    loss_type="grpo", scale_rewards="group", max_completion_length=1024, temperature=1.0, top_p=0.9, top_k=50,
    system_prompt="rl", format_strict=True,
    max_pixels=512 * 28 * 28, dtype="float32", bf16=True, attn_implementation="auto",
    gradient_checkpointing=True, use_vllm=True, vllm_mode="colocate", eval_steps=0, eval_max_new_tokens=2048,
    val_limit=5000, save_steps=100, seed=42,
)


# -- model, data, rewards -----------------------------------------------------------------------------------------
def resolve_init(init: str, model_id: str = "tiny-base") -> str:
    """The model directory (or hub id) a run starts from; raises with the notebook to run when none exists."""
    if init == "base":
        return model_id
    if init == "sft":
        # notebook 03 writes reports/sft-<time>/, make demo reports/<run id>/runs/sft/; nothing else (a study's
        # SFT runs on other worlds are never picked up by name)
        finals = [p.parent for pattern in ("sft*/final/config.json", "*/runs/sft*/final/config.json")
                  for p in reports_dir().glob(pattern)]
        if not finals:
            raise FileNotFoundError(
                f"init='sft' needs an SFT checkpoint and {reports_dir()} has no sft*/final/ or */runs/sft*/final/: "
                "run notebooks/03_sft.ipynb or `make demo` first (or `python -m sgglib.train.sft --run-dir sft-ref`), "
                "or pass init=<model or run directory>, or init='base' for R1-SGG-Zero")
        return str(max(finals, key=lambda p: (p / "config.json").stat().st_mtime))
    for path in (Path(init), repo_path(init), reports_dir(init)):
        if (path / "final" / "config.json").exists():
            return str(path / "final")
        if (path / "config.json").exists():
            return str(path)
    return init  # a hub id or an embedded name: the loader decides


class GRPOExamples:
    """A ``datasets`` transform: stored rows → TRL GRPO rows (:func:`sgglib.prompts.grpo_example`; images stay
    encoded on disk until read). ``pixels`` = the processor's (min, max) pixels, for Qwen2.5-VL's resized frame."""

    def __init__(self, vocabulary, system: str | None, convention: str, pixels: tuple[int, int]):
        self.vocabulary, self.system, self.convention, self.pixels = vocabulary, system, convention, pixels

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        out = []
        for values in zip(*batch.values()):
            row = dict(zip(batch, values))
            resized = None
            if self.convention != "qwen2vl":  # Qwen2.5-VL writes pixels of its resized input
                resized = prompts.resized_size(row["width"], row["height"], min_pixels=self.pixels[0],
                                               max_pixels=self.pixels[1])
            out.append(prompts.grpo_example(row, self.vocabulary, self.system, self.convention, resized))
        return {k: [e[k] for e in out] for k in ("image", "prompt", "solution", "box_scale", "image_id")}


def make_train_dataset(rows, processor, vocabulary=None, system: str | None = prompts.RL_SYSTEM_PROMPT):
    """Wrap a ``datasets.Dataset`` of scene-graph rows for ``GRPOTrainer``."""
    return rows.with_transform(GRPOExamples(vocabulary, system, box_convention(processor), pixel_bounds(processor)))


class SampledStats:
    """A weight-0 "reward" that only measures the sampled completions and logs them through TRL's ``log_metric``:
    ``sampled_failure_rate`` (% not parsing into a graph), ``sampled_recall`` (% GT triplets hit, the Hard Recall of
    the samples; compare with greedy ``eval/recall``), ``sampled_tagged`` (% with think/answer tags) and the mean
    numbers of listed objects and relations (the spam check)."""

    def __init__(self):
        self.__name__ = MEASURE_ONLY  # TRL's name for the (constant zero) reward column, dropped from the CSV
        self.recall = rewards.EdgeHardReward()

    def __call__(self, completions, solution, box_scale=None, log_metric=None, **kwargs) -> list[float]:
        results = [parse_completion(completion_text(c)) for c in completions]
        graphs = [r.graph for r in results if r.ok]
        n = max(1, len(results))
        if log_metric is not None:
            log_metric("sampled_failure_rate", 100.0 * (len(results) - len(graphs)) / n)
            log_metric("sampled_recall", 100.0 * sum(self.recall(completions, solution, box_scale)) / n)
            log_metric("sampled_tagged", 100.0 * sum(r.strict_format for r in results) / n)
            log_metric("sampled_objects", sum(len(g.objects) for g in graphs) / max(1, len(graphs)))
            log_metric("sampled_relations", sum(len(g.relations) for g in graphs) / max(1, len(graphs)))
        return [0.0] * len(completions)


def build_rewards(cfg: GRPORunConfig, predicate_counts: Mapping[str, int] | None = None) -> tuple[list, list[float]]:
    """``(reward_funcs, reward_weights)`` for TRL: the config's unweighted sgglib rewards and their weights, then the
    weight-0 :class:`SampledStats`. ``predicate_counts`` (training-split frequencies) is needed when
    ``cfg.rare_predicate_power > 0``."""
    pred_weights = None
    if cfg.rare_predicate_power:
        if not predicate_counts:
            raise ValueError("rare_predicate_power > 0 needs the training split's predicate counts")
        pred_weights = rewards.rare_predicate_weights(predicate_counts, cfg.rare_predicate_power)
    weights = cfg.reward_weights()
    funcs = rewards.make_rewards(list(weights), cfg.reward_sim, cfg.format_strict, pred_weights, cfg.guard, cfg.dangling)
    return [*funcs, SampledStats()], [*weights.values(), 0.0]


CURVE_PANELS = ("train/reward", "eval/recall", ("train/sampled_recall", "eval/recall"),
                ("train/sampled_failure_rate", "eval/failure_rate"), "eval/mean_recall", "eval/ap50",
                "train/reward_size_penalty", "train/completion_length", "train/sampled_relations")
"""the panels of a GRPO run's ``curves.png``: the training reward beside greedy validation recall (a reward that
rises while recall falls is reward hacking), sampled against greedy, and the size statistics"""


# -- the run --------------------------------------------------------------------------------------------------------
def trl_args(cfg: GRPORunConfig, output_dir: Path, num_processes: int = 1):
    """The TRL ``GRPOConfig`` of a run (separate so tests and notebooks can inspect it)."""
    from trl import GRPOConfig

    completions = cfg.prompts_per_step * cfg.group_size
    if completions % (num_processes * cfg.grad_accum):
        raise ValueError(f"prompts_per_step × group_size = {completions} must divide by processes × grad_accum "
                         f"= {num_processes * cfg.grad_accum}")
    kwargs = dict(
        **trainer_kwargs(cfg, output_dir),
        num_train_epochs=1,
        per_device_train_batch_size=completions // (num_processes * cfg.grad_accum),
        num_generations=cfg.group_size,
        beta=cfg.beta,
        epsilon=cfg.epsilon,
        num_iterations=cfg.num_iterations,
        loss_type=cfg.loss_type,
        scale_rewards=cfg.scale_rewards,
        reward_weights=[*cfg.reward_weights().values(), 0.0],  # build_rewards' order: the config's, SampledStats
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        top_k=cfg.top_k,
        use_vllm=cfg.use_vllm,
        vllm_mode=cfg.vllm_mode,
        vllm_gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
        vllm_server_host=cfg.vllm_server_host,
    )
    return GRPOConfig(**{**kwargs, **(json.loads(cfg.extra) if cfg.extra else {})})  # extra fields override ours


def weights_digest(model) -> str:
    """SHA-256 of the trainable parameters (in name order): equal on every rank of a correct data-parallel run."""
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        if p.requires_grad:
            h.update(name.encode())
            h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def trainer_class(cfg: GRPORunConfig, base=None):
    """The trainer class of a run: TRL's ``GRPOTrainer`` (or ``base``), with the greedy baseline
    (:func:`~sgglib.train.self_critical.self_critical_trainer`), the placebo's shuffled rewards
    (:func:`~sgglib.train.placebo.placebo_trainer`), per-triplet credit
    (:func:`~sgglib.train.credit.credit_trainer`) and the shared prompt pass
    (:func:`~sgglib.train.shared_prompt.shared_prompt_trainer`) when the config asks."""
    if base is None:
        from trl import GRPOTrainer as base
    if cfg.baseline == "greedy":
        base = self_critical_trainer(base)
    if cfg.shuffle_rewards:
        base = placebo_trainer(base, cfg.seed)
    if cfg.credit != "sequence":
        base = credit_trainer(base, cfg.credit)
    return shared_prompt_trainer(base) if cfg.share_prompt else base


def train_grpo(cfg: GRPORunConfig, train_rows=None, val_rows=None, vocabulary=None,
               extra_callbacks: Sequence = ()) -> dict[str, Any]:
    """Run GRPO end to end into ``cfg.run_dir``; returns ``{"run_dir", "global_step", "metrics", "model", "init"}``.
    Rows default to :func:`sgglib.data.load_sgg` of ``cfg.dataset``."""
    import torch
    from accelerate import PartialState
    from transformers import PrinterCallback

    cfg.check()
    state = PartialState(cpu=not torch.cuda.is_available())  # CPU ranks under accelerate launch: gloo
    if state.num_processes > 1 and cfg.max_minutes:
        raise ValueError("max_minutes would stop ranks at different steps; use max_steps with several processes")
    run_dir = shared_run_dir(cfg.run_dir, "grpo")
    if state.num_processes > 1 and cfg.start != "final":
        raise ValueError("start='best-of-k' samples on one process; choose the checkpoint in a single-process run")
    train_rows, val_rows = load_rows(cfg, train_rows, val_rows)
    if vocabulary is None and cfg.prompt == "closed":
        vocabulary = data.vocabulary(cfg.dataset)
    torch.manual_seed(cfg.seed)
    init, start_table = choose_start(resolve_init(cfg.init, cfg.model_id), cfg, train_rows,
                                     vocabulary if cfg.prompt == "closed" else None)
    if state.is_main_process:
        write_json(run_dir / "config.json", {**dataclasses.asdict(cfg), "resolved_init": init,
                                             **({"start_candidates": start_table} if start_table else {})})
    torch.manual_seed(cfg.seed)
    model, processor = load_model_and_processor(init, dtype=cfg.dtype, attn_implementation=cfg.attn_implementation,
                                                 min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels,
                                                 autocast=use_bf16(cfg.bf16))
    dataset = make_train_dataset(train_rows, processor, vocabulary if cfg.prompt == "closed" else None,
                                 prompts.system_prompt(cfg.system_prompt))
    logger, validation, cbs = callbacks(cfg, "grpo", run_dir, processor, val_rows, vocabulary,
                                        validate_at_start=True, max_minutes=cfg.max_minutes)
    counts = data.graph_stats(train_rows)["predicates"] if cfg.rare_predicate_power else None
    reward_funcs, _ = build_rewards(cfg, counts)
    trainer = trainer_class(cfg)(model=model, reward_funcs=reward_funcs,
                                 args=trl_args(cfg, run_dir / "checkpoints", state.num_processes),
                                 train_dataset=dataset, processing_class=processor, peft_config=lora_config(cfg),
                                 callbacks=cbs + list(extra_callbacks))
    trainer.remove_callback(PrinterCallback)  # a dict per step; metrics.csv holds them, Progress prints a line
    check_master_weights(cfg, trainer)
    train_resuming(trainer, run_dir, cfg.resume)
    metrics = finish_run(trainer, processor, run_dir, cfg, val_rows, vocabulary, logger, validation, CURVE_PANELS,
                         extra={"init": init})
    return {"run_dir": run_dir, "global_step": trainer.state.global_step, "metrics": metrics,
            "model": trainer.model, "init": init}


def main(argv: Sequence[str] | None = None) -> None:
    result = train_grpo(parse_cli(GRPORunConfig, argv, description=__doc__.split("\n")[0]))
    if result["metrics"].get("num_images") is not None:
        print(json.dumps({k: result["metrics"].get(k) for k in ("global_step",) + EVAL_KEYS}, indent=2))


if __name__ == "__main__":
    main()
