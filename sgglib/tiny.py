"""The embedded default model: a genuine tiny Qwen2-VL built from a config, and its "base" pre-training.

Why (issue 4): the paper starts from Qwen2-VL-Instruct, a model that knows images and JSON but was never trained
to write scene graphs, so its zero-shot graphs mostly fail (PAPER.md §6: FR 60%). Nothing can be downloaded here, so
:func:`build_tiny_model` builds a ``Qwen2VLForConditionalGeneration`` from a small config with a tokenizer trained
on the task's text (:mod:`sgglib.tokenizer`) and saves it like a hub checkpoint (``tiny-init``), and
:func:`pretrain_base` teaches it the synthetic world through *auxiliary* tasks (:func:`aux_examples`: list the
objects, ground one object, detect in another box format, describe relations in words or as JSON without objects) —
never the whole scene-graph task itself — giving ``tiny-base``, the stand-in for the Instruct model. Both live in
``data/models/`` and load with :func:`sgglib.models.load_model_and_processor` exactly as a hub id would.

Pixel normalisation is centred on the world's background (``image_mean`` = mean background colour, ``image_std``
0.25): FACTS.md measured that CLIP's mean/std let the component shared by all visual tokens grow ~180× the per-token
content in the bias-free patch embedding, so every image gave the same output (AP@50 0.1 vs 63).

Regenerate both with one command (seeded; the configs are written beside the weights; ~7 min on 2 cores)::

    python -m sgglib.sft --pretrain-base
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from . import prompts
from .models import SGGQwen2_5_VLProcessor, SGGQwen2VLProcessor, resolve_model
from .prompts import SFT_SYSTEM_PROMPT
from .runs import data_dir, write_json


@dataclass
class TinyModelConfig:
    """Architecture of the embedded default (FACTS.md: h128 L2 learned the toy world best per minute on 2 cores)."""

    hidden_size: int = 128
    """text decoder width; the vision merger projects to it"""
    num_layers: int = 2
    """text decoder layers"""
    num_heads: int = 4
    """attention heads (head_dim = hidden_size / num_heads)"""
    num_kv_heads: int = 2
    """grouped-query KV heads"""
    intermediate_size: int = 256
    """text MLP width"""
    mrope_section: tuple[int, int, int] = (4, 6, 6)
    """multimodal RoPE split (temporal, height, width); must sum to head_dim / 2"""
    vision_depth: int = 2
    """vision transformer blocks"""
    vision_embed_dim: int = 64
    """vision transformer width"""
    vision_heads: int = 4
    """vision attention heads"""
    vocab_size: int = 2000
    """BPE vocabulary before the special and number tokens are added"""
    bpe_across_words: bool = True
    """let BPE merge across spaces and punctuation (no GPT-2 split regex): in this closed world whole JSON
    fragments such as ``", "bbox": [`` become one token, and answers are 2.4× shorter (165 vs 402 tokens)"""
    max_token_chars: int | None = 24
    """longest BPE token in characters. Uncapped, BPE across words on this closed world merged whole prompt
    sentences into single tokens (one 400-character token held both name lists) that the base model read nowhere
    else; capped at 24, the synthetic SFT answers are ~10 % longer (120 vs 109 tokens;
    ``benchmarks/tokenizer_coverage.py``)"""
    image_mean: tuple[float, float, float] | None = None
    """pixel mean in [0, 1]; None = the synthetic world's background mean (background-centred, FACTS.md)"""
    image_std: float = 0.25
    """pixel std (FACTS.md: 0.25 around the background mean)"""
    max_pixels: int = 224 * 224
    """largest image the processor keeps without downscaling"""
    seed: int = 0
    """weight initialisation seed"""
    arch: str = "qwen2_vl"
    """``qwen2_vl`` (Qwen2VLForConditionalGeneration) or ``qwen2_5_vl`` (windowed-attention vision tower)"""


def _world_background_mean() -> tuple[float, float, float]:
    """The default synthetic world's mean background colour in [0, 1] (owned by :mod:`sgglib.synthetic`)."""
    from . import synthetic

    return synthetic.background_mean(synthetic.WorldConfig())


