"""Box geometry on ``(x1, y1, x2, y2)`` boxes: IoU, GIoU, L1, vectorised over all pairs (and row-wise IoU).

Semantics follow the reference's ``compute_iou`` / ``compute_giou`` / ``box_L1``, with one
deliberate difference: a box whose corners are swapped (``x2 < x1``) has zero width here, where the reference
would multiply two negative sides into a positive "area". Such a box overlaps nothing.

>>> float(iou_matrix([[0, 0, 2, 2]], [[1, 0, 3, 2]])[0, 0])
0.3333333333333333
"""

from __future__ import annotations

import numpy as np


def _as_boxes(boxes) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    return arr.reshape(-1, 4)


# One home for the arithmetic, on broadcastable (..., 4) arrays: the matrix functions pass (n, 1, 4) and (1, m, 4),
# iou_pairs passes (n, 4) twice. np.maximum instead of np.clip and one errstate per call: these run on ~20×20
# arrays once per completion and reward, where numpy's per-call overhead is the cost (benchmarks/rewards_speed.py).
def _iou_union(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IoU (0 where the union is empty or the arithmetic overflowed) and the union."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        # inf areas from absurd coordinates are fine: they give IoU 0, never NaN
        area_a = np.maximum(a[..., 2] - a[..., 0], 0.0) * np.maximum(a[..., 3] - a[..., 1], 0.0)
        area_b = np.maximum(b[..., 2] - b[..., 0], 0.0) * np.maximum(b[..., 3] - b[..., 1], 0.0)
        iw = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
        ih = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
        inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
        union = area_a + area_b - inter
        iou = inter / union
    iou[~((union > 0) & np.isfinite(iou))] = 0.0
    return iou, union


def iou_matrix(a, b) -> np.ndarray:
    """``len(a) × len(b)`` IoU; 0 where the union is empty (two degenerate boxes), as the reference."""
    return _iou_union(_as_boxes(a)[:, None, :], _as_boxes(b)[None, :, :])[0]


def iou_pairs(a, b) -> np.ndarray:
    """Row-wise IoU of ``a[i]`` with ``b[i]`` (same length): the diagonal of :func:`iou_matrix`, without the rest."""
    return _iou_union(_as_boxes(a), _as_boxes(b))[0]


def giou_matrix(a, b) -> np.ndarray:
    """Generalised IoU, in [-1, 1]; 0 where the union is empty (the reference's convention)."""
    a, b = _as_boxes(a)[:, None, :], _as_boxes(b)[None, :, :]
    iou, union = _iou_union(a, b)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        hw = np.maximum(np.maximum(a[..., 2], b[..., 2]) - np.minimum(a[..., 0], b[..., 0]), 0.0)
        hh = np.maximum(np.maximum(a[..., 3], b[..., 3]) - np.minimum(a[..., 1], b[..., 1]), 0.0)
        hull = hw * hh
        giou = np.where(hull > 0, iou - (hull - union) / hull, iou)
    giou[~(union > 0)] = 0.0
    finite = np.isfinite(giou)
    if not finite.all():  # (np.nan_to_num costs more than the rest of the function on a 20×20 matrix)
        giou = np.where(finite, giou, np.where(giou == -np.inf, -1.0, 0.0))
    return giou


def l1_matrix(a, b) -> np.ndarray:
    """Sum of absolute coordinate differences (the reference's ``box_L1``)."""
    a, b = _as_boxes(a), _as_boxes(b)
    return np.abs(a[:, None, :] - b[None, :, :]).sum(-1)
