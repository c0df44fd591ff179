"""What SFT and GRPO share: the config fields, the rows they read, the run directory they write, the TRL arguments,
the greedy measurements, and the end of a run. (What they log while training: :mod:`sgglib.train.callbacks`.)

* :class:`TrainConfig` — the shared config fields and their defaults;
* :func:`load_rows` — training and validation rows of a run config (``dataset``, splits, limits);
* :func:`trainer_kwargs` — the ``TrainingArguments`` fields both TRL configs take; precision follows the device;
* :func:`greedy_validation` — greedy decode + metrics; :func:`sample_and_score` — best-of-k headroom;
* :func:`finish_run` — ``final/`` (:func:`save_final`), the final validation into ``predictions.jsonl`` and
  ``metrics.json``, and ``curves.png``.

Final writes happen on the main process only, so ``accelerate launch`` runs write one run directory.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .. import data, prompts, viz
from ..models import decode_and_score, predict
from ..parse import parse_completion
from ..rewards import EdgeHardReward
from ..runs import make_run_dir, read_metrics_csv, write_json

EVAL_KEYS = ("failure_rate", "ap50", "recall", "mean_recall", "recall_pooled")
"""the greedy-validation metrics logged as ``eval/<key>`` (the paper's table columns first)"""


@dataclass
class TrainConfig:
    """The fields every training run shares (SFT, GRPO): data, prompt, optimisation, precision, LoRA, validation,
    checkpoints, budget. :class:`~sgglib.train.sft.SFTRunConfig` and :class:`~sgglib.train.grpo.GRPORunConfig` add
    their own and set their own defaults (the embedded world and tiny model on 2 CPU cores)."""

    dataset: str = "synthetic"
    """:func:`sgglib.data.load_sgg` source: ``synthetic``, a VG150 directory, a ``psg.json``, a hub id"""
    train_split: str = "train"
    """split to train on (GRPO draws its prompts from it)"""
    val_split: str = "val"
    """split for periodic and final greedy validation"""
    train_limit: int = 0
    """cap on training images (0 = the whole split)"""
    val_limit: int = 64
    """validation images decoded at each evaluation (0 = no validation)"""
    prompt: str = "closed"
    """``closed`` (vocabulary listed; the paper's main setting) or ``open`` (SFT also takes ``mixed``)"""
    system_prompt: str = "sft"
    """system turn: ``sft`` (the reference's SFT prompt, "You are a helpful and multimodal AI assistant."), ``rl``
    (the paper's R1-style think/answer prompt), ``none`` (the chat template's default) or the text itself"""
    max_steps: int = 300
    """optimizer steps; -1 = the epochs of the run (the paper)"""
    grad_accum: int = 1
    """gradient accumulation: micro-batches per optimizer step"""
    learning_rate: float = 2e-5
    """peak learning rate"""
    optim: str = "adamw_torch_fused"
    """the optimizer, by ``transformers.TrainingArguments``' ``optim`` names: ``adamw_torch_fused`` (AdamW, its
    default and the paper's) or e.g. ``sgd`` (plain SGD, whose step follows the gradient's size where Adam's does
    not; ``docs/findings.md#the-placebo-control``)"""
    lr_scheduler: str = "constant"
    """transformers scheduler name"""
    warmup_ratio: float = 0.0
    """fraction of steps warming up"""
    max_grad_norm: float = 1.0
    """gradient clipping"""
    dtype: str = "float32"
    """dtype the weights load in: the master copy AdamW updates. Keep float32 and let ``bf16`` run the compute in
    bfloat16: with bfloat16 weights, AdamW updates below the weights' bf16 spacing round to nothing and the paper's
    learning rates train nothing, silently (``docs/findings.md#numerics-on-gpus``); only DeepSpeed keeps its own
    fp32 copy"""
    bf16: bool | None = field(default=None, metadata={"nargs": "?", "const": True})
    """bf16 autocast over fp32 master weights; None follows the device: on for a CUDA GPU that supports bf16, off
    on the CPU. (On Ampere and newer GPUs TF32 is on for the fp32 matmuls that remain.)"""
    attn_implementation: str = "auto"
    """``auto`` (``flash_attention_2`` on a CUDA GPU with flash-attn installed, else ``sdpa``), ``sdpa``, ``eager``
    or ``flash_attention_2`` (falls back to ``sdpa`` where flash-attn is missing)"""
    gradient_checkpointing: bool = False
    """trade compute for memory (on for the 2B/7B recipes); TRL turns it on by default, which only slows the tiny
    model"""
    min_pixels: int = 0
    """smallest image area the processor resizes to (0 = the checkpoint's); the same setting drives the SFT box
    targets, the GRPO rollouts and the validation decodes"""
    max_pixels: int = 0
    """largest image area the processor resizes to (0 = the checkpoint's; the paper: 1024·28·28 for SFT and
    evaluation, 512·28·28 for GRPO)"""
    lora_r: int = 0
    """LoRA rank; 0 = full fine-tuning. ``final/`` holds the merged model either way (adapters in
    ``final/adapter/``)"""
    lora_alpha: int = 16
    """LoRA scaling"""
    lora_dropout: float = 0.0
    """LoRA dropout"""
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    """modules that get adapters"""
    logging_steps: int = 1
    """write a ``train/…`` row every N steps (TRL averages its metrics over them)"""
    eval_steps: int = 50
    """greedy validation every N steps (0 = only at the end)"""
    eval_batch_size: int = 32
    """images per generate() call during validation"""
    eval_max_new_tokens: int = 400
    """generation budget during validation (the paper: 2048; answers of the default world take 75–250 tokens of
    the tiny tokenizer, and a budget that cuts an answer makes it a ``truncated`` failure)"""
    save_steps: int = 100
    """checkpoint every N steps, and at the last step (0 = no checkpoints: nothing to resume from; ``final/`` is
    written either way)"""
    save_total_limit: int = 2
    """checkpoints kept"""
    resume: bool = True
    """resume from the newest checkpoint in the run directory if there is one"""
    max_minutes: float = 0.0
    """stop training after this many minutes of wall time (0 = no limit); the checkpoint and final validation still
    happen"""
    seed: int = 0
    """seed for data order, sampling, dropout and the prompt mix"""
    best_of: int = 0
    """after training, sample this many completions per image of the first ``best_of_images`` validation images and
    record the best-of-k and mean-sample recall (the headroom sampling finds; 0 = off)"""
    best_of_images: int = 48
    """validation images sampled for ``best_of``"""
    best_of_temperature: float = 0.7
    """sampling temperature for ``best_of`` (GRPO's own sampling temperature is a fair choice)"""
    run_dir: str = ""
    """run directory (relative paths go under reports/); "" = reports/<kind>-<timestamp>"""

    def check(self):
        """Raise ``ValueError`` for an impossible setting; returns the config."""
        if self.max_steps == 0 or self.grad_accum < 1:
            raise ValueError("max_steps must be -1 or positive and grad_accum >= 1")
        if self.learning_rate <= 0 or not 0 <= self.warmup_ratio < 1:
            raise ValueError("learning_rate > 0 and 0 <= warmup_ratio < 1 required")
        return self


# -- the run directory ------------------------------------------------------------------------------------------
def shared_run_dir(run_dir: str, kind: str) -> Path:
    """The run directory, the same on every process: with several processes and no ``run_dir``, the main process
    names it (``reports/<kind>-<timestamp>``) and the others take its name, instead of each stamping its own."""
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    state = PartialState()
    if run_dir or state.num_processes == 1:
        return make_run_dir(run_dir or None, kind=kind)
    name = [str(make_run_dir(None, kind=kind)) if state.is_main_process else None]
    broadcast_object_list(name, from_process=0)
    return make_run_dir(name[0])


# -- rows ---------------------------------------------------------------------------------------------------------
def load_rows(cfg: TrainConfig, train_rows=None, val_rows=None) -> tuple[Any, list[dict] | None]:
    """``(training rows, validation rows)``: loaded from ``cfg.dataset`` unless given, the training rows capped at
    ``train_limit`` (0 = all), the first ``val_limit`` validation rows as a list (None when ``val_limit`` is 0)."""
    if train_rows is None:
        train_rows = data.load_sgg(cfg.dataset, split=cfg.train_split)
    if cfg.train_limit:
        train_rows = train_rows.select(range(min(cfg.train_limit, len(train_rows))))
    if not cfg.val_limit:
        return train_rows, None
    if val_rows is None:
        val_rows = data.load_sgg(cfg.dataset, split=cfg.val_split)
    return train_rows, [val_rows[i] for i in range(min(cfg.val_limit, len(val_rows)))]


def trainer_kwargs(cfg: TrainConfig, output_dir: Path) -> dict[str, Any]:
    """The ``transformers.TrainingArguments`` fields both TRL configs take from a :class:`TrainConfig` (the rest is
    each trainer's own): optimisation, precision, logging, checkpoints, seeds; no tqdm (:class:`Progress` prints)."""
    import torch

    cuda = torch.cuda.is_available()
    return dict(
        output_dir=str(output_dir),
        max_steps=cfg.max_steps,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        optim=cfg.optim,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # transformers 5: a float < 1 is a ratio of the total steps
        max_grad_norm=cfg.max_grad_norm,
        bf16=use_bf16(cfg.bf16),
        tf32=True if cuda and torch.cuda.get_device_capability()[0] >= 8 else None,  # Ampere and newer
        gradient_checkpointing=cfg.gradient_checkpointing,
        remove_unused_columns=False,  # the row transforms need every stored column; GRPO's rewards read them
        logging_steps=cfg.logging_steps,
        save_strategy="steps" if cfg.save_steps else "no",
        save_steps=cfg.save_steps or 500,
        save_total_limit=cfg.save_total_limit,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to="none",
        disable_tqdm=True,
        use_cpu=not cuda,
    )


def use_bf16(setting: bool | None) -> bool:
    """The ``bf16`` setting, with None following the device (a CUDA GPU that supports bf16)."""
    import torch

    if setting is not None:
        return bool(setting)
    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def check_master_weights(cfg: TrainConfig, trainer) -> None:
    """Warn when weights train in a half dtype outside DeepSpeed (which keeps its own fp32 master copy)."""
    if cfg.dtype in ("bfloat16", "float16") and getattr(trainer, "is_deepspeed_enabled", False) is False:
        warnings.warn(f"dtype={cfg.dtype}: AdamW updates these weights in {cfg.dtype}; at small learning rates most "
                      "updates round to nothing (docs/findings.md#numerics-on-gpus). Load float32 and set bf16.",
                      stacklevel=2)


def lora_config(cfg: TrainConfig):
    """The PEFT ``LoraConfig`` of a run, or None for full fine-tuning (``lora_r`` 0)."""
    if not cfg.lora_r:
        return None
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.lora_target_modules), task_type="CAUSAL_LM")


