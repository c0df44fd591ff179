"""GRPO through stock TRL (sgglib.train.grpo): each reward preset reaches the trainer and moves the weights, the run
directory gets its columns and figure, resume continues to max_steps, notebook 04 runs under papermill, and two CPU
processes (accelerate + gloo) end with identical weights.

The policy (tests/conftest.py) is a tiny Qwen2-VL fitted for a few seconds on two mirrored images, so its samples are a mix of valid and
broken graphs: rewards differ inside a group and the advantages are non-zero (a random model fails every sample,
every reward is 0 and GRPO has no gradient at all)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from sgglib import prompts
from sgglib.train.callbacks import metric_key
from sgglib.runs import read_metrics_csv
from sgglib.train import grpo
from sgglib.train.grpo import (GRPORunConfig, PAPER_GRPO, build_rewards, resolve_init, train_grpo, trl_args,
                               weights_digest)
from sgglib.train.self_critical import decoding_rows_greedily, greedy_rows, self_critical_advantages
from sgglib.runs import repo_path

sys.path.insert(0, str(Path(__file__).parent))
from test_sft import rows  # noqa: E402  (the hand-made rows of the SFT tests)

NB04 = repo_path("notebooks", "04_grpo.ipynb")


def config(tmp_path, policy, **kw) -> GRPORunConfig:
    base = dict(init=str(policy), prompt="open", run_dir=str(tmp_path / "run"), max_steps=2, group_size=4,
                prompts_per_step=2, max_completion_length=96, temperature=0.3, learning_rate=1e-3, format_strict=False,
                eval_steps=0, val_limit=2, eval_max_new_tokens=96, save_steps=2, seed=0, system_prompt="rl")
    return GRPORunConfig(**{**base, **kw})


def run(cfg, **kw):
    return train_grpo(cfg, train_rows=rows(8), val_rows=rows(2), **kw)


def digest_of(path) -> str:
    from sgglib.models import load_model_and_processor

    return weights_digest(load_model_and_processor(path, dtype="float32")[0])


@pytest.mark.parametrize("preset", ["hard", "relax", "soft"])
def test_each_reward_preset_moves_the_weights(tmp_path, policy, preset):
    # the preset's rewards reach TRL (their columns are logged), samples differ in reward, and the update is non-zero
    result = run(config(tmp_path, policy, rewards=preset))
    assert result["global_step"] == 2
    assert weights_digest(result["model"]) != digest_of(policy)
    header = (result["run_dir"] / "metrics.csv").read_text().splitlines()[0].split(",")
    for name in build_rewards(GRPORunConfig(rewards=preset))[0][:-1]:
        assert metric_key(f"rewards/{name.__name__}/mean") in header
    for column in ("train/reward", "train/sampled_failure_rate", "train/sampled_recall", "train/completion_length",
                   "train/clip_ratio"):
        assert column in header, column


def test_run_directory_has_validation_curves_and_initial_metrics(tmp_path, policy):
    # greedy validation at step 0 and every eval_steps; final metrics keep the step-0 ones; reward/recall figure
    result = run(config(tmp_path, policy, eval_steps=1))
    out = result["run_dir"]
    for name in ("config.json", "metrics.csv", "metrics.json", "predictions.jsonl", "curves.png", "final"):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_images"] == 2 and "failure_rate" in metrics["initial"]
    csv_text = (out / "metrics.csv").read_text().splitlines()
    eval_steps = [line.split(",")[0] for line in csv_text[1:] if line.split(",")[2] != ""]
    assert eval_steps[:1] == ["0"] and "eval/recall" in csv_text[0]


def test_lora_run_saves_a_loadable_merged_final(tmp_path, policy):
    # with LoRA only the adapters train; final/ is a plain checkpoint with them merged (what 04/05 load) and
    # final/adapter/ keeps the adapters; the merged weights give the same greedy answer as the trained PEFT model
    from sgglib.models import load_model_and_processor, predict

    result = run(config(tmp_path, policy, lora_r=4, lora_alpha=8, learning_rate=5e-2))
    final = result["run_dir"] / "final"
    assert (final / "config.json").exists() and (final / "adapter" / "adapter_config.json").exists()
    merged, processor = load_model_and_processor(final, dtype="float32")
    assert weights_digest(merged) != digest_of(policy)  # the adapters were trained and merged in
    kw = dict(prompt=prompts.open_prompt(), system=prompts.RL_SYSTEM_PROMPT, max_new_tokens=32, progress=False)
    ours = predict(merged, processor, rows(2), **kw)
    peft = predict(result["model"], processor, rows(2), **kw)
    assert [r["completion"] for r in ours] == [r["completion"] for r in peft]


def test_resume_after_interruption_reaches_max_steps(tmp_path, policy):
    # stopped after step 3 (checkpoint at 2), the same config resumes from checkpoint-2 and ends at step 4
    from transformers import TrainerCallback

    class Interrupt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                control.should_training_stop = True

    cfg = config(tmp_path, policy, max_steps=4)
    assert run(cfg, extra_callbacks=[Interrupt()])["global_step"] == 3
    assert (tmp_path / "run" / "checkpoints" / "checkpoint-2").is_dir()
    assert run(cfg)["global_step"] == 4


def test_self_critical_advantages_compare_each_sample_with_the_greedy_answer():
    rewards = torch.tensor([3.0, 1.0, 1.0, 1.0, 2.0, 2.0, 0.0, 0.0])
    greedy = torch.tensor([1.0] * 4 + [2.0] * 4)
    # one sample beats the greedy answer, the ties get 0; a group all worse than greedy is pushed down, not ignored
    assert self_critical_advantages(rewards, greedy, 4, "none").tolist() == [2.0, 0.0, 0.0, 0.0, 0, 0, -2.0, -2.0]
    scaled = self_critical_advantages(rewards, greedy, 4, "group")
    assert torch.allclose(scaled[:4], torch.tensor([2.0, 0, 0, 0]) / (rewards[:4].std() + 1e-4))
    # GRPO's group mean would give the all-equal group [1, 1, 1, 1] nothing; SCST with a better greedy answer does
    assert (self_critical_advantages(torch.ones(4), torch.full((4,), 2.0), 4, "none") < 0).all()
    with pytest.raises(ValueError):
        GRPORunConfig(baseline="mode").check()


def test_forced_greedy_rows_decode_the_greedy_answer_while_the_others_sample(policy):
    # one generate call, four copies of a prompt at temperature 1.5: the masked rows answer as do_sample=False does,
    # whatever the seed; the other rows sample
    from sgglib.models import load_model_and_processor

    model, processor = load_model_and_processor(policy, dtype="float32")
    row = rows(1)[0]
    messages = prompts.prompt_messages(prompts.user_prompt(None), None)
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    batch = processor(text=[text] * 4, images=[row["image"]] * 4, return_tensors="pt")
    greedy = model.generate(**batch, do_sample=False, max_new_tokens=24)
    mask = greedy_rows(4, 2)
    outs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        with decoding_rows_greedily(model, mask):
            outs.append(model.generate(**batch, do_sample=True, temperature=1.5, max_new_tokens=24))
    assert "generate" not in vars(model)  # the instance attribute is gone again
    for out in outs:
        assert out[mask].tolist() == greedy[mask].tolist()
    assert outs[0][~mask].tolist() != outs[1][~mask].tolist()
    assert not torch.equal(outs[0][~mask], greedy[~mask])


def test_greedy_baseline_takes_the_first_rollout_of_each_group_as_the_baseline(tmp_path, policy, monkeypatch):
    from sgglib.train import self_critical

    masks, steps = [], []  # the rows decoded greedily; per step the weighted rewards and the advantages
    processor = self_critical.forced_greedy_processor
    monkeypatch.setattr(self_critical, "forced_greedy_processor", lambda rows: masks.append(rows) or processor(rows))
    make = grpo.self_critical_trainer

    def recording(base):
        class Recording(make(base)):
            def _generate_and_score_completions(self, inputs):
                output = super()._generate_and_score_completions(inputs)
                weighted = (self._step_rewards * self.reward_weights.unsqueeze(0)).nansum(dim=1)
                steps.append((weighted, output["advantages"].clone()))
                return output
        return Recording

    monkeypatch.setattr(grpo, "self_critical_trainer", recording)
    result = run(config(tmp_path, policy, baseline="greedy", scale_rewards="none"))
    assert result["global_step"] == 2 and weights_digest(result["model"]) != digest_of(policy)
    # each training step's generate forced the first of each group of 4 (2 prompts x 4 rollouts)
    assert len(masks) == 2 and all(m.tolist() == [True, False, False, False] * 2 for m in masks)
    logged = [r for r in read_metrics_csv(tmp_path / "run" / "metrics.csv") if "train/greedy_reward" in r]
    assert len(logged) == 2
    for (weighted, advantages), r in zip(steps, logged):
        greedy = weighted.view(-1, 4)[:, :1]
        # the greedy row gets 0, every sample its reward minus its group's greedy reward (no scaling here)
        assert torch.allclose(advantages.view(-1, 4), weighted.view(-1, 4) - greedy)
        assert (advantages.view(-1, 4)[:, 0] == 0).all()
        assert r["train/greedy_reward"] == pytest.approx(greedy.mean().item(), abs=1e-5)
        beats = (weighted.view(-1, 4)[:, 1:] > greedy + 1e-9).float().mean().item()
        assert r["train/beats_greedy"] == pytest.approx(100 * beats, abs=1e-3)


def test_greedy_baseline_runs_with_lora(tmp_path, policy):
    result = run(config(tmp_path, policy, baseline="greedy", lora_r=4))
    assert result["global_step"] == 2
    logged = [r for r in read_metrics_csv(tmp_path / "run" / "metrics.csv") if "train/greedy_reward" in r]
    assert len(logged) == 2 and all(0 <= r["train/beats_greedy"] <= 100 for r in logged)


def test_shuffle_within_groups_permutes_whole_samples_inside_each_group():
    from sgglib.train.placebo import shuffle_within_groups

    rewards = torch.arange(16, dtype=torch.float32).view(8, 2)  # 8 samples x 2 reward functions, groups of 4
    shuffled = shuffle_within_groups(rewards, 4, torch.Generator().manual_seed(1))
    for g in range(2):  # each group keeps its own samples, each sample its row
        assert sorted(map(tuple, shuffled[4 * g:4 * g + 4].tolist())) == sorted(map(tuple, rewards[4 * g:4 * g + 4].tolist()))
    assert not torch.equal(shuffled, rewards)
    again = shuffle_within_groups(rewards, 4, torch.Generator().manual_seed(1))
    assert torch.equal(shuffled, again)  # one seed, one permutation: every process draws the same
    with pytest.raises(ValueError, match="groups of 3"):
        shuffle_within_groups(rewards, 3, torch.Generator())


def test_placebo_trains_on_each_groups_rewards_shuffled(tmp_path, policy, monkeypatch):
    steps = []  # per training step: TRL's rewards, the shuffled ones and the advantages TRL made of them
    make = grpo.placebo_trainer

    def recording(base, seed):
        class Real(base):
            def _calculate_rewards(self, *args):
                steps.append([super()._calculate_rewards(*args)])
                return steps[-1][0]

        class Recording(make(Real, seed)):
            def _calculate_rewards(self, *args):
                shuffled = super()._calculate_rewards(*args)
                steps[-1].append(shuffled)
                return shuffled

            def _generate_and_score_completions(self, inputs):
                output = super()._generate_and_score_completions(inputs)
                steps[-1] += [output["advantages"].clone(), self.reward_weights]
                return output
        return Recording

    monkeypatch.setattr(grpo, "placebo_trainer", recording)
    result = run(config(tmp_path, policy, shuffle_rewards=True, scale_rewards="none"))
    assert result["global_step"] == 2 and weights_digest(result["model"]) != digest_of(policy)
    assert len(steps) == 2
    for real, shuffled, advantages, weights in steps:
        assert len(real) == 8
        for g in range(2):
            assert sorted(map(tuple, real[4 * g:4 * g + 4].tolist())) == sorted(map(tuple, shuffled[4 * g:4 * g + 4].tolist()))
        weighted = (shuffled * weights).nansum(dim=1).view(-1, 4)
        assert torch.allclose(advantages.view(-1, 4), weighted - weighted.mean(dim=1, keepdim=True), atol=1e-6)
    assert any(not torch.equal(real, shuffled) for real, shuffled, *_ in steps)
    with pytest.raises(ValueError, match="placebo"):
        GRPORunConfig(shuffle_rewards=True, baseline="greedy").check()


def checking_shared_prompt(monkeypatch, checks):
    """Make train_grpo's trainer score each training batch both ways — TRL's G full sequences and the shared prompt
    pass — and record the largest differences of log-probs, entropies and the gradients of a random linear loss."""
    make = grpo.trainer_class

    def checking(cfg, base=None):
        cls = make(cfg, base)
        trl_method = super(cls, cls)._get_per_token_logps_and_entropies if cfg.share_prompt else None

        class Checking(cls):
            def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, *a, **kw):
                ours = super()._get_per_token_logps_and_entropies
                if model.training and trl_method is not None:
                    params = [p for p in model.parameters() if p.requires_grad]
                    w = torch.randn(input_ids.size(0), logits_to_keep, generator=torch.Generator().manual_seed(0))
                    outs = []
                    for fn in (lambda *x, **y: trl_method(self, *x, **y), ours):
                        lp, ent, _ = fn(model, input_ids, attention_mask, logits_to_keep, *a, **{**kw,
                                                                                               "compute_entropy": True})
                        grads = torch.autograd.grad((lp * w).sum() + (ent * w).sum(), params, allow_unused=True)
                        outs.append((lp.detach(), ent.detach(), grads))
                    (lp0, ent0, g0), (lp1, ent1, g1) = outs
                    checks.append({"logps": (lp0 - lp1).abs().max().item(), "entropy": (ent0 - ent1).abs().max().item(),
                                   "grad": max(((x - y).abs().max() / x.abs().max()).item()
                                               for x, y in zip(g0, g1) if x is not None and x.abs().max() > 0),
                                   "nonzero": (lp0 != 0).sum().item()})
                return ours(model, input_ids, attention_mask, logits_to_keep, *a, **kw)
        return Checking

    monkeypatch.setattr(grpo, "trainer_class", checking)


@pytest.mark.parametrize("extra", [{}, {"lora_r": 4}, {"baseline": "greedy"}])
def test_shared_prompt_pass_equals_trls_full_sequences(tmp_path, policy, monkeypatch, extra):
    # each step's loss inputs scored by TRL's G full sequences and by one prompt pass per group: the same log-probs,
    # entropies and gradients (to float32 rounding), with the full model, LoRA and the greedy-baseline trainer
    checks = []
    checking_shared_prompt(monkeypatch, checks)
    result = run(config(tmp_path, policy, temperature=1.0, **extra))
    assert result["global_step"] == 2 and len(checks) == 2
    for c in checks:
        assert c["nonzero"] > 0 and c["logps"] < 1e-4 and c["entropy"] < 1e-4 and c["grad"] < 1e-3, c
    logged = [r["train/prompt_share"] for r in read_metrics_csv(tmp_path / "run" / "metrics.csv")
              if r.get("train/prompt_share") not in (None, "")]
    # 2 prompts × G 4 per step, each prompt run once for its 4 rows; the rows alternate two images, so a step's two
    # prompts can be the same one, run once for all 8
    assert len(logged) == 2 and all(v in (4.0, 8.0) for v in logged), logged


def test_share_prompt_off_or_gradient_checkpointing_takes_trls_path(tmp_path, policy):
    for kw in ({"share_prompt": False}, {"gradient_checkpointing": True}):
        run(config(tmp_path, policy, **kw))
        assert not any(r.get("train/prompt_share") not in (None, "")
                       for r in read_metrics_csv(tmp_path / "run" / "metrics.csv")), kw


def test_prompt_groups_tell_images_apart():
    from sgglib.train.shared_prompt import prompt_groups

    ids, mask = torch.tensor([[5, 6]] * 4), torch.ones(4, 2)
    images = [torch.zeros(3), torch.ones(3), torch.zeros(3), torch.ones(3)]
    first, inverse = prompt_groups(ids, mask, images)  # the same text, two images: two prompts
    assert first.tolist() == [0, 1] and inverse.tolist() == [0, 1, 0, 1]
    mask[2, 0] = 0  # a different padding is a different prompt
    assert prompt_groups(ids, mask, images)[1].tolist() == [0, 1, 2, 1]


def test_reward_weights_go_to_trl_and_presets_validate(tmp_path):
    # sgglib rewards are unweighted; the preset's weights are TRL's reward_weights (+ 0 for the measuring one)
    args = trl_args(GRPORunConfig(rewards="soft", group_size=4, prompts_per_step=2), tmp_path)
    assert args.reward_weights == [1.0, 2.0, 2.0, 5.0, 9.0, 0.0] and args.per_device_train_batch_size == 8
    assert GRPORunConfig(rewards="format_reward:1, edge_hard_reward:5").reward_weights() == {
        "format_reward": 1.0, "edge_hard_reward": 5.0}
    with pytest.raises(ValueError):
        GRPORunConfig(rewards="recall_of_everything").check()
    with pytest.raises(ValueError):
        trl_args(GRPORunConfig(group_size=3, prompts_per_step=1), tmp_path, num_processes=2)


def test_rare_predicate_power_weights_the_edge_reward_only(tmp_path):
    funcs, _ = build_rewards(GRPORunConfig(rewards="relax", rare_predicate_power=1.0), {"on": 90, "near": 10})
    by_name = {f.__name__: f for f in funcs}
    assert by_name["edge_relax_reward"].predicate_weights == {"on": 1.0, "near": 9.0}
    assert build_rewards(GRPORunConfig())[0][1].predicate_weights is None  # off by default (the paper)
    assert trl_args(GRPORunConfig(rare_predicate_power=0.5), tmp_path).reward_weights == [1.0, 5.0, 5.0, 0.0]
    with pytest.raises(ValueError, match="predicate counts"):
        build_rewards(GRPORunConfig(rare_predicate_power=0.5))
    with pytest.raises(ValueError):
        GRPORunConfig(rare_predicate_power=-1).check()


def test_init_sft_finds_the_newest_notebook_or_demo_sft(monkeypatch, tmp_path):
    # init="sft" with no SFT final/ fails and says which notebook to run; it finds notebook 03's reports/sft-*/final
    # and make demo's reports/<run id>/runs/sft/final, the newer of the two, from any working directory, and never
    # a study's SFT on another world (reports/study/<cell>/sft/final)
    import sgglib.train.grpo as grpo

    monkeypatch.setattr(grpo, "reports_dir", lambda *p: tmp_path.joinpath(*p))
    with pytest.raises(FileNotFoundError, match="03_sft"):
        resolve_init("sft")

    def make(rel, mtime):
        final = tmp_path / rel / "final"
        final.mkdir(parents=True)
        (final / "config.json").write_text("{}")
        os.utime(final / "config.json", (mtime, mtime))
        return str(final)

    notebook = make("sft-20261201-120000", 1_000_000)
    assert resolve_init("sft") == notebook
    demo = make("demo/runs/sft", 2_000_000)
    make("demo/runs/grpo", 3_000_000)  # a GRPO final is never an SFT checkpoint
    make("study/dense-seed0/sft", 4_000_000)  # another world's SFT: only by its path
    monkeypatch.chdir(tmp_path / "demo")
    assert resolve_init("sft") == demo
    assert resolve_init("base", "tiny-base") == "tiny-base"


def test_paper_preset_matches_the_reference_recipe():
    # the paper: 32 prompts × G 8, lr 6e-7, beta 0, temperature 1.0, top_p 0.9, top_k 50, 1024 tokens, 512·28·28 px
    p = PAPER_GRPO.check()
    assert (p.prompts_per_step, p.group_size, p.learning_rate, p.beta, p.temperature, p.top_p, p.top_k) == (
        32, 8, 6e-7, 0.0, 1.0, 0.9, 50)
    assert (p.max_completion_length, p.max_pixels, p.epsilon, p.max_steps, p.use_vllm) == (
        1024, 512 * 28 * 28, 0.2, -1, True)


def test_04_notebook_runs_headless(tmp_path, policy):
    # papermill with tiny parameters from notebooks/; overrides reach config.json; the run directory is complete
    import nbformat
    import papermill as pm

    nb = nbformat.read(NB04, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    assert all(not c.outputs and c.execution_count is None for c in code)
    out = tmp_path / "run"
    pm.execute_notebook(str(NB04), str(tmp_path / "out.ipynb"), kernel_name="python3", progress_bar=False,
                        cwd=str(repo_path("notebooks")),
                        parameters=dict(init=str(policy), prompt="open", group_size=4, prompts_per_step=2, max_steps=2,
                                        max_completion_length=32, eval_steps=1, val_limit=2, eval_max_new_tokens=32,
                                        train_limit=8, system_prompt="rl", run_dir=str(out)))
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["group_size"] == 4 and cfg["max_steps"] == 2
    assert json.loads((out / "metrics.json").read_text())["global_step"] == 2
    assert (out / "curves.png").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="two CPU ranks (gloo); on a GPU machine DDP takes the GPUs")
def test_two_cpu_processes_agree(tmp_path, policy):
    # accelerate launch --multi_gpu --num_processes 2 on a CPU box (train_grpo asks for CPU ranks: gloo; accelerate's
    # --cpu flag alone would start one process per rank that never meet): a few steps, then each rank hashes its
    # weights; DDP keeps them identical, and the run finishes with one run directory
    script = tmp_path / "run_ranks.py"
    script.write_text(textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from accelerate import PartialState
        from test_sft import rows
        from sgglib.train.grpo import GRPORunConfig, train_grpo, weights_digest
        cfg = GRPORunConfig(init={str(policy)!r}, prompt="open", run_dir={str(tmp_path / "run")!r}, max_steps=2,
                            group_size=4, prompts_per_step=2, max_completion_length=96, temperature=0.3, learning_rate=1e-3,
                            format_strict=False, eval_steps=0, val_limit=1, eval_max_new_tokens=16, save_steps=10,
                            system_prompt="rl")
        result = train_grpo(cfg, train_rows=rows(8), val_rows=rows(1))
        rank = PartialState().process_index
        open({str(tmp_path)!r} + f"/rank{{rank}}.json", "w").write(json.dumps(
            {{"step": result["global_step"], "digest": weights_digest(result["model"])}}))
    """))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", str(script)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=str(repo_path()))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in range(2)]
    assert ranks[0] == ranks[1] and ranks[0]["step"] == 2
    assert ranks[0]["digest"] != digest_of(policy)
    assert (tmp_path / "run" / "metrics.json").exists()


