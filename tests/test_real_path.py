"""The real path's traps, checked on a CPU: the paper's recipes really update their weights at lr 6e-7 (pure-bf16
weights would not), saved checkpoints carry what transformers' stock processor path needs, the defaults follow the
device, one pixel setting drives the SFT targets and the decodes, and the packaging names the GPU extras."""

from __future__ import annotations

import dataclasses
import json
import sys
import tomllib
import warnings
from pathlib import Path

import pytest
import torch

from sgglib import prompts
from sgglib.embedded.model import build_tiny_model
from sgglib.models import attention_implementation, box_scale, load_model_and_processor, load_processor, pixel_bounds
from sgglib.runs import repo_path
from sgglib.train.common import trainer_kwargs, use_bf16
from sgglib.train.grpo import PAPER_GRPO, train_grpo
from sgglib.train.sft import PAPER_SFT, SFTExamples, train_sft

sys.path.insert(0, str(Path(__file__).parent))
from test_sft import TINY, rows  # noqa: E402  (hand-made rows and the tiny architecture of the SFT tests)

LAYER = "model.language_model.layers.0.mlp.down_proj.weight"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    texts = [prompts.sft_target(r) for r in rows(2)] * 10 + [prompts.open_prompt(), prompts.RL_SYSTEM_PROMPT] * 10
    return build_tiny_model(tmp_path_factory.mktemp("tiny"), TINY, texts=texts)


class Moved:
    """A callback recording the share of a decoder weight's elements that one run changed."""

    def __init__(self):
        from transformers import TrainerCallback

        outer = self

        class _CB(TrainerCallback):
            def on_train_begin(self, args, state, control, model=None, **kwargs):
                outer.before = dict(model.named_parameters())[LAYER].detach().float().clone()

            def on_train_end(self, args, state, control, model=None, **kwargs):
                after = dict(model.named_parameters())[LAYER].detach().float()
                outer.share = float((after != outer.before).float().mean())

        self.callback = _CB()


def recipe(preset, tmp_path, model_dir, **kw):
    """The preset's precision and optimiser settings (dtype, bf16, lr, clipping) on the tiny model and rows, one
    optimizer step (no warmup: its first step's rate is 0), no validation or checkpoints."""
    common = dict(dataset="synthetic", val_limit=0, eval_steps=0, save_steps=100, prompt="open", max_steps=1,
                  warmup_ratio=0.0, max_pixels=0, gradient_checkpointing=False, attn_implementation="sdpa",
                  run_dir=str(tmp_path / "run"))
    if preset is PAPER_SFT:
        return dataclasses.replace(preset, model=str(model_dir), batch_size=4, grad_accum=1, **{**common, **kw})
    return dataclasses.replace(preset, init=str(model_dir), group_size=4, prompts_per_step=2, use_vllm=False,
                               max_completion_length=96, temperature=0.3, system_prompt="rl", format_strict=False,
                               **{**common, **kw})


@pytest.mark.parametrize("preset", [PAPER_SFT, PAPER_GRPO], ids=["PAPER_SFT", "PAPER_GRPO"])
def test_paper_recipe_moves_the_weights_at_its_learning_rate(tmp_path, tiny_dir, policy, preset):
    # fp32 master weights + bf16 autocast: one AdamW step at the recipe's rate (1e-5 SFT, 6e-7 GRPO) changes nearly
    # every element of a decoder weight; the same step on bfloat16 weights changes almost none (the silent no-op).
    # GRPO starts from a half-fitted policy: a random model fails every sample, and equal rewards give no gradient
    assert preset.dtype == "float32" and preset.bf16 is True
    run = train_sft if preset is PAPER_SFT else train_grpo
    shares = {}
    for dtype in ("float32", "bfloat16"):
        moved = Moved()
        cfg = recipe(preset, tmp_path / dtype, tiny_dir if preset is PAPER_SFT else policy, dtype=dtype)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = run(cfg, train_rows=rows(8), extra_callbacks=[moved.callback])
        assert result["global_step"] == 1
        shares[dtype] = moved.share
        warned = any("numerics-on-gpus" in str(w.message) for w in caught)
        assert warned == (dtype == "bfloat16")  # the half-dtype trap is called out when it is set
    assert shares["float32"] > 0.9 and shares["bfloat16"] < 0.2, shares


