"""The embedded default's tokenizer: a byte-level BPE trained on the task's own text, dressed as Qwen2-VL's.

Qwen2-VL's real tokenizer has 151k tokens; a 0.6 M-parameter model cannot afford that embedding table, and nothing
of it can be downloaded here. So we train a small byte-level BPE (GPT-2/Qwen style, every byte is reachable, nothing
is ever ``<unk>``) on scene-graph JSON and prompt text, and give it what the rest of the stack relies on:

* Qwen's special tokens (``<|im_start|>``, ``<|im_end|>``, ``<|vision_start|>``, ``<|image_pad|>`` …), so the stock
  ``Qwen2VLProcessor`` logic expands image placeholders and the stock chat template renders conversations;
* the integers ``0..1000`` (bare and after a space) as single tokens: Qwen2-VL writes boxes on a 0–1000 grid,
  and a tiny model learns coordinates far more easily when a number is one token rather than 2–3 digit pieces
  (``docs/findings.md#the-embedded-tokenizer``);
* TRL's Qwen2.5-VL chat template (byte-identical to Qwen2-VL's), so ``assistant_only_loss`` can swap in TRL's
  training variant with ``{% generation %}`` markers.

>>> tok = train_tokenizer(['{"objects": [{"id": "red circle.1", "bbox": [10, 20, 300, 400]}]}'], vocab_size=300)
>>> [tok.decode([i]) for i in tok("[10, 20, 300, 400]")["input_ids"]][:4]
['[', '10', ',', ' 20']
"""

from __future__ import annotations

from typing import Iterable

# Qwen2-VL's special tokens, in Qwen's order (their ids differ here, but every consumer looks them up by string).
QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Integers written as one token each: the Qwen2-VL 0–1000 box grid.
MAX_SINGLE_TOKEN_INT = 1000


def qwen_chat_template() -> str:
    """TRL's copy of the Qwen2.5-VL chat template (identical to Qwen2-VL's). Read from the installed TRL, not
    copied, so TRL recognises it and can substitute its ``{% generation %}`` training variant."""
    from trl.chat_template_utils import qwen2_5_vl_chat_template

    return qwen2_5_vl_chat_template


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1500, max_int: int = MAX_SINGLE_TOKEN_INT,
                    use_regex: bool = True, max_token_length: int | None = None):
    """Train a byte-level BPE on ``texts`` and wrap it as a ``PreTrainedTokenizerFast`` with Qwen's special tokens.

    ``vocab_size`` counts the BPE merges' vocabulary; the special tokens and the ``max_int + 1`` number tokens come
    on top; ``max_token_length`` caps a merged token's length in characters. Deterministic for a given list of texts.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=use_regex)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=QWEN_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
        max_token_length=max_token_length,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    # Added tokens are matched leftmost-longest before BPE runs, so "1000" is one token and "person.12" ends in "12".
    # Each number also gets a space-prefixed twin (" 160", the byte-level "Ġ160"): JSON writes ", 160", and
    # without the twin every coordinate would cost a lone-space token too (~25% longer targets).
    numbers = [str(i) for i in range(max_int + 1)]
    tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in numbers + [" " + n for n in numbers]])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",  # Qwen2-VL-Instruct's eos: generation stops at the end of the assistant turn
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        model_max_length=32768,
        padding_side="left",  # generation pads on the left; TRL's collators set the side they need explicitly
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = qwen_chat_template()
    return fast
