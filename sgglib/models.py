"""Models: load Qwen2-VL / Qwen2.5-VL (hub, local, or the embedded default), decode batches, score the decodes.

One code path for every model: a hub checkpoint such as ``Qwen/Qwen2-VL-2B-Instruct`` and the embedded default are
both directories that :func:`load_model_and_processor` reads with ``from_pretrained``. The embedded default
(:mod:`sgglib.embedded`) is a genuine ``Qwen2VLForConditionalGeneration`` with a task-trained tokenizer and the
stock PIL image processor (``docs/method.md#the-embedded-default``).

Processors are built explicitly, never through ``AutoProcessor``: without a working torchvision, transformers
cannot construct the stock ``Qwen2VLProcessor`` (its video processor needs torchvision) and ``AutoProcessor``
silently returns a bare tokenizer, whose ``images=`` argument is then ignored. :class:`SGGQwen2VLProcessor` is the
stock class minus the video processor; :func:`load_processor` asserts the type it returns.

Names: ``"tiny-init"`` (random weights, built by ``python -m sgglib.embedded.model``) and ``"tiny-base"`` (the
committed stand-in for Qwen2-VL-Instruct, ``python -m sgglib.embedded.pretrain``) resolve to
``data/models/<name>``; anything else is a local directory or a hub id (nothing here downloads unless you pass a
hub id).
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from transformers import Qwen2_5_VLProcessor, Qwen2VLProcessor

from . import prompts
from .metrics import compute_metrics
from .runs import data_dir

EMBEDDED = ("tiny-init", "tiny-base")
DEFAULT_MODEL = "tiny-base"


# -- processors without torchvision ----------------------------------------------------------------------------------
class _SavesStockLoadable:
    """Saving writes a checkpoint the stock processor classes also read: ``processor_config.json`` names the stock
    class and carries a ``video_processor`` entry (the image processor's settings). Without that entry transformers'
    stock ``Qwen2VLProcessor.from_pretrained`` — the path taken wherever torchvision works, i.e. on GPU machines —
    stops with "Can't load video processor". Videos themselves are not supported."""

    stock_class = "Qwen2VLProcessor"
    video_processor_type = "Qwen2VLVideoProcessor"

    def save_pretrained(self, save_directory, *args, **kwargs):
        out = super().save_pretrained(save_directory, *args, **kwargs)
        path = Path(save_directory) / "processor_config.json"
        config = json.loads(path.read_text()) if path.exists() else {}
        image = config.get("image_processor") or self.image_processor.to_dict()
        video = {k: v for k, v in image.items() if k not in ("image_processor_type", "_processor_class")}
        config.setdefault("video_processor", {**video, "video_processor_type": self.video_processor_type})
        config["processor_class"] = self.stock_class
        path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        return out


class SGGQwen2VLProcessor(_SavesStockLoadable, Qwen2VLProcessor):
    """``Qwen2VLProcessor`` minus the video processor (which needs torchvision). Images and text behave exactly as in
    the stock class; saved checkpoints load with this class and with the stock one. Videos are not supported."""

    image_processor_class = "Qwen2VLImageProcessorPil"

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, video_processor=None, chat_template=chat_template, **kwargs)


class SGGQwen2_5_VLProcessor(_SavesStockLoadable, Qwen2_5_VLProcessor):
    """The same for Qwen2.5-VL."""

    image_processor_class = "Qwen2VLImageProcessorPil"
    stock_class = "Qwen2_5_VLProcessor"

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, video_processor=None, chat_template=chat_template, **kwargs)


def has_torchvision() -> bool:
    """True if torchvision imports *and works* (a CUDA-linked wheel on a CPU-only machine fails to import)."""
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


def load_processor(name_or_path: str | Path, min_pixels: int | None = None, max_pixels: int | None = None,
                   stock: bool | None = None):
    """The processor for a Qwen2-VL / Qwen2.5-VL checkpoint; raises ``TypeError`` if we got a bare tokenizer.

    ``min_pixels``/``max_pixels`` bound the resized image (None or 0: the checkpoint's; the paper: 512·28·28 for
    GRPO, 1024·28·28 for evaluation; ``docs/method.md#box-conventions``). ``stock``: transformers' own processor
    class (torchvision image and video processors), the default where torchvision works; else the torchvision-free
    subclass with the PIL image processor.
    """
    kwargs = {k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v}
    path = resolve_model(name_or_path)
    qwen25 = _model_type(path) == "qwen2_5_vl"
    if has_torchvision() if stock is None else stock:
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
    """Map ``None``/embedded names to ``data/models/<name>``; other names pass through (directories, hub ids)."""
    name = str(name_or_path or DEFAULT_MODEL)
    if name in EMBEDDED:
        path = data_dir("models", name)
        if not (path / "config.json").exists():
            module = "model" if name == "tiny-init" else "pretrain"
            raise FileNotFoundError(f"{path} does not exist; build it with `python -m sgglib.embedded.{module}`")
        return str(path)
    return name


def attention_implementation(name: str = "auto", half: bool = False) -> str:
    """``auto``: ``flash_attention_2`` on a CUDA GPU where the flash-attn package is installed and the compute is in
    half precision (``half``: bf16/fp16 weights, or bf16 autocast in training — flash-attn has no fp32 kernels), else
    ``sdpa``. An explicit ``flash_attention_2`` without flash-attn falls back to ``sdpa`` with a warning (it is an
    optional GPU dependency; loading would otherwise fail)."""
    import torch

    flash = torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None
    if name == "auto":
        return "flash_attention_2" if flash and half else "sdpa"
    if name == "flash_attention_2" and not flash:
        warnings.warn("flash_attention_2 needs a CUDA GPU and `pip install flash-attn`; using sdpa", stacklevel=2)
        return "sdpa"
    return name


def load_model_and_processor(
    name_or_path: str | Path | None = None,
    dtype: str = "auto",
    attn_implementation: str = "auto",
    lora: Any = None,
    device: str | None = None,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    autocast: bool = False,
):
    """Load a Qwen2-VL or Qwen2.5-VL model and its processor from a hub id, a directory or an embedded name.

    ``dtype``: ``"auto"`` (the checkpoint's), ``"float32"``, ``"bfloat16"``…; ``attn_implementation``: ``"auto"``
    (:func:`attention_implementation`; ``autocast``: a trainer will run the compute in bf16), ``"sdpa"``,
    ``"eager"``, ``"flash_attention_2"``. ``device``: where the
    weights go (``"auto"``: the GPU if there is one; None: where they load, the CPU — trainers move them
    themselves). ``lora``: ``None`` (full model) or a PEFT ``LoraConfig`` / dict of its fields; the returned model is
    then a ``PeftModel`` with only the adapters trainable.
    """
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLForConditionalGeneration

    path = resolve_model(name_or_path)
    cls = Qwen2_5_VLForConditionalGeneration if _model_type(path) == "qwen2_5_vl" else Qwen2VLForConditionalGeneration
    torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    half = autocast or dtype in ("bfloat16", "float16")
    model = cls.from_pretrained(path, dtype=torch_dtype, attn_implementation=attention_implementation(attn_implementation,
                                                                                                      half))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else None
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


PARAMETER_GROUPS = ("vision", "embedding", "language")


def parameter_group(name: str) -> str:
    """The part of a Qwen2-VL that a parameter belongs to, by its name: ``vision`` (the vision tower and its
    merger), ``embedding`` (the token embedding, which the embedded model ties to its LM head; an untied
    ``lm_head`` counts too) or ``language`` (the decoder layers and their norms)."""
    if "visual" in name:
        return "vision"
    if "embed_tokens" in name or "lm_head" in name:
        return "embedding"
    return "language"


# -- inference -------------------------------------------------------------------------------------------------------
def box_convention(processor) -> str:
    """``"qwen2.5vl"`` (boxes in resized-input pixels) for a Qwen2.5-VL processor, else ``"qwen2vl"`` (0–1000)."""
    return "qwen2.5vl" if isinstance(processor, Qwen2_5_VLProcessor) else "qwen2vl"


def pixel_bounds(processor) -> tuple[int, int]:
    """``(min_pixels, max_pixels)`` the processor resizes images into (what Qwen2.5-VL's box frame depends on)."""
    ip = processor.image_processor
    min_px = ip.min_pixels if getattr(ip, "min_pixels", None) else ip.size["shortest_edge"]
    max_px = ip.max_pixels if getattr(ip, "max_pixels", None) else ip.size["longest_edge"]
    return int(min_px), int(max_px)


def box_scale(processor, image_grid_thw) -> tuple[float, float]:
    """The frame a model writes boxes in (``docs/method.md#box-conventions``): the 0–1000 grid for Qwen2-VL,
    resized-input pixels (grid·patch) for Qwen2.5-VL."""
    convention = box_convention(processor)
    resized = None
    if convention == "qwen2.5vl":
        resized = prompts.resized_from_grid(image_grid_thw, processor.image_processor.patch_size)
    return prompts.box_scale(convention, resized)


def predict(
    model,
    processor,
    dataset: Iterable[dict],
    prompt: str | Callable[[dict], str],
    out_path: str | Path | None = None,
    system: str | None = prompts.SFT_SYSTEM_PROMPT,
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
    prompt with that dataset's vocabulary); ``system`` the system turn (None: the template's default). Greedy by
    default (evaluation); ``do_sample`` with ``temperature``, ``top_p``, ``top_k`` for analysis. Each output line: ``image_id``, ``completion`` (raw text, special tokens
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
                    prompts.prompt_messages(prompt(r) if callable(prompt) else prompt, system),
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


# -- evaluation ------------------------------------------------------------------------------------------------------
def decode_and_score(model, processor, rows: Sequence[dict], vocabulary=None,
                     system: str | None = prompts.SFT_SYSTEM_PROMPT, out_path: str | Path | None = None,
                     batch_size: int = 32, max_new_tokens: int = 400, progress: bool = False) -> dict[str, Any]:
    """Greedy-decode ``rows`` with the scene-graph prompt (closed iff ``vocabulary``) and score the completions
    with :func:`sgglib.metrics.compute_metrics` in each prediction's own box frame. Exact name matching: the
    synthetic world is closed-vocabulary; real data with open names should call ``compute_metrics`` with
    ``vocabulary=``."""
    records = predict(model, processor, rows, prompts.user_prompt(vocabulary), out_path=out_path, system=system,
                      batch_size=batch_size, max_new_tokens=max_new_tokens, progress=progress)
    preds = {r["image_id"]: r["completion"] for r in records}
    scales = {r["image_id"]: tuple(r["box_scale"]) for r in records}
    gts = {str(r["image_id"]): {k: r[k] for k in ("width", "height", "objects", "relationships")} for r in rows}
    return compute_metrics(preds, gts, pred_box_scale=scales, similarity="exact")
