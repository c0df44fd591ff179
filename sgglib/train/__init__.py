"""Training on stock TRL: SFT (:mod:`~sgglib.train.sft`), GRPO (:mod:`~sgglib.train.grpo`), the zero-shot
baselines (:mod:`~sgglib.train.zero_shot`) and what they share (:mod:`~sgglib.train.common`). Each module is also a
command line: ``python -m sgglib.train.sft --help``."""