def test_ablation_grid_and_dry_run(tmp_path):
    # one axis at a time around (G 8, hard): 5 distinct runs, each its own directory; a dry run executes nothing
    from sgglib.ablation import ablation_settings, run_ablation

    settings = ablation_settings()
    assert sorted(settings) == sorted(["ablation-g4-hard", "ablation-g8-hard", "ablation-g16-hard",
                                       "ablation-g8-relax", "ablation-g8-soft"])
    summary = run_ablation(tmp_path / "abl", {"max_steps": 5}, settings, dry_run=True, log=lambda *_: None)
    params = summary["runs"]["ablation-g16-hard"]["parameters"]
    assert params["group_size"] == 16 and params["max_steps"] == 5
    assert params["run_dir"] == str(tmp_path / "abl" / "ablation-g16-hard")
    assert (tmp_path / "abl" / "ablation.json").exists()


def sft_run_with_checkpoints(tmp_path, policy, steps=(100, 200)) -> Path:
    """An SFT run directory as sgglib writes one: ``checkpoints/checkpoint-<step>/`` and ``final/``."""
    import shutil

    run_dir = tmp_path / "sft"
    for step in steps:
        shutil.copytree(policy, run_dir / "checkpoints" / f"checkpoint-{step}")
    shutil.copytree(policy, run_dir / "final")
    return run_dir


