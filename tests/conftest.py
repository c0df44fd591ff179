"""Fixtures shared by several test modules (built once per test session: they train)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from sgglib import prompts

sys.path.insert(0, str(Path(__file__).parent))
from test_sft import TINY, rows  # noqa: E402  (the hand-made rows and tiny architecture of the SFT tests)

LOSS_TARGET = 0.15


@pytest.fixture(scope="session")
def policy(tmp_path_factory):
    """A tiny model that half-learned the answer (teacher forcing on a fixed batch, AdamW until the loss is below
    LOSS_TARGET): its greedy graphs parse, and at temperature 0.3 some of its samples do."""
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from sgglib.embedded.model import build_tiny_model
    from sgglib.models import load_model_and_processor
    from sgglib.train.sft import SFTExamples

    out = tmp_path_factory.mktemp("policy")
    texts = [prompts.sft_target(r) for r in rows(2)] * 10 + [prompts.open_prompt(), prompts.RL_SYSTEM_PROMPT] * 10
    build_tiny_model(out, TINY, texts=texts)
    model, processor = load_model_and_processor(out, dtype="float32")
    ds = rows(8).with_transform(SFTExamples(prompt="open", system=prompts.RL_SYSTEM_PROMPT))
    batch = DataCollatorForVisionLanguageModeling(processor, completion_only_loss=True)([ds[i] for i in range(8)])
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(200):  # until the answer is half-learned (~50 steps); a fixed count was fragile across CPUs
        loss = model(**batch).loss
        if loss.item() < LOSS_TARGET:
            break
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert loss.item() < LOSS_TARGET, f"policy fixture did not reach loss {LOSS_TARGET}: {loss.item():.3f}"
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def mini_cell(tmp_path_factory):
    """The world study's control cell in a few steps (SFT 2 steps, GRPO and its compute-matched SFT 0.01 min, 2
    validation images): run directories with configs and final weights for the benchmarks that read them."""
    import world_study

    root = tmp_path_factory.mktemp("mini-cell")
    world_study.main(["--cells", "control", "--sft-steps", "2", "--val-limit", "2", "--max-new-tokens", "12",
                      "--grpo-minutes", "0.01", "--best-of", "0", "--runs", str(root / "runs"),
                      "--out", str(root / "out")])
    return root / "runs" / "control-seed0"
