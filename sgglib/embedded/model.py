"""The embedded default model: a genuine tiny Qwen2-VL built from a config (``docs/method.md#the-embedded-default``).

The paper starts from Qwen2-VL-Instruct; nothing can be downloaded here, so :func:`build_tiny_model` builds a
``Qwen2VLForConditionalGeneration`` from a small config with a tokenizer trained on the task's text
(:mod:`sgglib.embedded.tokenizer`) and saves it like a hub checkpoint: ``data/models/tiny-init``, random weights.
:mod:`sgglib.embedded.pretrain` turns it into ``tiny-base``, the stand-in for the Instruct model. Both load with
:func:`sgglib.models.load_model_and_processor` exactly as a hub id would.

Pixel normalisation is centred on the world's background (``image_mean`` = its mean background colour,
``image_std`` 0.25): with CLIP's mean/std the component shared by all visual tokens grew far larger than the
per-token content in the bias-free patch embedding, and every image gave the same output
(``docs/findings.md#the-embedded-model-and-world``).

Build ``tiny-init`` (seeded; its config is written beside the weights; seconds)::

    python -m sgglib.embedded.model
"""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .. import data, prompts
from ..config import parse_cli
from ..data import synthetic
from ..models import SGGQwen2_5_VLProcessor, SGGQwen2VLProcessor
from ..runs import data_dir, write_json
from .aux_tasks import aux_examples
from .tokenizer import train_tokenizer


@dataclass
class TinyModelConfig:
    """Architecture of a Qwen2-VL built from a config: the embedded default (h128 × 2 layers learned the world best
    per minute on 2 cores, ``docs/findings.md#the-embedded-model-and-world``), or real dimensions
    (:data:`QWEN2_VL_2B`) for smoke tests and benchmarks."""

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
    mrope_section: list[int] = field(default_factory=lambda: [4, 6, 6])
    """multimodal RoPE split (temporal, height, width); must sum to head_dim / 2"""
    vision_depth: int = 2
    """vision transformer blocks"""
    vision_embed_dim: int = 64
    """vision transformer width"""
    vision_heads: int = 4
    """vision attention heads"""
    vocab_size: int = 2000
    """BPE vocabulary before the special and number tokens are added"""
    lm_vocab_size: int = 0
    """rows of the embedding table and LM head; 0 = the tokenizer's size (Qwen2-VL's real table: 151,936)"""
    rope_theta: float = 1e4
    """RoPE base of the text decoder (Qwen2-VL-2B: 1e6)"""
    bpe_across_words: bool = True
    """let BPE merge across spaces and punctuation (no GPT-2 split regex): in this closed world whole JSON
    fragments such as ``", "bbox": [`` become one token and answers get much shorter
    (``docs/findings.md#the-embedded-tokenizer``)"""
    max_token_chars: int | None = 24
    """longest BPE token in characters; uncapped, BPE merged whole prompt sentences into tokens the base model read
    nowhere else (``docs/findings.md#the-embedded-tokenizer``)"""
    image_mean: list[float] | None = None
    """pixel mean in [0, 1]; None = the synthetic world's background mean (background-centred)"""
    image_std: float = 0.25
    """pixel std around that mean"""
    max_pixels: int = 224 * 224
    """largest image the processor keeps without downscaling"""
    seed: int = 0
    """weight initialisation seed"""
    arch: str = "qwen2_vl"
    """``qwen2_vl`` (Qwen2VLForConditionalGeneration) or ``qwen2_5_vl`` (windowed-attention vision tower)"""


def _world_background_mean() -> tuple[float, float, float]:
    """The default synthetic world's mean background colour in [0, 1] (owned by :mod:`sgglib.data.synthetic`)."""
    return synthetic.background_mean(synthetic.WorldConfig())


def default_corpus(n_images: int = 1000, seed: int = 0) -> list[str]:
    """Text the tokenizer is trained on: prompts, SFT targets and auxiliary-task text of synthetic train images."""
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


def model_config(config: TinyModelConfig, tokenizer):
    """``(transformers config, model class, processor class)`` of ``config``, with ``tokenizer``'s special-token
    ids (Qwen2-VL or Qwen2.5-VL by ``config.arch``)."""
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2VLConfig,
                              Qwen2VLForConditionalGeneration)

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
    hf_config = config_cls(
        text_config=dict(
            vocab_size=config.lm_vocab_size or len(tokenizer),
            hidden_size=config.hidden_size,
            intermediate_size=config.intermediate_size,
            num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads,
            num_key_value_heads=config.num_kv_heads,
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": config.rope_theta,
                             "mrope_section": list(config.mrope_section)},
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
    return hf_config, model_cls, processor_cls


def build_tiny_model(out_dir: str | Path, config: TinyModelConfig | None = None, texts: Sequence[str] | None = None):
    """Build the embedded Qwen2-VL from ``config``, save it like a hub checkpoint in ``out_dir``; returns the path.

    ``texts`` trains the tokenizer (default: :func:`default_corpus`). Writes ``tiny_config.json`` beside the
    weights so the build is reproducible from the directory alone.
    """
    import torch
    from transformers import Qwen2VLImageProcessorPil

    config = config or TinyModelConfig()
    out = Path(out_dir)
    tokenizer = train_tokenizer(texts if texts is not None else default_corpus(), vocab_size=config.vocab_size,
                                use_regex=not config.bpe_across_words, max_token_length=config.max_token_chars)
    model_config_, model_cls, processor_cls = model_config(config, tokenizer)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_end|>")}
    torch.manual_seed(config.seed)
    model = model_cls(model_config_)
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


QWEN2_VL_2B = TinyModelConfig(hidden_size=1536, num_layers=28, num_heads=12, num_kv_heads=2, intermediate_size=8960,
                              mrope_section=[16, 24, 24], vision_depth=32, vision_embed_dim=1280, vision_heads=16,
                              lm_vocab_size=151936, rope_theta=1e6)
"""Qwen2-VL-2B-Instruct's dimensions (its ``config.json``): 2.21 B parameters, 0.67 B of them in the vision tower.
With random weights and the embedded tokenizer it checks shapes, dtypes and throughput at the real size."""


def ensure_tiny_init() -> Path:
    """``data/models/tiny-init``, built (with the default config) if it does not exist yet."""
    path = data_dir("models", "tiny-init")
    if not (path / "config.json").exists():
        build_tiny_model(path)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    config = parse_cli(TinyModelConfig, argv, description="Build data/models/tiny-init (random weights).")
    print(build_tiny_model(data_dir("models", "tiny-init"), config))


if __name__ == "__main__":
    main()