def test_start_best_of_k_takes_the_checkpoint_with_the_best_samples(tmp_path, policy, monkeypatch):
    from sgglib.train import start

    run_dir = sft_run_with_checkpoints(tmp_path, policy, steps=(1000, 200, 30))
    assert [p.name for p in start.start_candidates(run_dir / "final")] == [
        "checkpoint-30", "checkpoint-200", "checkpoint-1000", "final"]
    (run_dir / "metrics.json").write_text(json.dumps({"global_step": 1000}))  # checkpoint-1000 is final/ itself
    assert [p.name for p in start.start_candidates(run_dir / "final")] == ["checkpoint-30", "checkpoint-200", "final"]
    (run_dir / "metrics.json").unlink()
    scores = {"checkpoint-30": 10.0, "checkpoint-200": 30.0, "checkpoint-1000": 30.0, "final": 20.0}
    monkeypatch.setattr(start, "start_signals", lambda model_dir, rows, cfg, vocabulary=None: {
        "best_of_k": cfg.group_size, "best_of_k_recall": scores[Path(model_dir).name], "mean_sample_recall": 0.0,
        "sampled_failure_rate": 0.0})
    cfg = GRPORunConfig(start="best-of-k")
    chosen, table = start.choose_start(run_dir / "final", cfg, rows(8), log=lambda line: None)
    assert Path(chosen).name == "checkpoint-1000"  # the tie goes to the later checkpoint
    assert [r["chosen"] for r in table] == [False, False, True, False]
    assert start.choose_start(run_dir / "final", GRPORunConfig(), rows(8)) == (str(run_dir / "final"), [])
    with pytest.raises(ValueError, match="not a run's final"):
        start.start_candidates(policy)
    with pytest.raises(ValueError):
        GRPORunConfig(start="latest").check()


