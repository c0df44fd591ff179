"""Qwen2-VL-2B's real widths on a CPU: hidden 1536, the 151,936-row embedding table and LM head, the 1280-wide vision
tower, with one text layer and one vision block. One SFT step, one GRPO step and a few greedy tokens through sgglib's
own code path, so shape and dtype bugs at the real size show up without a GPU (random weights; the numbers mean
nothing)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from sgglib import prompts
from sgglib.embedded.model import QWEN2_VL_2B, build_tiny_model
from sgglib.models import load_model_and_processor, predict
from sgglib.train.grpo import GRPORunConfig, train_grpo
from sgglib.train.sft import SFTRunConfig, train_sft

sys.path.insert(0, str(Path(__file__).parent))
from test_sft import rows  # noqa: E402  (hand-made 56-px rows: 4 image tokens each)

REAL_WIDTHS = dataclasses.replace(QWEN2_VL_2B, num_layers=1, vision_depth=1, max_pixels=56 * 56,
                                  image_mean=(0.8, 0.8, 0.8))


@pytest.fixture(scope="module")
def real_dims(tmp_path_factory):
    texts = [prompts.sft_target(r) for r in rows(2)] * 5 + [prompts.open_prompt()] * 5
    return build_tiny_model(tmp_path_factory.mktemp("real-dims"), REAL_WIDTHS, texts=texts)


def test_qwen2_vl_2b_preset_has_the_2b_size():
    # the benchmark's full-size model (random weights, on the meta device here): 2.21 B parameters, 0.67 B of them
    # in the vision tower, as Qwen2-VL-2B-Instruct
    import torch
    from transformers import AutoTokenizer

    from sgglib.embedded.model import ensure_tiny_init, model_config

    hf_config, model_cls, _ = model_config(QWEN2_VL_2B, AutoTokenizer.from_pretrained(ensure_tiny_init()))
    with torch.device("meta"):
        model = model_cls._from_config(hf_config)
    n_vis = sum(p.numel() for p in model.model.visual.parameters())
    assert abs(sum(p.numel() for p in model.parameters()) / 1e9 - 2.209) < 0.01 and abs(n_vis / 1e9 - 0.665) < 0.01


def test_real_widths(real_dims):
    # the checkpoint really has the 2B's widths: embedding 151,936 × 1536, vision width 1280, mRoPE 16/24/24
    model, processor = load_model_and_processor(real_dims, dtype="float32")
    assert tuple(model.get_input_embeddings().weight.shape) == (151936, 1536)
    assert model.config.vision_config.embed_dim == 1280 and model.config.text_config.num_key_value_heads == 2
    assert model.config.text_config.rope_parameters["mrope_section"] == [16, 24, 24]
    records = predict(model, processor, rows(2), prompts.open_prompt(), max_new_tokens=3, progress=False)
    assert len(records) == 2 and all(r["box_scale"] == [1000.0, 1000.0] for r in records)


def test_one_sft_and_one_grpo_step_at_real_widths(tmp_path, real_dims):
    # the training code path end to end at these shapes: one step each (GRPO from SFT's final/, which loads again);
    # no checkpoints and no validation (the greedy path is the test above) — at 335 M parameters they cost minutes
    common = dict(prompt="open", val_limit=0, eval_steps=0, save_steps=0, max_steps=1)
    sft = train_sft(SFTRunConfig(model=str(real_dims), batch_size=1, run_dir=str(tmp_path / "sft"), **common),
                    train_rows=rows(2))
    assert sft["global_step"] == 1 and (sft["run_dir"] / "final" / "model.safetensors").exists()
    assert not (sft["run_dir"] / "checkpoints").exists() or not any((sft["run_dir"] / "checkpoints").iterdir())
    grpo = train_grpo(GRPORunConfig(init=str(sft["run_dir"]), group_size=2, prompts_per_step=1,
                                    max_completion_length=4, run_dir=str(tmp_path / "grpo"), **common),
                      train_rows=rows(2))
    assert grpo["global_step"] == 1 and (grpo["run_dir"] / "final" / "model.safetensors").exists()
