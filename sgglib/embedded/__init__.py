"""The embedded default: a tiny genuine Qwen2-VL (:mod:`~sgglib.embedded.model`), its task-trained tokenizer
(:mod:`~sgglib.embedded.tokenizer`), and the base pre-training (:mod:`~sgglib.embedded.pretrain`) on the synthetic
world's auxiliary tasks (:mod:`~sgglib.embedded.aux_tasks`)."""