def default_corpus(n_images: int = 1000, seed: int = 0) -> list[str]:
    """Text the tokenizer is trained on: prompts, SFT targets and auxiliary-task text of synthetic train images."""
    from . import data

    vocab = data.vocabulary("synthetic", seed=seed)
    rows = data.load_sgg("synthetic", split="train", seed=seed)
    # Each prompt once: repeated as often as it is read in training, BPE turned its sentences into tokens of their
    # own, which the base model (pre-trained on other prompts) never trained
    texts = [prompts.open_prompt(), prompts.closed_prompt(vocab.categories, vocab.predicates),
             prompts.SFT_SYSTEM_PROMPT, prompts.RL_SYSTEM_PROMPT]
    rng = random.Random(seed)
    for i in range(min(n_images, len(rows))):
        row = rows[i]
        texts.append(prompts.sft_target(row))
        texts.extend(ex["prompt"][-1]["content"][-1]["text"] + ex["completion"][0]["content"][0]["text"]
                     for ex in aux_examples(row, rng, vocabulary=vocab))
    return texts


def build_tiny_model(out_dir: str | Path, config: TinyModelConfig | None = None, texts: Sequence[str] | None = None):
    """Build the embedded Qwen2-VL from ``config``, save it like a hub checkpoint in ``out_dir``; returns the path.

    ``texts`` trains the tokenizer (default: :func:`default_corpus`). Writes ``tiny_config.json`` beside the
    weights so the build is reproducible from the directory alone.
    """
    import torch
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2VLConfig,
                              Qwen2VLForConditionalGeneration, Qwen2VLImageProcessorPil)

    from .tokenizer import train_tokenizer

    config = config or TinyModelConfig()
    out = Path(out_dir)
    tokenizer = train_tokenizer(texts if texts is not None else default_corpus(), vocab_size=config.vocab_size,
                                use_regex=not config.bpe_across_words, max_token_length=config.max_token_chars)
    head_dim = config.hidden_size // config.num_heads
    if sum(config.mrope_section) * 2 != head_dim:
        raise ValueError(f"mrope_section {config.mrope_section} must sum to head_dim/2 = {head_dim // 2}")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>",
                                                            "<|vision_end|>", "<|endoftext|>", "<|im_end|>")}
    if config.arch == "qwen2_vl":
        config_cls, model_cls, processor_cls = Qwen2VLConfig, Qwen2VLForConditionalGeneration, SGGQwen2VLProcessor
        vision = dict(depth=config.vision_depth, embed_dim=config.vision_embed_dim, num_heads=config.vision_heads,
                      hidden_size=config.hidden_size)
    elif config.arch == "qwen2_5_vl":
        config_cls, model_cls = Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
        processor_cls = SGGQwen2_5_VLProcessor
        vision = dict(depth=config.vision_depth, hidden_size=config.vision_embed_dim, num_heads=config.vision_heads,
                      intermediate_size=2 * config.vision_embed_dim, out_hidden_size=config.hidden_size,
                      fullatt_block_indexes=[config.vision_depth - 1], window_size=112)
    else:
        raise ValueError(f"arch must be qwen2_vl or qwen2_5_vl, got {config.arch!r}")
    model_config = config_cls(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=config.hidden_size,
            intermediate_size=config.intermediate_size,
            num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads,
            num_key_value_heads=config.num_kv_heads,
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 1e4, "mrope_section": list(config.mrope_section)},
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
            tie_word_embeddings=True,
        ),
        vision_config=dict(**vision, patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(config.seed)
    model = model_cls(model_config)
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.do_sample = False
    mean = config.image_mean if config.image_mean is not None else _world_background_mean()
    image_processor = Qwen2VLImageProcessorPil(
        image_mean=list(mean),
        image_std=[config.image_std] * 3,
        min_pixels=28 * 28 * 4,
        max_pixels=config.max_pixels,
        patch_size=14,
        merge_size=2,
        temporal_patch_size=2,
    )
    processor = processor_cls(image_processor, tokenizer, chat_template=tokenizer.chat_template)
    # written beside the target and moved into place at the end: an interrupted build leaves no half checkpoint
    # that resolve_model would take for a finished one
    tmp = out.with_name(f".{out.name}.building-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)  # tokenizer.json + chat template at top level, where AutoTokenizer looks
    write_json(tmp / "tiny_config.json", {**dataclasses.asdict(config), "image_mean": list(mean),
                                          "parameters": sum(p.numel() for p in model.parameters())})
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out



# -- the base model: auxiliary tasks  -----------------------------------------------------------------------------
def _assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]


def aux_examples(row: dict, rng: random.Random | None = None, system: str | None = SFT_SYSTEM_PROMPT,
                 xywh_prob: float = 0.5, vocabulary=None) -> list[dict]:
    """Auxiliary tasks on one image, for the base model (each a part of the scene-graph task, never the whole):

    * ``list``: name the objects, comma-separated, no boxes;
    * ``ground``: the box of one named object as ``[x1, y1, x2, y2]`` on the 0–1000 grid;
    * ``detect``: every object as JSON with an empty relation list, boxes on the 0–1000 grid either as
      ``[x, y, width, height]`` (another convention; chosen with probability ``xywh_prob``) or as
      ``[x1, y1, x2, y2]``, the prompt saying which;
    * ``describe``: the relations as plain sentences (``"red circle.1 is next to blue square.1."``);
    * ``relate``: the relations as JSON ``{"relationships": [...]}`` with no object list and no boxes — not a
      scene graph (the parser's ``missing_keys``).

    With a ``vocabulary``, half of the detect, describe and relate prompts are long forms written like the
    scene-graph prompt: its object clause, name lists and worked example, each cut down to the part the task asks
    for. A base that has read these answers the scene-graph prompt with one of the parts it knows — a detect-style
    graph without relations or relations without objects — as an Instruct model answers a new schema with the
    formats it has seen.
    """
    rng = rng or random.Random(0)
    grid = [(o["id"], prompts.to_model_box(o["bbox"], row["width"], row["height"])) for o in row["objects"]]
    names = [oid.rsplit(".", 1)[0] for oid, _ in grid]
    oid, box = grid[rng.randrange(len(grid))] if grid else ("nothing.1", [0, 0, 0, 0])
    # "relationships": [] makes a detect-style answer a *valid* (if poor) scene graph, and xywh boxes read as
    # xyxy are mostly wrong: what a zero-shot base would write if it answered the scene-graph prompt like a detector
    xywh = rng.random() < xywh_prob

    def convention(b):
        return [b[0], b[1], b[2] - b[0], b[3] - b[1]] if xywh else list(b)

    detect = {"objects": [{"id": i, "bbox": convention(b)} for i, b in grid], "relationships": []}
    relations = [{k: r[k] for k in ("subject", "predicate", "object")} for r in row["relationships"]]
    box_words = "[x, y, width, height]" if xywh else "[x1, y1, x2, y2]"
    sentences = " ".join(f"{r['subject']} is {r['predicate']} {r['object']}." for r in row["relationships"])
    image = row["image"].convert("RGB")
    detect_prompt = (f"Detect every object. Answer in JSON: an id (category.number) and a box {box_words} on a "
                     "0-1000 grid for each.")
    describe_prompt = "Describe how the objects relate to each other, one sentence per object."
    relate_prompt = ('List the relations between the objects in JSON: {"relationships": [...]}, each with a '
                     "subject, a predicate and an object id (category.number).")
    # Long forms share the scene-graph prompt's wording: with BPE merging across words, words the base never reads
    # are tokens it never trained, and its zero-shot output degenerates on them (measured: FR 100 %, "ve ve ]]")
    if vocabulary is not None and rng.random() < 0.5:
        names_line = "Object names must come from this list: [" + ", ".join(vocabulary.categories) + "].\n"
        predicates_line = "Predicates must come from this list: [" + ", ".join(vocabulary.predicates) + "].\n"
        example_objects = [{"id": o["id"], "bbox": convention(o["bbox"])} for o in prompts.EXAMPLE_GRAPH["objects"]]
        detect_prompt = ("Generate a list of the objects in this image as JSON.\n"
                         + prompts.OBJECTS_CLAUSE.replace("[x1, y1, x2, y2]", box_words) + names_line
                         + '"relationships": an empty list.\nExample:\n'
                         + prompts.example_block({"objects": example_objects, "relationships": []}))
        describe_prompt = ("Describe how the objects relate to each other, one sentence per relation.\n"
                           + predicates_line.rstrip("\n"))
        relate_prompt = ("List the relations in this image as JSON.\n"
                         '"relationships": each {"subject": id, "predicate": relation, "object": id}, ids written '
                         'as "name.number" ("person.1").\n' + predicates_line + "Example:\n"
                         + prompts.example_block({"relationships": prompts.EXAMPLE_GRAPH["relationships"]}))
    tasks = [
        ("What objects are in the image? Name them, separated by commas.", ", ".join(names) or "nothing"),
        (f"Where is {oid}? Give its box as [x1, y1, x2, y2] on a 0-1000 grid.", json.dumps(box)),
        (detect_prompt, prompts.example_block(detect)),
        (describe_prompt, sentences or "Nothing."),
        (relate_prompt, prompts.example_block({"relationships": relations})),
    ]
    return [{"images": [image], "prompt": prompts.prompt_messages(p, system), "completion": _assistant(t)}
            for p, t in tasks]


PRETRAIN_STEPS = 2500
"""base pre-training steps of the committed ``data/models/tiny-base`` (~7 min on 2 cores; aux-task loss 0.31)"""


def pretrain_base(out_dir: str | Path | None = None, max_steps: int = PRETRAIN_STEPS, seed: int = 0,
                  train_rows=None, run_dir: str | None = None, **overrides) -> Path:
    """Build ``tiny-init`` and pre-train it on :func:`aux_examples` into ``data/models/tiny-base``.

    The result knows the images, names, the 0–1000 grid, JSON detection and JSON relations, but has never been
    asked for a whole scene graph. Measured (``notebooks/02``, 200 val images, greedy;
    ``reports/reference/zero_shot_summary.json``): zero-shot it fails 73 % of the closed-prompt and 80 % of the
    open-prompt images (invalid or truncated JSON, relations without objects), the rest are graphs with few right
    boxes (AP@50 0.004 closed, 0.06 open) and no right relation — the shape of Qwen2-VL-2B-Instruct's row
    (PAPER.md §6: FR 60, AP@50 2.2, Recall 0.07). This base is one draw, not a tuned optimum: with optional lines in
    the long-form prompts, or 4,000 steps instead of 2,500, the zero-shot base degenerated to FR 100 % again
    (measured), so the zero-shot row of a 1 M-parameter model is fragile; the earlier tokenizer (prompts repeated
    ×100, uncapped tokens) with the earlier aux tasks gave FR 100 % with every base tried. The committed
    checkpoint lets ``make demo`` skip this step; ``pretrain_config.json`` beside it records how it was made.
    """
    from .sft import SFTRunConfig, train

    out = Path(out_dir) if out_dir is not None else data_dir("models", "tiny-base")
    cfg = SFTRunConfig(model=resolve_model("tiny-init"), max_steps=max_steps, seed=seed, eval_steps=0,
                       run_dir=run_dir or f"pretrain-base-seed{seed}", save_steps=100, **overrides)
    result = train(cfg, train_rows=train_rows, val_rows=train_rows, kind="aux")
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(Path(result["run_dir"]) / "final", out, ignore=shutil.ignore_patterns("training_args.bin"))
    record = {**dataclasses.asdict(cfg), "model": "tiny-init", "run_dir": None, "global_step": result["global_step"],
              "command": f"python -m sgglib.sft --pretrain-base --max-steps {max_steps} --seed {seed}"}
    write_json(out / "pretrain_config.json", record)
    return out
