"""SFT through stock TRL: the answer-only loss mask, a few steps lower the loss, checkpoints resume to the same step
count, a run directory gets its config, CSV, curves, final model and metrics, and the command line offers every
config field."""

import json

import datasets
import pytest
import torch
from PIL import Image, ImageDraw

from sgglib import prompts
from sgglib.models import load_model_and_processor
from sgglib.runs import read_metrics_csv
from sgglib.embedded.model import TinyModelConfig, build_tiny_model
from sgglib.train.sft import PAPER_SFT, SFTExamples, SFTRunConfig, main, train_sft, trl_args

TINY = TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64,
                       mrope_section=(2, 3, 3), vision_depth=1, vision_embed_dim=32, vision_heads=2, vocab_size=400,
                       image_mean=(0.8, 0.8, 0.8), max_pixels=56 * 56)
COLORS = {"red": (215, 35, 35), "blue": (35, 65, 215)}


def rows(n=8, size=56):
    """Hand-made scene-graph rows (the data loader's schema): a red and a blue disc in two cells."""
    out = []
    for i in range(n):
        im = Image.new("RGB", (size, size), (204, 204, 204))
        draw = ImageDraw.Draw(im)
        a, b = ("red", "blue") if i % 2 else ("blue", "red")
        draw.ellipse([2, 2, 25, 25], fill=COLORS[a])
        draw.ellipse([30, 30, 53, 53], fill=COLORS[b])
        out.append({
            "image_id": f"r{i}", "image": im, "width": size, "height": size,
            "objects": [{"id": f"{a} circle.1", "bbox": [2.0, 2.0, 26.0, 26.0]},
                        {"id": f"{b} circle.1", "bbox": [30.0, 30.0, 54.0, 54.0]}],
            "relationships": [{"subject": f"{a} circle.1", "predicate": "near", "object": f"{b} circle.1"}],
        })
    return datasets.Dataset.from_list(out)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    data = rows(2)
    texts = [prompts.sft_target(r) for r in data] * 10 + [prompts.open_prompt(), prompts.SFT_SYSTEM_PROMPT] * 10
    return build_tiny_model(tmp_path_factory.mktemp("tiny"), TINY, texts=texts)


def collate(tiny_dir, n=4):
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    _, processor = load_model_and_processor(tiny_dir)
    ds = rows(n).with_transform(SFTExamples(prompt="open"))
    collator = DataCollatorForVisionLanguageModeling(processor, completion_only_loss=True)
    return processor, collator([ds[i] for i in range(n)])


def cfg(tmp_path, tiny_dir, **kw):
    base = dict(model=str(tiny_dir), prompt="open", run_dir=str(tmp_path / "run"), max_steps=4, batch_size=4,
                learning_rate=1e-2, warmup_ratio=0.0, logging_steps=1, eval_steps=0, val_limit=2,
                eval_max_new_tokens=8, save_steps=2, lr_scheduler="constant")
    return SFTRunConfig(**{**base, **kw})


def test_loss_mask_covers_exactly_the_answer(tiny_dir):
    # completion-only loss: every label that is not -100 is an answer token (the JSON and its <|im_end|>), and
    # every answer token is a label; the image, system and prompt tokens are masked
    processor, batch = collate(tiny_dir)
    tok = processor.tokenizer
    for i, r in enumerate(rows(4)):
        labels = batch["labels"][i]
        kept = labels[labels != -100].tolist()
        assert tok.decode(kept) == prompts.sft_target(r) + "<|im_end|>\n"
        pad = tok.convert_tokens_to_ids("<|image_pad|>")
        assert pad in batch["input_ids"][i].tolist() and pad not in kept


def test_images_reach_the_model(tiny_dir):
    # the collator ran the image processor: pixel values and one grid per image are in the batch
    _, batch = collate(tiny_dir)
    assert batch["pixel_values"].ndim == 2 and batch["image_grid_thw"].shape == (4, 3)


