"""Models: load Qwen2-VL / Qwen2.5-VL (hub, local, or the embedded tiny default) and run batched inference.

One code path for every model (issue 4): a hub checkpoint such as ``Qwen/Qwen2-VL-2B-Instruct`` and the embedded
default are both directories that :func:`load_model_and_processor` reads with ``from_pretrained``. The embedded
default is a genuine ``Qwen2VLForConditionalGeneration`` built from a small config by
:func:`sgglib.tiny.build_tiny_model`:

* a byte-level BPE trained on the task's text (:mod:`sgglib.tokenizer`), with Qwen's special tokens, the integers
  0..1000 as single tokens and the stock Qwen2-VL chat template;
* the stock PIL image processor with ``image_mean`` = the synthetic world's background colour and ``image_std`` =
  0.25. FACTS.md: with CLIP's mean/std the component shared by every visual token (the background) grew ~180× the
  per-token content in the bias-free patch embedding, and every image gave the same output (AP@50 0.1 vs 63);
* a processor subclass that needs no torchvision (FACTS.md: ``Qwen2VLProcessor`` cannot be constructed without it,
  and ``AutoProcessor`` silently returns a bare tokenizer — so we never call ``AutoProcessor`` on CPU and we assert
  the type we get).

Names: ``"tiny-init"`` (random weights) and ``"tiny-base"`` (pre-trained on auxiliary tasks by
:func:`sgglib.tiny.pretrain_base`; it plays Qwen2-VL-Instruct's role) resolve to ``data/models/<name>``; anything
else is a local directory or a hub id (the real path; nothing here downloads unless you pass a hub id).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from transformers import Qwen2_5_VLProcessor, Qwen2VLProcessor

from .prompts import SFT_SYSTEM_PROMPT, prompt_messages
from .runs import data_dir, write_json

EMBEDDED = ("tiny-init", "tiny-base")
DEFAULT_MODEL = "tiny-base"


# -- processors without torchvision ----------------------------------------------------------------------------------
class SGGQwen2VLProcessor(Qwen2VLProcessor):
    """``Qwen2VLProcessor`` minus the video processor (which needs torchvision). Images and text behave exactly as in
    the stock class; ``save_pretrained``/``from_pretrained`` round-trip. Videos are not supported."""

    image_processor_class = "Qwen2VLImageProcessorPil"

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, video_processor=None, chat_template=chat_template, **kwargs)


class SGGQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """The same for Qwen2.5-VL."""

    image_processor_class = "Qwen2VLImageProcessorPil"

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, video_processor=None, chat_template=chat_template, **kwargs)


def has_torchvision() -> bool:
    """True if torchvision imports *and works* (the CUDA-linked wheels on CPU boxes import-fail; FACTS.md)."""
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError, OSError):
        return False
    return True


def _model_type(path: str | Path) -> str:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(path).model_type


def load_processor(name_or_path: str | Path, min_pixels: int | None = None, max_pixels: int | None = None):
    """The processor for a Qwen2-VL / Qwen2.5-VL checkpoint; raises ``TypeError`` if we got a bare tokenizer.

    ``min_pixels``/``max_pixels`` bound the resized image (PAPER.md §3: 512·28·28 for GRPO, 1024·28·28 for eval).
    """
    kwargs = {k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v is not None}
    path = resolve_model(name_or_path)
    qwen25 = _model_type(path) == "qwen2_5_vl"
    if has_torchvision():
        stock = Qwen2_5_VLProcessor if qwen25 else Qwen2VLProcessor
        processor = stock.from_pretrained(path, **kwargs)
    else:
        from transformers import AutoTokenizer, Qwen2VLImageProcessorPil

        cls = SGGQwen2_5_VLProcessor if qwen25 else SGGQwen2VLProcessor
        tokenizer = AutoTokenizer.from_pretrained(path)
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(path, **kwargs)
        processor = cls(image_processor=image_processor, tokenizer=tokenizer, chat_template=tokenizer.chat_template)
    if not isinstance(processor, (Qwen2VLProcessor, Qwen2_5_VLProcessor)) or processor.image_processor is None:
        raise TypeError(f"expected a Qwen2-VL processor with an image processor, got {type(processor).__name__}")
    if processor.chat_template is None:
        processor.chat_template = processor.tokenizer.chat_template
    return processor


def resolve_model(name_or_path: str | Path | None) -> str:
    """Map ``None``/embedded names to ``data/models/<name>`` (built on first use for ``tiny-init``)."""
    name = str(name_or_path or DEFAULT_MODEL)
    if name in EMBEDDED:
        path = data_dir("models", name)
        if not (path / "config.json").exists():
            if name == "tiny-init":
                from .tiny import build_tiny_model

                build_tiny_model(path)
            else:
                raise FileNotFoundError(
                    f"{path} does not exist; build it with `python -m sgglib.sft --pretrain-base` "
                    "(sgglib.tiny.pretrain_base)"
                )
        return str(path)
    return name


def load_model_and_processor(
    name_or_path: str | Path | None = None,
    dtype: str = "auto",
    attn_implementation: str | None = "sdpa",
    lora: Any = None,
    device: str | None = None,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
):
    """Load a Qwen2-VL or Qwen2.5-VL model and its processor from a hub id, a directory or an embedded name.

    ``dtype``: ``"auto"`` (the checkpoint's), ``"float32"``, ``"bfloat16"``…; ``attn_implementation``: ``"sdpa"``,
    ``"eager"``, ``"flash_attention_2"`` (GPU). ``lora``: ``None`` (full model) or a PEFT ``LoraConfig`` / dict of
    its fields; the returned model is then a ``PeftModel`` with only the adapters trainable.
    """
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLForConditionalGeneration

    path = resolve_model(name_or_path)
    cls = Qwen2_5_VLForConditionalGeneration if _model_type(path) == "qwen2_5_vl" else Qwen2VLForConditionalGeneration
    torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    model = cls.from_pretrained(path, dtype=torch_dtype, attn_implementation=attn_implementation)
    if device is not None:
        model.to(device)
    if lora is not None:
        model = apply_lora(model, lora)
    return model, load_processor(path, min_pixels=min_pixels, max_pixels=max_pixels)


def apply_lora(model, lora: Any):
    """Wrap ``model`` with LoRA adapters (``lora``: a ``peft.LoraConfig`` or a dict of its fields)."""
    from peft import LoraConfig, get_peft_model

    config = lora if isinstance(lora, LoraConfig) else LoraConfig(**{"task_type": "CAUSAL_LM", **dict(lora)})
    return get_peft_model(model, config)


def save_final(trainer, processor, final: str | Path) -> Path:
    """Save a trainer's model and processor to ``final/`` as a plain checkpoint that :func:`load_model_and_processor`
    (notebooks 04 and 05, ``init=<run>``) reads. A LoRA run's adapters go to ``final/adapter/`` and a copy of the
    model with them merged into the weights goes to ``final/`` itself (``trainer.save_model`` alone would leave only
    the adapters, which no loader here reads). Under ZeRO-3 / FSDP the weights are sharded, so only the adapters are
    saved (to ``final/adapter/``); merge them afterwards with ``peft``'s ``merge_and_unload``."""
    import copy

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


# -- inference -------------------------------------------------------------------------------------------------------
def box_scale(processor, image_grid_thw) -> tuple[float, float]:
    """The frame a model writes boxes in (PAPER.md §1): the 0–1000 grid for Qwen2-VL, resized-input pixels
    (grid·patch) for Qwen2.5-VL."""
    from . import prompts

    if isinstance(processor, Qwen2_5_VLProcessor):
        resized = prompts.resized_from_grid(image_grid_thw, processor.image_processor.patch_size)
        return prompts.box_scale("qwen2.5vl", resized)
    return prompts.box_scale("qwen2vl")


def predict(
    model,
    processor,
    dataset: Iterable[dict],
    prompt: str | Callable[[dict], str],
    out_path: str | Path | None = None,
    system: str | None = SFT_SYSTEM_PROMPT,
    batch_size: int = 16,
    max_new_tokens: int = 256,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    num_return_sequences: int = 1,
    limit: int | None = None,
    progress: bool = True,
) -> list[dict]:
    """Generate one completion per image (or ``num_return_sequences`` samples) and write ``predictions.jsonl``.

    Rows need ``image`` (PIL) and ``image_id``. ``prompt`` is a string or a function of the row (e.g. the closed
    prompt with that dataset's vocabulary); ``system`` the system turn (None: the template's default). Greedy by default (evaluation); ``do_sample`` with ``temperature``,
    ``top_p``, ``top_k`` for analysis. Each output line: ``image_id``, ``completion`` (raw text, special tokens
    removed), ``box_scale`` (the frame of its boxes), ``sample`` (index among the samples of that image).
    """
    import torch
    from tqdm.auto import tqdm

    rows = list(dataset) if limit is None else [r for _, r in zip(range(limit), dataset)]
    model.eval()
    out: list[dict] = []
    fh = None
    if out_path is not None:
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        fh = open(out_path, "w")
    gen_kwargs: dict[str, Any] = dict(max_new_tokens=max_new_tokens, do_sample=do_sample,
                                      num_return_sequences=num_return_sequences)
    if do_sample:
        gen_kwargs.update(temperature=temperature, top_p=top_p, top_k=top_k)
    else:  # silence "temperature is set but do_sample=False" from checkpoints whose generation config samples
        gen_kwargs.update(temperature=None, top_p=None, top_k=None)
    device = next(model.parameters()).device
    try:
        for start in tqdm(range(0, len(rows), batch_size), desc="predict", disable=not progress,
                          total=-(-len(rows) // batch_size)):
            batch = rows[start:start + batch_size]
            texts = [
                processor.apply_chat_template(
                    prompt_messages(prompt(r) if callable(prompt) else prompt, system),
                    tokenize=False, add_generation_prompt=True,
                )
                for r in batch
            ]
            images = [r["image"].convert("RGB") for r in batch]
            inputs = processor(text=texts, images=images, padding=True, padding_side="left", return_tensors="pt")
            inputs = inputs.to(device)
            with torch.inference_mode():
                generated = model.generate(**inputs, **gen_kwargs)
            new_tokens = generated[:, inputs["input_ids"].shape[1]:]
            completions = processor.batch_decode(new_tokens, skip_special_tokens=True)
            for j, text in enumerate(completions):
                i = j // num_return_sequences
                record = {
                    "image_id": str(batch[i]["image_id"]),
                    "completion": text,
                    "box_scale": list(box_scale(processor, inputs["image_grid_thw"][i])),
                    "sample": j % num_return_sequences,
                }
                out.append(record)
                if fh is not None:
                    fh.write(json.dumps(record) + "\n")
    finally:
        if fh is not None:
            fh.close()
    return out


def read_predictions(path: str | Path) -> list[dict]:
    """The records :func:`predict` wrote."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


# -- evaluation ------------------------------------------------------------------------------------------------------
def evaluate_model(model, processor, rows: Sequence[dict], vocabulary=None, system: str | None = SFT_SYSTEM_PROMPT,
                   out_path: str | Path | None = None, batch_size: int = 32, max_new_tokens: int = 400,
                   progress: bool = False) -> dict[str, Any]:
    """Greedy-decode ``rows`` with the scene-graph prompt (closed iff ``vocabulary``) and score the completions
    with :func:`sgglib.metrics.evaluate` in each prediction's own box frame. Exact name matching: the synthetic
    world is closed-vocabulary; real data with open names should call ``metrics.evaluate`` with ``vocabulary=``."""
    from .metrics import evaluate
    from .prompts import user_prompt

    records = predict(model, processor, rows, user_prompt(vocabulary), out_path=out_path, system=system,
                      batch_size=batch_size, max_new_tokens=max_new_tokens, progress=progress)
    preds = {r["image_id"]: r["completion"] for r in records}
    scales = {r["image_id"]: tuple(r["box_scale"]) for r in records}
    gts = {str(r["image_id"]): {k: r[k] for k in ("width", "height", "objects", "relationships")} for r in rows}
    return evaluate(preds, gts, pred_box_scale=scales, similarity="exact")


@dataclass
class ZeroShotConfig:
    """Zero-shot baselines (PAPER.md §6, first rows): one model, each prompt kind, one split."""

    model: str = DEFAULT_MODEL
    """hub id, local directory, or an embedded name"""
    dataset: str = "synthetic"
    """``sgglib.data.load_sgg`` source"""
    split: str = "val"
    """split to evaluate"""
    limit: int = 200
    """images evaluated (0 = the whole split)"""
    prompts: tuple[str, ...] = ("open", "closed")
    """prompt kinds to compare: ``open`` (no vocabulary) and/or ``closed`` (the dataset's names listed)"""
    batch_size: int = 32
    """images per generate() call"""
    max_new_tokens: int = 400
    """generation budget (PAPER.md §3 used 2048 for the 2B/7B models on VG150)"""
    dtype: str = "auto"
    """weights dtype (``bfloat16`` on GPU for hub models)"""
    run_dir: str | None = None
    """run directory (relative paths go under reports/); None = reports/zero-shot-<timestamp>"""

    def validate(self) -> "ZeroShotConfig":
        bad = [p for p in self.prompts if p not in ("open", "closed")]
        if bad or not self.prompts:
            raise ValueError(f"prompts must be a non-empty subset of (open, closed), got {self.prompts!r}")
        if self.limit < 0 or self.batch_size < 1 or self.max_new_tokens < 1:
            raise ValueError("limit >= 0, batch_size >= 1 and max_new_tokens >= 1 required")
        return self


def zero_shot(cfg: ZeroShotConfig, run_dir: str | Path, rows=None) -> dict[str, dict[str, Any]]:
    """Evaluate ``cfg.model`` with each prompt kind; writes ``predictions-<kind>.jsonl``, ``metrics-<kind>.json``
    and ``metrics.json`` (all kinds) into ``run_dir``; returns ``{kind: metrics}``."""
    from . import data

    run_dir = Path(run_dir)
    if rows is None:
        rows = data.load_sgg(cfg.dataset, split=cfg.split)
    n = len(rows) if not cfg.limit else min(cfg.limit, len(rows))
    rows = [rows[i] for i in range(n)]
    model, processor = load_model_and_processor(cfg.model, dtype=cfg.dtype)
    results = {}
    for kind in cfg.prompts:
        vocab = data.vocabulary(cfg.dataset) if kind == "closed" else None
        metrics = evaluate_model(model, processor, rows, vocab, out_path=run_dir / f"predictions-{kind}.jsonl",
                                 batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens, progress=True)
        write_json(run_dir / f"metrics-{kind}.json", metrics)
        results[kind] = metrics
    write_json(run_dir / "metrics.json", results)
    return results


# -- reading predictions back ----------------------------------------------------------------------------------------
SUMMARY_KEYS = (("failure_rate", "FR"), ("ap50", "AP@50"), ("recall", "Recall"), ("mean_recall", "mRecall"))


def summary_table(results: dict[str, dict[str, Any]]) -> str:
    """One line per named result (``{"open": metrics, …}``) in the paper's table layout: FR / AP@50 / R / mR (%)."""
    width = max([len(k) for k in results] + [5])
    lines = [f"{'':<{width}}" + "".join(f"{label:>9}" for _, label in SUMMARY_KEYS)]
    for name, m in results.items():
        lines.append(f"{name:<{width}}" + "".join(f"{m.get(k, float('nan')):>9.2f}" for k, _ in SUMMARY_KEYS))
    return "\n".join(lines)


def failure_examples(records: Sequence[dict], n: int = 5, chars: int = 160) -> list[dict[str, str]]:
    """The first ``n`` completions that do not parse, with the parser's named reason and detail."""
    from .parse import parse_completion

    out = []
    for r in records:
        result = parse_completion(r["completion"])
        if result.failure is not None:
            text = r["completion"]
            out.append({"image_id": r["image_id"], "failure": result.failure.value, "detail": result.detail,
                        "completion": text[:chars] + ("…" if len(text) > chars else "")})
            if len(out) == n:
                break
    return out


def draw_prediction(row: dict, record: dict, figsize: tuple[float, float] = (9, 4.5)):
    """Ground truth (left) and the parsed prediction (right, boxes mapped back to image pixels); a Figure."""
    from matplotlib.figure import Figure

    from .parse import parse_completion
    from .viz import category_colors, draw_scene_graph

    fig = Figure(figsize=figsize, layout="constrained")
    ax_gt, ax_pred = fig.subplots(1, 2)
    result = parse_completion(record["completion"])
    cats = [o["id"].rsplit(".", 1)[0] for o in row["objects"]]
    pred = None
    if result.graph is not None:
        sx, sy = record["box_scale"]
        pred = result.graph.scaled(sx / row["width"], sy / row["height"])
        cats += pred.categories
    colors = category_colors(cats)
    draw_scene_graph(row["image"], row, ax=ax_gt, title=f"{row['image_id']}: ground truth", colors=colors)
    if pred is not None:
        draw_scene_graph(row["image"], pred, ax=ax_pred, title="prediction", colors=colors)
    else:
        ax_pred.imshow(row["image"])
        ax_pred.set_axis_off()
        ax_pred.set_title(f"prediction failed: {result.failure.value}")
    return fig