def test_saved_processor_carries_what_the_stock_path_reads(tiny_dir):
    # processor_config.json names the stock class and holds a video_processor entry; transformers' own resolver
    # (what Qwen2VLProcessor.from_pretrained runs where torchvision works) finds it instead of failing with
    # "Can't load video processor"; the committed tiny-base is saved the same way
    from transformers.video_processing_utils import BaseVideoProcessor

    for path in (Path(tiny_dir), repo_path("data", "models", "tiny-base")):
        config = json.loads((path / "processor_config.json").read_text())
        assert config["processor_class"] == "Qwen2VLProcessor"
        assert config["video_processor"]["video_processor_type"] == "Qwen2VLVideoProcessor"
        video, _ = BaseVideoProcessor.get_video_processor_dict(str(path))
        assert video["patch_size"] == 14 and video["merge_size"] == 2


def test_both_processor_branches(tiny_dir, monkeypatch):
    # without torchvision: our subclass; forcing the stock class gets past the config (the old failure) and then
    # needs torchvision for the video processor — on a GPU machine with torchvision it loads (gpu_check.sh)
    import sgglib.models as models

    ours = load_processor(tiny_dir, stock=False)
    assert type(ours).__name__ == "SGGQwen2VLProcessor"
    if models.has_torchvision():
        assert type(load_processor(tiny_dir, stock=True)).__name__ == "Qwen2VLProcessor"
        return
    with pytest.raises(Exception) as err:  # noqa: PT011 - whatever transformers raises without torchvision
        load_processor(tiny_dir, stock=True)
    assert "Can't load video processor" not in str(err.value)


def test_defaults_follow_the_device(tmp_path):
    # on this CPU: no bf16, sdpa, no TF32; an explicit flash_attention_2 without flash-attn falls back with a warning
    cuda = torch.cuda.is_available()
    assert use_bf16(None) == (cuda and torch.cuda.is_bf16_supported()) and use_bf16(True) and not use_bf16(False)
    assert attention_implementation("auto", half=False) == "sdpa"  # flash-attn has no fp32 kernels
    if not cuda:
        assert attention_implementation("auto") == "sdpa"
        kwargs = trainer_kwargs(PAPER_SFT, tmp_path)
        assert kwargs["bf16"] is True and kwargs["tf32"] is None and kwargs["use_cpu"] is True
        with pytest.warns(UserWarning, match="flash-attn"):
            assert attention_implementation("flash_attention_2") == "sdpa"
    assert attention_implementation("eager") == "eager"


def test_one_pixel_setting_drives_targets_and_decodes(tmp_path):
    # Qwen2.5-VL writes boxes in pixels of its resized input: the SFT target's frame (from the processor's pixel
    # bounds) is the frame the decoder reports (from image_grid_thw), for a max_pixels smaller than the image
    from PIL import Image

    path = build_tiny_model(tmp_path / "q25", dataclasses.replace(TINY, arch="qwen2_5_vl", max_pixels=112 * 112),
                            texts=[prompts.open_prompt()] * 10)
    _, processor = load_model_and_processor(path, max_pixels=56 * 84)
    assert pixel_bounds(processor)[1] == 56 * 84
    row = {**rows(1)[0], "image": Image.new("RGB", (200, 120)), "width": 200, "height": 120}
    example = SFTExamples(prompt="open", convention="qwen2.5vl", pixels=pixel_bounds(processor))(
        {k: [v] for k, v in row.items()})
    target = json.loads(example["completion"][0][0]["content"][0]["text"].strip("`json\n"))
    grid = processor(text=["<|vision_start|><|image_pad|><|vision_end|>"], images=[row["image"]],
                     return_tensors="pt")["image_grid_thw"][0]
    frame = box_scale(processor, grid)
    resized = prompts.resized_size(200, 120, min_pixels=pixel_bounds(processor)[0], max_pixels=56 * 84)
    assert frame == (float(resized[0]), float(resized[1])) and frame[0] * frame[1] <= 56 * 84
    expected = prompts.to_model_box(row["objects"][0]["bbox"], 200, 120, "qwen2.5vl", resized)
    assert target["objects"][0]["bbox"] == expected


def test_gpu_extra_and_paper_presets_are_declared():
    # the real path's optional packages are an extra; the presets keep fp32 master weights and their pixel bounds
    extras = tomllib.loads(repo_path("pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {r.split(">")[0].split("=")[0] for r in extras["gpu"]} >= {"deepspeed", "vllm"}
    assert (PAPER_SFT.max_pixels, PAPER_GRPO.max_pixels) == (1024 * 28 * 28, 512 * 28 * 28)
    assert PAPER_SFT.attn_implementation == PAPER_GRPO.attn_implementation == "auto"
