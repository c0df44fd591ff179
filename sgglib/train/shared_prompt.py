"""Each prompt runs once per group in GRPO's loss (``GRPORunConfig.share_prompt``,
``docs/method.md#one-prompt-pass-per-group``).

TRL scores a group's G completions as G full sequences, so the same prompt — its image through the vision tower, then
the system and user text through the decoder — runs G times, forward and backward. Here each distinct prompt runs
once, with gradients, and leaves its key/value cache; the cache is indexed out to the prompt's G rows, and only the
completions run G times, through TRL's own fused LM head. The shared prefix stops one token short of the prompt's
end: that last token joins each completion's forward, so every completion token, the first included, is scored by
the same head from the same hidden states as in TRL's forward. The gradient of the prompt's activations is the sum
over its G rows, as in the unshared forward. The result equals TRL's up to floating-point summation order.

:func:`shared_prompt_trainer` subclasses TRL's ``GRPOTrainer`` for it; :mod:`sgglib.train.grpo` uses it when the
config asks. It handles the Qwen2-VL family (M-RoPE positions from the model's ``get_rope_index``) and hands every
other case to TRL's method: gradient checkpointing (which drops the cache), MoE auxiliary losses, other vision
towers' inputs and text-only batches. A batch where no prompt repeats still takes the shared path (exact, with
nothing saved)."""

from __future__ import annotations

import inspect


def prompt_groups(prompt_ids, prompt_mask, images=None):
    """``(first, inverse)``: the index of each distinct prompt's first row, and for each row the position of its
    prompt in ``first``. Rows share a prompt when their ids, masks and images (``images[i]``: the row's pixel rows,
    or None) are all equal.

    >>> import torch
    >>> first, inverse = prompt_groups(torch.tensor([[1, 2], [3, 4], [1, 2]]), torch.ones(3, 2))
    >>> first.tolist(), inverse.tolist()
    ([0, 1], [0, 1, 0])
    """
    import torch

    first: list[int] = []
    inverse: list[int] = []
    for i in range(len(prompt_ids)):
        for u, j in enumerate(first):
            if (torch.equal(prompt_ids[i], prompt_ids[j]) and torch.equal(prompt_mask[i], prompt_mask[j])
                    and (images is None or torch.equal(images[i], images[j]))):
                inverse.append(u)
                break
        else:
            inverse.append(len(first))
            first.append(i)
    device = prompt_ids.device
    return torch.tensor(first, device=device), torch.tensor(inverse, device=device)


def vision_language_model(model):
    """The multimodal backbone (``Qwen2VLModel``) under any PEFT or accelerate wrapper: where ``get_rope_index``
    lives."""
    while hasattr(model, "module"):  # DDP and the like
        model = model.module
    if hasattr(model, "get_base_model"):  # PEFT
        model = model.get_base_model()
    return model.model


def pixel_rows_per_sample(image_grid_thw, images_per_sample: list[int]) -> list[int]:
    """How many rows of the flat ``pixel_values`` each sample's images take (Qwen2-VL: the product of each image's
    grid, summed over the sample's images)."""
    import torch

    return [int(g.prod(dim=-1).sum()) for g in torch.split(image_grid_thw, images_per_sample)]


def _cache_name(backbone) -> str:
    """The keyword the backbone's forward takes its key/value cache by (``cache`` in recent transformers)."""
    return "cache" if "cache" in inspect.signature(backbone.forward).parameters else "past_key_values"


