"""Where training's updates go: the gradient-noise probe (its estimates recover a known signal and noise; a probe
run captures one gradient per step without moving the weights) and the splice of one parameter group's change."""

from __future__ import annotations

import json

import pytest
import torch

import gradient_noise
import splice


def test_estimates_recover_a_known_signal_and_noise():
    torch.manual_seed(0)
    k, p, sigma = 60, 4000, 0.5
    mu = torch.zeros(p)
    mu[: p // 2] = 0.1  # half the coordinates carry signal 0.1, the other half none
    stats = gradient_noise.noise_stats(mu + sigma * torch.randn(k, p))
    assert abs(stats["signal"] - float(mu @ mu)) < 3 * stats["signal_se"]
    assert stats["noise"] == pytest.approx(p * sigma ** 2, rel=0.03)
    assert stats["snr"] == pytest.approx(float(mu @ mu) / (p * sigma ** 2), rel=0.25)
    assert stats["steps_for_snr_1"] == pytest.approx(1 / stats["snr"])
    # Adam's share: 0.1² / (0.1² + 0.5²) on half the coordinates, 0 on the rest
    assert stats["adam_signal_share"] == pytest.approx(0.5 * 0.01 / 0.26, abs=3 * stats["adam_signal_share_se"])
    assert stats["adam_signal_share_se"] < 0.002

    pure_noise = gradient_noise.noise_stats(sigma * torch.randn(k, p))
    assert abs(pure_noise["signal"]) < 3 * pure_noise["signal_se"]
    assert abs(pure_noise["adam_signal_share"]) < 3 * pure_noise["adam_signal_share_se"]
    # four times the samples per draw: a quarter of the noise, four times the SNR
    averaged = gradient_noise.noise_stats(mu + sigma / 2 * torch.randn(k, p))
    assert averaged["snr"] == pytest.approx(4 * stats["snr"], rel=0.3)
    with pytest.raises(ValueError, match="at least 3"):
        gradient_noise.noise_stats(torch.zeros(2, 5))


def test_cosine_of_expected_gradients():
    torch.manual_seed(2)
    k, p = 40, 3000
    mu = torch.randn(p) * 0.1
    a, b = mu + 0.3 * torch.randn(k, p), -mu + 0.3 * torch.randn(k, p)
    opposite = gradient_noise.cosine(a, b)
    assert abs(opposite["cosine"] + 1) < max(0.1, 3 * opposite["se"]) and opposite["se"] < 0.1
    orthogonal = torch.zeros(p)
    orthogonal[::2], orthogonal[1::2] = mu[1::2], -mu[::2]  # ⟨mu, orthogonal⟩ = 0, same norm
    c = gradient_noise.cosine(a, orthogonal + 0.3 * torch.randn(k, p))
    assert abs(c["cosine"]) < 3 * c["se"]
    assert gradient_noise.cosine(a, 0.3 * torch.randn(k, p)) is None  # no signal to take a direction from


def test_the_probe_takes_each_grpo_step_and_the_weights_stay(tmp_path, policy):
    from test_grpo import config, digest_of, rows

    from sgglib.train.grpo import train_grpo, weights_digest

    probe = gradient_noise.GradientProbe()
    cfg = config(tmp_path, policy, max_steps=3, max_grad_norm=0.0, save_steps=0)  # lr 1e-3: any update shows
    result = train_grpo(cfg, train_rows=rows(8), val_rows=rows(2), extra_callbacks=[probe])
    assert len(probe.rows) == 3 and all(float(r.norm()) > 0 for r in probe.rows)
    assert probe.matrix().shape[1] == sum(p.numel() for p in result["model"].parameters())
    assert weights_digest(result["model"]) == digest_of(policy)


def test_probes_capture_a_gradient_per_step_and_leave_the_weights(tmp_path, monkeypatch, mini_cell):
    folder = mini_cell
    argv = ["--grpo", str(folder / "grpo" / "config.json"), "--sft", str(folder / "sft-more-0.01min" / "config.json"),
            "--variant", "placebo=shuffle_rewards=true,temperature=1.0", "--draws", "3",
            "--out", str(tmp_path / "gn.json")]
    gradient_noise.main(argv)
    out = json.loads((tmp_path / "gn.json").read_text())
    assert set(out["probes"]) == {"sft", "grpo", "placebo"}
    for name, probe in out["probes"].items():  # (a 2-step SFT fails every sample: GRPO's gradients are 0 here)
        assert probe["draws"] == 3 and probe["weights_unchanged"], name
        assert set(probe["groups"]) == {"vision", "embedding", "language"}
    assert out["probes"]["sft"]["mean_grad_norm"] > 0
    assert out["probes"]["placebo"]["changes"] == {"shuffle_rewards": True, "temperature": 1.0}
    assert out["probes"]["grpo"]["samples_per_step"] == 32 and out["probes"]["sft"]["samples_per_step"] == 16
    assert json.loads((folder / "probe-grpo-placebo" / "config.json").read_text())["temperature"] == 1.0
    # the SFT probe runs its recipe from GRPO's start, whatever model its own run began from
    assert json.loads((folder / "probe-grpo-sft" / "config.json").read_text())["model"] == out["start"]
    assert set(out["cosine_of_expected_gradients"]) == {"sft~grpo", "sft~placebo", "grpo~placebo"}
    assert set(out["cosine_of_expected_gradients"]["sft~grpo"]) == {"all", "vision", "embedding", "language"}
    kept = folder / "probe-grpo-grpo" / "gradients.pt"
    written = kept.stat().st_mtime_ns
    again = gradient_noise.main(argv + ["--reuse"])  # the draws are read back, not probed again
    assert again["probes"]["grpo"]["signal"] == out["probes"]["grpo"]["signal"]
    assert kept.stat().st_mtime_ns == written
    changed = [a if not a.startswith("placebo=") else "placebo=shuffle_rewards=true,temperature=0.9" for a in argv]
    gradient_noise.main(changed[:-1] + [str(tmp_path / "gn2.json"), "--reuse"])  # another config: probed again
    assert torch.load(folder / "probe-grpo-placebo" / "gradients.pt")["config"]["temperature"] == 0.9
    assert kept.stat().st_mtime_ns == written

    # a probe that leaves the gradient in place lets the optimizer move the weights, and the check says so
    keep = gradient_noise.GradientProbe.on_pre_optimizer_step

    def leave_gradients(self, args, state, control, model=None, **kwargs):
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        keep(self, args, state, control, model=model, **kwargs)
        for n, p in model.named_parameters():
            if n in grads:
                p.grad = grads[n]

    monkeypatch.setattr(gradient_noise.GradientProbe, "on_pre_optimizer_step", leave_gradients)
    with pytest.raises(RuntimeError, match="weights moved"):
        gradient_noise.main(argv[:4] + ["--draws", "3", "--out", str(tmp_path / "moved.json")])

    other_world = {**json.loads((folder / "sft" / "config.json").read_text()), "dataset": str(tmp_path / "elsewhere")}
    (tmp_path / "other.json").write_text(json.dumps(other_world))
    with pytest.raises(ValueError, match="one world"):
        gradient_noise.main(["--grpo", str(folder / "grpo" / "config.json"), "--sft", str(tmp_path / "other.json"),
                             "--draws", "3", "--out", str(tmp_path / "x")])


def test_splice_takes_one_group_from_the_run_and_the_rest_from_the_start(policy):
    from sgglib.models import load_model_and_processor, parameter_group

    start, _ = load_model_and_processor(policy, dtype="float32")
    run, _ = load_model_and_processor(policy, dtype="float32")
    with torch.no_grad():
        for p in run.parameters():
            p.add_(1.0)
    state = {k: v.clone() for k, v in start.state_dict().items()}
    model, _ = load_model_and_processor(policy, dtype="float32")
    theirs = dict(run.named_parameters())
    groups_seen = set()
    for groups in (("embedding",), ("vision", "language"), ()):
        splice.splice(model, state, run, groups)
        for name, param in model.named_parameters():
            group = parameter_group(name)
            groups_seen.add(group)
            expected = theirs[name] if group in groups else state[name]
            assert torch.equal(param, expected), (groups, name)
    assert groups_seen == {"vision", "embedding", "language"}
    if model.config.get_text_config().tie_word_embeddings:  # the LM head still reads the embedding it shares
        assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()


def test_splice_rows_frame_the_run_between_its_start_and_itself(tmp_path, mini_cell):
    run = mini_cell / "sft-more-0.01min"
    out = splice.main(["--start", str(mini_cell / "sft"), str(run), "--out", str(tmp_path / "s.json")])
    rows = out["runs"][0]["splices"]
    assert list(rows) == ["none", "vision", "embedding", "language", "body", "all"]
    own = json.loads((run / "metrics.json").read_text())
    start = json.loads((mini_cell / "sft" / "metrics.json").read_text())
    for key in splice.KEYS:  # greedy decoding: the splices of nothing and of everything are the two runs
        assert rows["all"][key] == pytest.approx(own[key]) and rows["none"][key] == pytest.approx(start[key])