def test_grpo_with_start_best_of_k_samples_each_candidate_and_records_the_choice(tmp_path, policy):
    run_dir = sft_run_with_checkpoints(tmp_path, policy, steps=(100,))
    result = run(config(tmp_path, policy, init=str(run_dir), start="best-of-k", best_of_images=2, max_steps=1))
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    table = recorded["start_candidates"]
    assert [Path(r["model"]).name for r in table] == ["checkpoint-100", "final"] and sum(r["chosen"] for r in table) == 1
    assert all(r["best_of_k"] == 4 and r["best_of_images"] == 2 and 0 <= r["best_of_k_recall"] <= 100 for r in table)
    assert recorded["resolved_init"] == next(r["model"] for r in table if r["chosen"])
    assert result["global_step"] == 1


def test_optim_reaches_the_optimizer(tmp_path):
    # the config's optimizer name is the one the trainer builds: AdamW by default (the paper's), SGD when asked
    from transformers import Trainer

    model = torch.nn.Linear(2, 2)
    for optim, cls in ((GRPORunConfig().optim, torch.optim.AdamW), ("sgd", torch.optim.SGD)):
        args = trl_args(GRPORunConfig(optim=optim, learning_rate=0.05), tmp_path / optim)
        optimizer = Trainer(model=model, args=args).create_optimizer()
        assert isinstance(optimizer, cls) and optimizer.param_groups[0]["lr"] == 0.05