def shared_prompt_logps(model, input_ids, attention_mask, logits_to_keep: int, pixel_values, image_grid_thw,
                        num_images=None, mm_token_type_ids=None):
    """Per-token log-probabilities and entropies of the last ``logits_to_keep`` tokens of each row (TRL's
    ``_get_per_token_logps_and_entropies`` for one chunk of a Qwen2-VL batch), with each distinct prompt run once.
    ``model`` must carry TRL's fused LM head (``fused_lm_head=True``), which applies the sampling temperature.
    Returns ``(log_probs, entropy, n_prompts)``; ``entropy`` is None when the head was built without it."""
    import torch

    backbone = vision_language_model(model)
    n, length = input_ids.shape
    p = length - logits_to_keep - 1  # the shared prefix: the prompt without its last token
    images_per_row = [1] * n if num_images is None else list(num_images)
    pixel_rows = torch.split(pixel_values, pixel_rows_per_sample(image_grid_thw, images_per_row))
    grids = torch.split(image_grid_thw, images_per_row)
    first, inverse = prompt_groups(input_ids[:, :p + 1], attention_mask[:, :p + 1],
                                   [torch.cat([grids[i].flatten().to(pixel_rows[i].dtype), pixel_rows[i].flatten()])
                                    for i in range(n)])
    with torch.no_grad():  # the model's own M-RoPE positions of the whole sequences
        position_ids, _ = backbone.get_rope_index(input_ids, mm_token_type_ids=mm_token_type_ids,
                                                  image_grid_thw=image_grid_thw, attention_mask=attention_mask)
    rows = first.tolist()
    prefix = {"input_ids": input_ids[first, :p], "attention_mask": attention_mask[first, :p],
              "position_ids": position_ids[:, first, :p], "pixel_values": torch.cat([pixel_rows[i] for i in rows]),
              "image_grid_thw": torch.cat([grids[i] for i in rows])}
    if mm_token_type_ids is not None:
        prefix["mm_token_type_ids"] = mm_token_type_ids[first, :p]
    key = _cache_name(backbone)
    out = model(**prefix, use_cache=True, logits_to_keep=1)
    cache = getattr(out, key)
    for layer in cache.layers:  # each prompt's keys and values, once for every row of its group
        layer.batch_select_indices(inverse)
    tail = input_ids[:, p:]  # the prompt's last token, then the completion
    labels = tail.masked_fill(attention_mask[:, p:] == 0, -100)
    out = model(input_ids=tail, attention_mask=attention_mask, position_ids=position_ids[:, :, p:], labels=labels,
                fused_lm_head=True, **{key: cache})
    return out.log_probs, out.entropy, len(rows)


def shared_prompt_trainer(base):
    """A subclass of TRL's ``GRPOTrainer`` class ``base`` whose loss runs each distinct prompt once
    (:func:`shared_prompt_logps`). It overrides ``_get_per_token_logps_and_entropies`` and calls TRL's own for
    every case it does not handle (the module's docstring). It logs ``train/prompt_share``: rows per prompt pass,
    G when each step's groups are whole, 1 when nothing was shared."""

    class SharedPromptGRPOTrainer(base):
        def _shares_prompts(self, model, compute_aux_loss, pixel_values, image_grid_thw, others) -> bool:
            unwrapped = self.accelerator.unwrap_model(model)
            checkpointing = getattr(unwrapped, "is_activation_checkpointing", None)  # transformers >= 5.x's name
            if checkpointing is None:
                checkpointing = getattr(unwrapped, "is_gradient_checkpointing", False)
            return (not compute_aux_loss and pixel_values is not None and image_grid_thw is not None
                    and not any(v is not None for v in others.values()) and not checkpointing
                    and hasattr(vision_language_model(unwrapped), "get_rope_index"))

        def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep,
                                               batch_size=None, compute_entropy=False, compute_aux_loss=False,
                                               pixel_values=None, image_grid_thw=None, num_images=None,
                                               mm_token_type_ids=None, **others):
            if not self._shares_prompts(model, compute_aux_loss, pixel_values, image_grid_thw, others):
                return super()._get_per_token_logps_and_entropies(
                    model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy, compute_aux_loss,
                    pixel_values=pixel_values, image_grid_thw=image_grid_thw, num_images=num_images,
                    mm_token_type_ids=mm_token_type_ids, **others)
            import torch

            batch_size = batch_size or input_ids.size(0)
            images = [1] * input_ids.size(0) if num_images is None else list(num_images)
            rows_per_sample = pixel_rows_per_sample(image_grid_thw, images)
            logps, entropies, passes = [], [], 0
            for start in range(0, input_ids.size(0), batch_size):  # TRL's chunks
                end = min(start + batch_size, input_ids.size(0))
                img, row = sum(images[:start]), sum(rows_per_sample[:start])
                chunk = slice(start, end)
                with self.accelerator.autocast():
                    lp, ent, n = shared_prompt_logps(
                        model, input_ids[chunk], attention_mask[chunk], logits_to_keep,
                        pixel_values[row:row + sum(rows_per_sample[chunk])],
                        image_grid_thw[img:img + sum(images[chunk])], images[chunk],
                        None if mm_token_type_ids is None else mm_token_type_ids[chunk])
                logps.append(lp)
                entropies.append(ent)
                passes += n
            if model.training:
                self._metrics["train"]["prompt_share"].append(input_ids.size(0) / passes)
            entropy = torch.cat(entropies) if compute_entropy else None
            return torch.cat(logps), entropy, None

    SharedPromptGRPOTrainer.__qualname__ = SharedPromptGRPOTrainer.__name__ = f"SharedPrompt{base.__name__}"
    return SharedPromptGRPOTrainer
