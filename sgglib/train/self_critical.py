"""The self-critical baseline of GRPO (``GRPORunConfig.baseline="greedy"``, ``docs/method.md#the-advantage-baseline``):
a sample's advantage is its reward minus the reward of the current policy's greedy answer to the same prompt (SCST,
Rennie et al. 2017; ReMax), instead of GRPO's group mean. The greedy answer is one row of the group: the first of
each prompt's G rollouts is decoded greedily, in the same ``generate`` call as the G − 1 samples, so the baseline
costs no extra decoding. :func:`self_critical_trainer` subclasses TRL's ``GRPOTrainer`` for it;
:mod:`sgglib.train.grpo` uses it when the config asks."""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial


def greedy_rows(n: int, group_size: int, offset: int = 0):
    """A bool mask of ``n`` rollouts: True for the first of each group of ``group_size`` (global row index
    ``offset + i`` divisible by it), the row decoded greedily.

    >>> greedy_rows(6, 3).tolist()
    [True, False, False, True, False, False]
    """
    import torch

    return (torch.arange(offset, offset + n) % group_size) == 0


def forced_greedy_processor(rows):
    """A ``transformers`` logits processor that leaves only each masked row's best token (the others −inf): those
    rows decode greedily while the rest sample. ``generate`` runs custom processors before temperature, top-k and
    top-p, none of which moves the best token, so a masked row's answer is the greedy one."""
    import torch
    from transformers import LogitsProcessor

    class ForcedGreedy(LogitsProcessor):
        def __call__(self, input_ids, scores):
            mask = rows.to(scores.device)
            if not mask.any():
                return scores
            best = scores[mask].argmax(dim=-1, keepdim=True)
            forced = torch.full_like(scores[mask], float("-inf")).scatter(1, best, 0.0)
            scores = scores.clone()
            scores[mask] = forced
            return scores

    return ForcedGreedy()


@contextmanager
def decoding_rows_greedily(model, rows):
    """While open, ``model.generate`` decodes the rows of ``rows`` greedily (:func:`forced_greedy_processor`);
    the instance attribute it sets is removed on exit."""
    from transformers import LogitsProcessorList

    model.generate = partial(type(model).generate, model,
                             logits_processor=LogitsProcessorList([forced_greedy_processor(rows)]))
    try:
        yield model
    finally:
        del model.generate


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
    (``baseline="greedy"``). It overrides two methods and calls TRL's own: ``_generate_single_turn`` decodes the
    first rollout of each group greedily (:func:`decoding_rows_greedily`; training steps only), and
    ``_generate_and_score_completions`` replaces TRL's group-mean advantages by :func:`self_critical_advantages`
    against that row's reward, from the rewards TRL computed (``_calculate_rewards``). The greedy row's own
    advantage is 0, so it adds nothing to the policy gradient; it stays in the loss's token count. It logs
    ``train/greedy_reward`` (the baseline's mean) and ``train/beats_greedy`` (% of the G − 1 samples scoring above
    it)."""

    class SelfCriticalGRPOTrainer(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._step_rewards = None
            self._force_greedy = False

        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
            self._step_rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            return self._step_rewards

        def _generate_single_turn(self, prompt_ids, *args, **kwargs):
            if not self._force_greedy:
                return super()._generate_single_turn(prompt_ids, *args, **kwargs)
            rows = greedy_rows(len(prompt_ids), self.num_generations, self.accelerator.process_index * len(prompt_ids))
            with decoding_rows_greedily(self.accelerator.unwrap_model(self.model), rows):
                return super()._generate_single_turn(prompt_ids, *args, **kwargs)

        def _generate_and_score_completions(self, inputs):
            self._force_greedy = self.model.training  # TRL's evaluation loop keeps plain sampling and the group mean
            try:
                output = super()._generate_and_score_completions(inputs)
            finally:
                self._force_greedy, training = False, self._force_greedy
            if not training:
                return output
            device = output["advantages"].device
            per_func = self._step_rewards  # every process's samples, in TRL's order: groups of G, greedy row first
            rewards = (per_func * self.reward_weights.to(per_func.device).unsqueeze(0)).nansum(dim=1).to(device)
            G = self.num_generations
            greedy = rewards.view(-1, G)[:, 0].repeat_interleave(G)
            advantages = self_critical_advantages(rewards, greedy, G, self.scale_rewards)
            rank = self.accelerator.process_index
            output["advantages"] = advantages[rank * len(inputs):(rank + 1) * len(inputs)]
            sampled = ~greedy_rows(len(rewards), G).to(device)
            self._metrics["train"]["greedy_reward"].append(greedy[~sampled].mean().item())
            self._metrics["train"]["beats_greedy"].append(
                100.0 * (rewards[sampled] > greedy[sampled] + 1e-9).float().mean().item())
            return output

    SelfCriticalGRPOTrainer.__qualname__ = SelfCriticalGRPOTrainer.__name__ = f"SelfCritical{base.__name__}"
    return SelfCriticalGRPOTrainer
