"""The training callbacks' own logic with a fake trainer state: the progress line, and the time budget that starts at
the first step (a step-0 validation is not training time)."""

from __future__ import annotations

import time
from types import SimpleNamespace

from sgglib.train.callbacks import Progress, TimeBudget, metric_key


def state(step, max_steps=100):
    return SimpleNamespace(global_step=step, max_steps=max_steps, is_world_process_zero=True)


def test_progress_line_has_step_eta_and_the_last_validation():
    # 10 steps in about 1 s: the ETA of the remaining 90 is about 9 s, capped by a 0.05-minute budget (3 s)
    lines = []
    progress = Progress("sft", max_minutes=0.05, every_s=0.0, echo=lambda text, flush: lines.append(text))
    progress.validation = SimpleNamespace(last_metrics=(10, {"recall": 22.5, "failure_rate": 0.0}))
    progress.on_train_begin(None, state(0), None)
    progress.on_step_begin(None, state(0), None)
    progress.t0 -= 1.0
    progress.on_step_end(None, state(10), None)
    assert lines[-1].startswith("[sft] step 10/100  0:01 elapsed, ETA 0:0")
    assert "val @ 10: recall 22.50" in lines[-1]
    assert Progress("grpo").line(0, 10).startswith("[grpo] step 0/10  0:00 elapsed, ETA ?")  # before any step


def test_time_budget_starts_at_the_first_step():
    # a slow step-0 validation between train begin and the first step does not count against the budget
    budget = TimeBudget(minutes=0.01)  # 0.6 s
    control = SimpleNamespace(should_training_stop=False, should_save=False)
    budget.on_train_begin(None, state(0), control)
    time.sleep(0.7)  # the step-0 validation
    budget.on_step_begin(None, state(0), control)
    budget.on_step_end(None, state(1), control)
    assert not control.should_training_stop
    budget.t0 -= 1.0
    budget.on_step_end(None, state(2), control)
    assert control.should_training_stop and control.should_save


def test_metric_keys_are_namespaced():
    # TRL's log keys become our columns; the measuring reward's column is dropped
    assert metric_key("loss") == "train/loss"
    assert metric_key("rewards/edge_hard_reward/mean") == "train/reward_edge_hard"
    assert metric_key("rewards/edge_hard_reward/std") == "train/reward_edge_hard_std"
    assert metric_key("rewards/sampled_stats/mean") is None
    assert metric_key("completions/mean_length") == "train/completion_length"
