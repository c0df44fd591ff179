"""Box geometry on ``(x1, y1, x2, y2)`` boxes: IoU, GIoU, L1, vectorised over all pairs.

Semantics follow the reference's ``compute_iou`` / ``compute_giou`` / ``box_L1`` (PAPER.md §2), with one
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


def _areas(b: np.ndarray) -> np.ndarray:
    # inf areas from absurd coordinates are fine: they give IoU 0, never NaN (nan_to_num below)
    with np.errstate(over="ignore"):
        return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def _inter_union(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    with np.errstate(over="ignore", invalid="ignore"):
        inter = wh[..., 0] * wh[..., 1]
        union = _areas(a)[:, None] + _areas(b)[None, :] - inter
    return inter, union


def iou_matrix(a, b) -> np.ndarray:
    """``len(a) × len(b)`` IoU; 0 where the union is empty (two degenerate boxes), as the reference."""
    a, b = _as_boxes(a), _as_boxes(b)
    inter, union = _inter_union(a, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(union > 0, inter / union, 0.0)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def giou_matrix(a, b) -> np.ndarray:
    """Generalised IoU, in [-1, 1]; 0 where the union is empty (the reference's convention)."""
    a, b = _as_boxes(a), _as_boxes(b)
    inter, union = _inter_union(a, b)
    lt = np.minimum(a[:, None, :2], b[None, :, :2])
    rb = np.maximum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        hull = wh[..., 0] * wh[..., 1]
        iou = np.where(union > 0, inter / union, 0.0)
        giou = np.where(hull > 0, iou - (hull - union) / hull, iou)
    giou = np.where(union > 0, giou, 0.0)
    return np.nan_to_num(giou, nan=0.0, posinf=0.0, neginf=-1.0)


def l1_matrix(a, b) -> np.ndarray:
    """Sum of absolute coordinate differences (the reference's ``box_L1``)."""
    a, b = _as_boxes(a), _as_boxes(b)
    return np.abs(a[:, None, :] - b[None, :, :]).sum(-1)