def test_a_few_steps_lower_the_loss_on_a_fixed_batch(tiny_dir):
    # the model + collator + loss are wired so that gradient steps fit a fixed batch
    _, batch = collate(tiny_dir)
    model, _ = load_model_and_processor(tiny_dir, dtype="float32")
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_trl_config_is_cpu_friendly_and_answer_only(tmp_path, tiny_dir):
    # TRL defaults gradient checkpointing on (slow on CPU); we turn it off and keep the answer-only loss
    args = trl_args(cfg(tmp_path, tiny_dir), tmp_path)
    assert args.gradient_checkpointing is False and args.completion_only_loss is True
    assert args.remove_unused_columns is False


def test_train_writes_the_run_directory(tmp_path, tiny_dir):
    # a full tiny run through stock SFTTrainer: config, CSV (train + eval rows), curves, final model, metrics
    result = train_sft(cfg(tmp_path, tiny_dir, eval_steps=3), train_rows=rows(8), val_rows=rows(2))
    run = result["run_dir"]
    assert result["global_step"] == 4
    for name in ("config.json", "metrics.csv", "curves.png", "metrics.json", "predictions.jsonl"):
        assert (run / name).exists(), name
    csv_text = (run / "metrics.csv").read_text()
    assert "train/loss" in csv_text and "eval/failure_rate" in csv_text
    # evaluations at step 3 (eval_steps) and at the end (step 4): the curve ends where the run ends
    lines = [line.split(",") for line in csv_text.splitlines()]
    col = lines[0].index("eval/recall")
    assert [line[0] for line in lines[1:] if len(line) > col and line[col] != ""] == ["3", "4"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["num_images"] == 2 and 0 <= metrics["failure_rate"] <= 100
    model, processor = load_model_and_processor(run / "final")  # the final checkpoint loads like any model
    assert type(processor).__name__.endswith("Processor")


def test_resume_after_a_kill_continues_from_the_checkpoint(tmp_path, tiny_dir):
    # a run killed after logging step 3 (checkpoint at step 2) resumes from checkpoint-2's weights — not the initial
    # ones, which is what transformers' own resume leaves in a Qwen2-VL — logs step 3 once, and ends at max_steps 6
    from transformers import TrainerCallback

    class Killed(Exception):
        pass

    class Kill(TrainerCallback):
        def on_log(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise Killed

    class WeightsAtStart(TrainerCallback):
        def on_step_begin(self, args, state, control, model=None, **kwargs):
            if not hasattr(self, "weights"):
                self.weights = {k: v.detach().clone() for k, v in model.state_dict().items()}

    config = cfg(tmp_path, tiny_dir, max_steps=6)
    with pytest.raises(Killed):
        train_sft(config, train_rows=rows(8), val_rows=rows(2), extra_callbacks=[Kill()])
    run_dir = tmp_path / "run"
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("checkpoint-*")) == ["checkpoint-2"]
    saved, _ = load_model_and_processor(run_dir / "checkpoints" / "checkpoint-2")  # before a resumed run rotates it
    at_start = WeightsAtStart()
    second = train_sft(config, train_rows=rows(8), val_rows=rows(2), extra_callbacks=[at_start])
    assert second["global_step"] == 6
    initial, _ = load_model_and_processor(tiny_dir)
    for name, tensor in saved.state_dict().items():
        assert torch.equal(at_start.weights[name], tensor), name
    assert any(not torch.equal(initial.state_dict()[k], v) for k, v in saved.state_dict().items())
    logged = read_metrics_csv(second["run_dir"] / "metrics.csv")
    train_steps = [int(r["step"]) for r in logged if r.get("train/loss") not in (None, "")]
    assert train_steps == [1, 2, 3, 4, 5, 6]  # step 3, logged before the kill and again after it, appears once


def test_lora_run(tmp_path, tiny_dir):
    # LoRA through TRL's peft_config: trains adapters, the step count is honoured, and final/ is a plain merged
    # checkpoint that the loaders read (adapters kept in final/adapter/)
    result = train_sft(cfg(tmp_path, tiny_dir, max_steps=2, lora_r=4, lora_target_modules=["q_proj", "v_proj"]),
                       train_rows=rows(4), val_rows=rows(1))
    assert result["global_step"] == 2
    final = result["run_dir"] / "final"
    assert (final / "adapter" / "adapter_config.json").exists() and not (final / "adapter_config.json").exists()
    model, _ = load_model_and_processor(final, dtype="float32")
    assert not any("lora" in name for name, _ in model.named_parameters())


def test_paper_preset_matches_the_reference_recipe():
    # the reference's scripts/sft/2B_sgg.sh: lr 1e-5, 3 epochs, warmup 0.05, clip 0.3, bf16, batch 8×4 (×4 GPUs)
    p = PAPER_SFT.check()
    assert (p.model, p.learning_rate, p.num_train_epochs, p.warmup_ratio, p.max_grad_norm, p.bf16) == (
        "Qwen/Qwen2-VL-2B-Instruct", 1e-5, 3, 0.05, 0.3, True)
    assert p.batch_size * p.grad_accum * 4 == 128 and p.max_steps == -1


@pytest.mark.skipif(torch.cuda.is_available(), reason="the plain CPU loss replaces TRL's only where there is no GPU")
def test_cpu_plain_loss_equals_trl_fused_loss(tmp_path, tiny_dir):
    # on CPU the SFT loss bypasses TRL's GPU-oriented fused LM head (2.4x faster steps); it must be the same number:
    # the mean NLL of the answer tokens
    from trl import SFTTrainer

    from sgglib.train.sft import _plain_loss_trainer_class

    processor, batch = collate(tiny_dir)
    c = cfg(tmp_path, tiny_dir)
    model, _ = load_model_and_processor(tiny_dir)
    train_ds = rows(4).with_transform(SFTExamples(prompt="open"))
    losses = []
    for cls in (SFTTrainer, _plain_loss_trainer_class()):
        trainer = cls(model=model, args=trl_args(c, tmp_path / cls.__name__), train_dataset=train_ds,
                      processing_class=processor)
        model.eval()
        with torch.no_grad():
            losses.append(trainer.compute_loss(trainer.model, dict(batch)).item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def test_command_line_offers_every_field_bools_and_lists_included(capsys):
    # generated from the dataclass: --bf16, --gradient-checkpointing, --no-resume and list fields exist, with the
    # field docstrings as help
    from sgglib.config import cli_parser, parse_cli

    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for flag in ("--bf16", "--gradient-checkpointing", "--resume", "--no-resume", "--lora-target-modules",
                 "--max-minutes", "--system-prompt"):
        assert flag in text, flag
    assert "trade compute for memory" in text  # a field docstring became its help
    c = parse_cli(SFTRunConfig, ["--bf16", "--gradient-checkpointing", "--no-resume", "--lora-target-modules", "q_proj",
                                 "v_proj", "--max-steps", "7"])
    assert (c.bf16, c.gradient_checkpointing, c.resume, c.lora_target_modules, c.max_steps) == (
        True, True, False, ["q_proj", "v_proj"], 7)
    assert parse_cli(SFTRunConfig, []) == SFTRunConfig()  # no flags: exactly the dataclass defaults
    flags = {opt for action in cli_parser(SFTRunConfig)._actions for opt in action.option_strings}
    missing = [f for f in SFTRunConfig.__dataclass_fields__ if "--" + f.replace("_", "-") not in flags]
    assert not missing, missing  # every field is a flag


def test_command_line_reruns_a_saved_config(tmp_path):
    # a run's config.json is a valid command line, later flags override it
    from sgglib.config import parse_cli
    from sgglib.runs import write_json

    saved = SFTRunConfig(max_steps=9, prompt="mixed", lora_target_modules=["v_proj"], run_dir="x")
    path = write_json(tmp_path / "config.json", saved)
    assert parse_cli(SFTRunConfig, [str(path)]) == saved
    assert parse_cli(SFTRunConfig, [str(path), "--max-steps", "3"]).max_steps == 3
