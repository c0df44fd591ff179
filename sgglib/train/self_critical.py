"""The self-critical baseline of GRPO (``GRPORunConfig.baseline="greedy"``, ``docs/method.md#the-advantage-baseline``):
a sample's advantage is its reward minus the reward of the current policy's greedy answer to the same prompt (SCST,
Rennie et al. 2017), instead of GRPO's group mean. :func:`self_critical_trainer` subclasses TRL's ``GRPOTrainer``
for it; :mod:`sgglib.train.grpo` uses it when the config asks."""

from __future__ import annotations

from .. import prompts
from ..models import predict


def greedy_decoder(processor, cfg, vocabulary=None):
    """``(model, examples) → greedy completions`` for GRPO rows (``image``, ``image_id``) under the run's prompt and
    system turn and its rollout budget (:func:`sgglib.models.predict`)."""
    user = prompts.user_prompt(vocabulary if cfg.prompt == "closed" else None)
    system = prompts.system_prompt(cfg.system_prompt)

    def decode(model, examples):
        records = predict(model, processor, examples, user, system=system, batch_size=len(examples),
                          max_new_tokens=cfg.max_completion_length, progress=False)
        return [r["completion"] for r in records]

    return decode


def self_critical_advantages(rewards, greedy, group_size: int, scale: str = "group"):
    """SCST advantages: ``rewards − greedy`` (both per sample, the greedy reward of the sample's prompt), divided by
    the group's reward std (``scale="group"``; + 1e-4, as TRL), the batch's (``"batch"``) or not at all
    (``"none"``). A group whose samples all score alike — all equal to the greedy answer's reward, or all better, or
    all worse — still moves the policy, unlike GRPO's group mean; a sample that ties the greedy answer gets 0.

    >>> import torch
    >>> self_critical_advantages(torch.tensor([1., 0., 0., 0.]), torch.tensor([0., 0., 0., 0.]), 2, "none").tolist()
    [1.0, 0.0, 0.0, 0.0]
    """
    import torch

    advantages = rewards - greedy
    if scale == "group":
        std = rewards.view(-1, group_size).std(dim=1).repeat_interleave(group_size)
        advantages = advantages / (std + 1e-4)
    elif scale == "batch":
        advantages = advantages / (rewards.std() + 1e-4)
    elif scale != "none":
        raise ValueError(f"scale must be group, batch or none, got {scale!r}")
    return torch.nan_to_num(advantages, nan=0.0)


def self_critical_trainer(base):
    """A subclass of TRL's ``GRPOTrainer`` class ``base`` whose advantages use the greedy baseline
    (``baseline="greedy"``). It overrides two methods and calls TRL's own: ``_calculate_rewards`` keeps the rewards
    TRL computed for the step's samples, and ``_generate_and_score_completions`` decodes each prompt of the step
    greedily with the current policy (``greedy_answers(model, inputs)``), scores those answers with the same weighted
    rewards and replaces TRL's group-mean advantages by :func:`self_critical_advantages`. It logs
    ``train/greedy_reward`` (the baseline's mean) and ``train/beats_greedy`` (% of samples scoring above it)."""

    class SelfCriticalGRPOTrainer(base):
        def __init__(self, *args, greedy_answers, **kwargs):
            super().__init__(*args, **kwargs)
            self.greedy_answers = greedy_answers
            self._step_rewards = None

        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
            self._step_rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            return self._step_rewards

        def _weighted(self, per_func):
            return (per_func * self.reward_weights.to(per_func.device).unsqueeze(0)).nansum(dim=1)

        def _greedy_rewards(self, inputs):
            """The weighted reward of the greedy answer to each input's prompt (one decode per distinct image)."""
            import torch

            order = list(dict.fromkeys(str(x["image_id"]) for x in inputs))
            first = {str(x["image_id"]): x for x in reversed(inputs)}
            examples = [first[i] for i in order]
            model = self.accelerator.unwrap_model(self.model)
            was_training = model.training
            try:
                answers = dict(zip(order, self.greedy_answers(model, examples)))
            finally:
                model.train(was_training)
            completions = [answers[str(x["image_id"])] for x in inputs]
            keys = [k for k in inputs[0] if k not in ("prompt", "completion", "completion_ids", "image")]
            columns = {k: [x[k] for x in inputs] for k in keys}
            per_func = torch.zeros(len(inputs), len(self.reward_funcs))
            for j, (func, weight) in enumerate(zip(self.reward_funcs, self.reward_weights.tolist())):
                if weight:  # weight-0 measures (SampledStats) describe the samples, not the greedy answers
                    values = func(prompts=[x["prompt"] for x in inputs], completions=completions, **columns)
                    per_func[:, j] = torch.tensor([v if v is not None else float("nan") for v in values])
            return self._weighted(per_func)

        def _generate_and_score_completions(self, inputs):
            from accelerate.utils import gather

            output = super()._generate_and_score_completions(inputs)
            if not self.model.training:  # TRL's evaluation loop: keep the group baseline
                return output
            device = output["advantages"].device
            rewards = self._weighted(self._step_rewards).to(device)  # every process's samples, in TRL's order
            greedy = gather(self._greedy_rewards(inputs).to(device))
            advantages = self_critical_advantages(rewards, greedy, self.num_generations, self.scale_rewards)
            rank = self.accelerator.process_index
            output["advantages"] = advantages[rank * len(inputs):(rank + 1) * len(inputs)]
            self._metrics["train"]["greedy_reward"].append(greedy.mean().item())
            self._metrics["train"]["beats_greedy"].append(100.0 * (rewards > greedy + 1e-9).float().mean().item())
            return output

    SelfCriticalGRPOTrainer.__qualname__ = SelfCriticalGRPOTrainer.__name__ = f"SelfCritical{base.__name__}"
    return SelfCriticalGRPOTrainer