# -- greedy validation ---------------------------------------------------------------------------------------------
def greedy_validation(model, processor, rows, cfg: TrainConfig, vocabulary=None,
                      out_path: Path | None = None) -> dict[str, Any]:
    """Greedy decode ``rows`` with the run's prompt and system turn, and score them (``mixed`` prompts validate on
    the closed prompt)."""
    return decode_and_score(model, processor, rows, vocabulary if cfg.prompt != "open" else None,
                            prompts.system_prompt(cfg.system_prompt), out_path, cfg.eval_batch_size,
                            cfg.eval_max_new_tokens)


def sample_and_score(model, processor, rows, cfg: TrainConfig, vocabulary=None,
                     out_path: Path | None = None) -> dict[str, Any]:
    """``cfg.best_of`` samples per image of the first ``cfg.best_of_images`` rows at ``cfg.best_of_temperature``,
    each scored by Hard Recall (%): the mean over samples, the mean of each image's best (best-of-k) and the
    sampled failure rate. Written to ``out_path`` (one line per sample) when given."""
    rows = list(rows)[: cfg.best_of_images]
    records = predict(model, processor, rows, prompts.user_prompt(vocabulary if cfg.prompt != "open" else None),
                      out_path=out_path, system=prompts.system_prompt(cfg.system_prompt),
                      batch_size=max(1, cfg.eval_batch_size // cfg.best_of), max_new_tokens=cfg.eval_max_new_tokens,
                      do_sample=True, temperature=cfg.best_of_temperature, num_return_sequences=cfg.best_of,
                      progress=False)
    solutions = {str(r["image_id"]): prompts.solution(r) for r in rows}
    recall = EdgeHardReward()([r["completion"] for r in records], [solutions[r["image_id"]] for r in records],
                              [r["box_scale"] for r in records])
    best: dict[str, float] = {}
    for r, value in zip(records, recall):
        best[r["image_id"]] = max(best.get(r["image_id"], 0.0), value)
    failed = sum(not parse_completion(r["completion"]).ok for r in records)
    return {"best_of_k": cfg.best_of, "best_of_images": len(rows), "best_of_temperature": cfg.best_of_temperature,
            "best_of_k_recall": 100 * sum(best.values()) / max(1, len(best)),
            "mean_sample_recall": 100 * sum(recall) / max(1, len(recall)),
            "sampled_failure_rate": 100 * failed / max(1, len(records))}


# -- checkpoints and the end of a run ------------------------------------------------------------------------------
def last_checkpoint(run_dir: Path) -> str | None:
    """The newest ``checkpoints/checkpoint-N`` of a run directory (to resume from), or None."""
    from transformers.trainer_utils import get_last_checkpoint

    ckpt_dir = Path(run_dir) / "checkpoints"
    return get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None


class _DropKeyMismatch:
    """A ``logging`` filter for transformers' "missing/unexpected keys in the checkpoint model loaded" warnings."""

    def filter(self, record) -> bool:
        return "keys in the checkpoint model loaded" not in record.getMessage()


def train_resuming(trainer, run_dir: Path, resume: bool) -> None:
    """``trainer.train()``, from the newest checkpoint of ``run_dir`` when ``resume`` is set and there is one.

    transformers resumes a full fine-tune by reading the checkpoint's weights file with ``load_state_dict``, without
    the key renaming that ``from_pretrained`` applies. Qwen2-VL and Qwen2.5-VL checkpoints are written under their
    original names (``model.layers.*``, ``visual.*``), while the model in memory calls them
    ``model.language_model.layers.*`` and ``model.visual.*``: that load matches no key, only warns, and training
    would go on from the weights in memory — the run's *initial* ones — with the checkpoint's optimizer state and
    schedule. So the weights are loaded here first, through ``from_pretrained``, and copied in strictly; the trainer's
    own load then restores the optimizer, scheduler, RNG and step, and its key-mismatch warning is dropped. A LoRA
    run resumes through PEFT's adapter loading, which is unaffected.
    """
    import logging

    checkpoint = last_checkpoint(run_dir) if resume else None
    if checkpoint is None or hasattr(trainer.model, "peft_config"):
        trainer.train(resume_from_checkpoint=checkpoint)
        return
    load_checkpoint_weights(trainer.model, checkpoint)
    quiet = _DropKeyMismatch()
    log = logging.getLogger("transformers.trainer")
    log.addFilter(quiet)
    try:
        trainer.train(resume_from_checkpoint=checkpoint)
    finally:
        log.removeFilter(quiet)


def load_checkpoint_weights(model, checkpoint: str | Path) -> None:
    """Copy a saved checkpoint's weights into ``model`` (same architecture), renaming keys as ``from_pretrained``
    does; strict, so a checkpoint of another architecture fails here, naming the keys."""
    saved = type(model).from_pretrained(str(checkpoint), dtype=next(model.parameters()).dtype)
    model.load_state_dict(saved.state_dict(), strict=True)


def save_final(trainer, processor, final: str | Path) -> Path:
    """Save a trainer's model and processor to ``final/`` as a plain checkpoint that
    :func:`sgglib.models.load_model_and_processor` reads. A LoRA run's adapters go to ``final/adapter/`` and a copy
    of the model with them merged into the weights goes to ``final/`` itself (``trainer.save_model`` alone would
    leave only the adapters, which no loader here reads). Under ZeRO-3 / FSDP the weights are sharded, so only the
    adapters are saved (to ``final/adapter/``); merge them afterwards with ``peft``'s ``merge_and_unload``."""
    from peft import PeftModel

    final = Path(final)
    model = trainer.accelerator.unwrap_model(trainer.model)
    if isinstance(model, PeftModel):
        trainer.save_model(str(final / "adapter"))
        plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
        if getattr(trainer, "is_fsdp_enabled", False) or getattr(plugin, "zero_stage", 0) == 3:
            print(f"sharded LoRA run: adapters saved to {final / 'adapter'}; final/ has no merged model")
        elif trainer.is_world_process_zero():
            copy.deepcopy(model).merge_and_unload().save_pretrained(final)
    else:
        trainer.save_model(str(final))
    if trainer.is_world_process_zero():
        processor.save_pretrained(final)
        processor.tokenizer.save_pretrained(final)
    return final


def finish_run(trainer, processor, run_dir: Path, cfg: TrainConfig, val_rows, vocabulary, logger, validation,
               curve_panels: Sequence, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Save ``final/``; on the main process validate it into ``predictions.jsonl`` and ``metrics.json`` (with the
    step-0 validation as ``initial`` when there was one; with ``best_of``, the sampling headroom) and draw
    ``curves.png``. ``logger`` and ``validation`` are the run's :mod:`~sgglib.train.callbacks`. Returns the metrics."""
    save_final(trainer, processor, run_dir / "final")
    metrics: dict[str, Any] = {"global_step": trainer.state.global_step, **(extra or {})}
    if not trainer.is_world_process_zero():
        return metrics
    if val_rows:
        metrics.update(greedy_validation(trainer.model, processor, val_rows, cfg, vocabulary,
                                         run_dir / "predictions.jsonl"))
        if validation.initial is not None:
            metrics["initial"] = validation.initial
        if cfg.best_of:
            metrics["sampling"] = sample_and_score(trainer.model, processor, val_rows, cfg, vocabulary,
                                                   run_dir / "samples.jsonl")
        write_json(run_dir / "metrics.json", metrics)
        validation.record(trainer.state.global_step, metrics)  # the curve ends where the run ends
    if logger.rows:
        fig = viz.plot_curves({run_dir.name: read_metrics_csv(logger.path)}, curve_panels)
        fig.savefig(run_dir / "curves.png", dpi=100)
    return metrics
