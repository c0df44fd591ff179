"""GRPO's placebo control (``GRPORunConfig.shuffle_rewards``, ``docs/method.md#the-placebo-control``): each group's
rewards are shuffled among its G samples before the advantages are computed, so a run keeps everything of GRPO — the
samples, the sizes of its advantages and updates, the optimizer, the clock — except the information about which
sample is better. What such a run does to the greedy answer is what GRPO's updates do without their signal; a real
run is learning only where it beats it.

:func:`placebo_trainer` subclasses TRL's ``GRPOTrainer`` for it; :mod:`sgglib.train.grpo` uses it when the config
asks."""

from __future__ import annotations


def shuffle_within_groups(rewards_per_func, group_size: int, generator):
    """``rewards_per_func`` (samples × reward functions, groups of ``group_size`` consecutive rows) with each group's
    rows permuted by one permutation drawn from ``generator``: a sample keeps all of its reward functions' values
    together, and each group keeps its values, so its mean and std are unchanged.

    >>> import torch
    >>> r = torch.tensor([[1., 10.], [2., 20.], [3., 30.], [4., 40.]])
    >>> s = shuffle_within_groups(r, 2, torch.Generator().manual_seed(0))
    >>> sorted(s[:2, 0].tolist()), (s[:, 1] == 10 * s[:, 0]).all().item()
    ([1.0, 2.0], True)
    """
    import torch

    n = rewards_per_func.shape[0]
    if n % group_size:
        raise ValueError(f"{n} rewards do not split into groups of {group_size}")
    order = torch.stack([torch.randperm(group_size, generator=generator) for _ in range(n // group_size)])
    order = (order + torch.arange(0, n, group_size).unsqueeze(1)).flatten().to(rewards_per_func.device)
    return rewards_per_func[order]


def placebo_trainer(base, seed: int = 0):
    """A subclass of TRL's ``GRPOTrainer`` class ``base`` whose training rewards are shuffled within each group
    (:func:`shuffle_within_groups`) right after TRL gathers them from every process (``_calculate_rewards``), so
    every process draws the same permutation from a generator seeded by ``seed``. The sampling RNG is left alone:
    the first step's samples equal a real run's. Evaluation rewards are not shuffled. The logged reward means are
    unchanged (a permutation within groups keeps them); the per-sample reward columns are the shuffled ones."""

    class PlaceboGRPOTrainer(base):
        def __init__(self, *args, **kwargs):
            import torch

            super().__init__(*args, **kwargs)
            self._placebo_generator = torch.Generator().manual_seed(seed)

        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
            rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            if not self.model.training:
                return rewards_per_func
            return shuffle_within_groups(rewards_per_func, self.num_generations, self._placebo_generator)

    PlaceboGRPOTrainer.__qualname__ = PlaceboGRPOTrainer.__name__ = f"Placebo{base.__name__}"
    return PlaceboGRPOTrainer
