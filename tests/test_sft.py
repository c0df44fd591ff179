"""SFT through stock TRL: the answer-only loss mask, a few steps lower the loss, checkpoints resume to the same step
count, and a run directory gets its config, CSV, curves, final model and metrics."""

import json

import datasets
import pytest
import torch
from PIL import Image, ImageDraw

from sgglib import prompts
from sgglib.models import load_model_and_processor
from sgglib.tiny import TinyModelConfig, build_tiny_model
from sgglib.sft import PAPER_SFT, SFTRunConfig, make_train_dataset, train, trl_args

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
    ds = make_train_dataset(rows(n), "sgg", prompt="open")
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
    # TRL defaults gradient checkpointing on (slow on CPU, FACTS.md); we turn it off and keep the answer-only loss
    args = trl_args(cfg(tmp_path, tiny_dir), tmp_path)
    assert args.gradient_checkpointing is False and args.completion_only_loss is True
    assert args.remove_unused_columns is False


def test_train_writes_the_run_directory(tmp_path, tiny_dir):
    # a full tiny run through stock SFTTrainer: config, CSV (train + eval rows), curves, final model, metrics
    result = train(cfg(tmp_path, tiny_dir, eval_steps=3), train_rows=rows(8), val_rows=rows(2))
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


def test_resume_after_interruption_reaches_the_same_step(tmp_path, tiny_dir):
    # a run stopped after step 3 (checkpoint at step 2) resumes from checkpoint-2 and ends at max_steps = 6
    from transformers import TrainerCallback

    class Interrupt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                control.should_training_stop = True

    config = cfg(tmp_path, tiny_dir, max_steps=6)
    first = train(config, train_rows=rows(8), val_rows=rows(2), callbacks=[Interrupt()])
    assert first["global_step"] == 3
    ckpts = sorted(p.name for p in (first["run_dir"] / "checkpoints").iterdir())
    assert "checkpoint-2" in ckpts
    second = train(config, train_rows=rows(8), val_rows=rows(2))
    assert second["global_step"] == 6
    logged_steps = [int(line.split(",")[0]) for line in (second["run_dir"] / "metrics.csv").read_text().splitlines()[1:]]
    assert max(logged_steps) == 6


def test_lora_run(tmp_path, tiny_dir):
    # LoRA through TRL's peft_config: trains adapters, the step count is honoured, and final/ is a plain merged
    # checkpoint that the loaders read (adapters kept in final/adapter/)
    from sgglib.models import load_model_and_processor

    result = train(cfg(tmp_path, tiny_dir, max_steps=2, lora_r=4, lora_target_modules=("q_proj", "v_proj")),
                   train_rows=rows(4), val_rows=rows(1))
    assert result["global_step"] == 2
    final = result["run_dir"] / "final"
    assert (final / "adapter" / "adapter_config.json").exists() and not (final / "adapter_config.json").exists()
    model, _ = load_model_and_processor(final, dtype="float32")
    assert not any("lora" in name for name, _ in model.named_parameters())


def test_paper_preset_matches_the_reference_recipe():
    # PAPER.md §3 / reference scripts/sft/2B_sgg.sh: lr 1e-5, 3 epochs, warmup 0.05, clip 0.3, bf16, batch 8×4 (×4 GPUs)
    p = PAPER_SFT.validate()
    assert (p.model, p.learning_rate, p.num_train_epochs, p.warmup_ratio, p.max_grad_norm, p.bf16) == (
        "Qwen/Qwen2-VL-2B-Instruct", 1e-5, 3, 0.05, 0.3, True)
    assert p.batch_size * p.grad_accum * 4 == 128 and p.max_steps == -1


def test_cpu_plain_loss_equals_trl_fused_loss(tmp_path, tiny_dir):
    # on CPU the SFT loss bypasses TRL's GPU-oriented fused LM head (2.4x faster steps); it must be the same number:
    # the mean NLL of the answer tokens
    from trl import SFTTrainer

    from sgglib.sft import _plain_loss_trainer_class

    processor, batch = collate(tiny_dir)
    c = cfg(tmp_path, tiny_dir)
    model, _ = load_model_and_processor(tiny_dir)
    train_ds = make_train_dataset(rows(4), "sgg", prompt="open")
    losses = []
    for cls in (SFTTrainer, _plain_loss_trainer_class()):
        trainer = cls(model=model, args=trl_args(c, tmp_path / cls.__name__), train_dataset=train_ds,
                      processing_class=processor)
        model.eval()
        with torch.no_grad():
            losses.append(trainer.compute_loss(trainer.model, dict(batch)).item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
