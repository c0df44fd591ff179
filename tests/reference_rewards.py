"""TEST ORACLE — an independent, loop-based transcription of the reference rewards (docs/method.md#rewards), exact match.

Not part of sgglib and never imported by it. Written from the paper summary and the reference's semantics, one
straightforward loop per rule, so that ``tests/test_rewards.py`` can check sgglib's vectorised rewards against it on
random well-formed completions. It keeps the reference's conventions on purpose: pure-Python IoU/GIoU without
clipping negative sides, a Hungarian cost matrix padded with 1e5 rows, ``id.split('.')[0]`` as the category, dict
look-ups that raise ``KeyError`` on undefined ids (zeroing the sample as the reference's ``except`` did), the last
predicted relation per pair in the soft edge reward, and — behind ``with_bug=True`` — the format bug.

It handles the well-formed inputs the tests feed it (tagged, fenced or bare JSON); it is not a parser.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
from scipy.optimize import linear_sum_assignment

FORMAT_W, NODE_W, EDGE_W = 1.0, 2.0, 5.0
SEM_W, GIOU_W, L1_W = 1.0, 2.0, 5.0  # Hungarian cost weights; node_box uses IoU weight 2 and L1 weight 5


def refine(name: str) -> str:
    return name.replace("_", " ").replace("-", " ").strip().lower()


def cat(object_id: str) -> str:
    return object_id.split(".")[0].lower()


def sim(a: str, b: str) -> float:  # exact match of categories (ids) or predicates
    return 1.0 if cat(a) == cat(b) else 0.0


def answer_json(text: str):
    m = re.search(r"<answer>(.*?)</answer>", text, re.DOTALL)
    body = m.group(1) if m else text
    body = body.strip()
    if body.startswith("```"):
        body = body[3:].removeprefix("json").rsplit("```", 1)[0]
    return json.loads(body)


def iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return 0.0 if union == 0 else inter / union


def giou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    if union == 0:
        return 0.0
    hull = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
    return inter / union - (hull - union) / hull


def l1(a, b) -> float:
    return sum(abs(x - y) for x, y in zip(a, b))


def pred_objects(text: str, scale) -> tuple[list[dict], list[dict]]:
    data = answer_json(text)
    sx, sy = scale
    objs = [{"id": refine(o["id"]), "bbox": [o["bbox"][0] / sx, o["bbox"][1] / sy, o["bbox"][2] / sx,
                                            o["bbox"][3] / sy]} for o in data["objects"]]
    return objs, data["relationships"]


# -- format ---------------------------------------------------------------------------------------------------------
def format_reward(text: str, strict: bool = True, with_bug: bool = False) -> float:
    tagged = re.fullmatch(r"<think>.*?</think>\s*<answer>(.*?)</answer>", text.strip(), re.DOTALL) is not None
    data = answer_json(text)
    if not (isinstance(data, dict) and "objects" in data and "relationships" in data):
        return 0.0
    ids = set()
    for o in data["objects"]:
        box = o.get("bbox")
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
            return 0.0
        ids.add(o["id"])
    if with_bug and data["objects"]:
        return 0.0  # the released code: len(set(list of dicts)) raises TypeError, swallowed -> 0
    for r in data["relationships"]:
        if not all(isinstance(r.get(k), str) for k in ("subject", "predicate", "object")):
            return 0.0
        if r["subject"] not in ids or r["object"] not in ids:
            return 0.0
    if tagged:
        return FORMAT_W
    return 0.0 if strict else 0.5 * FORMAT_W


# -- Hard Recall and Relax --------------------------------------------------------------------------------------------
def edge_hard_reward(text: str, solution: dict, scale=(1000, 1000)) -> float:
    try:
        objs, rels = pred_objects(text, scale)
        gt_boxes = {o["id"]: o["bbox"] for o in solution["objects"]}
        pred_boxes = {o["id"]: o["bbox"] for o in objs}
        reward = 0.0
        for g in solution["relationships"]:
            match = False
            for p in rels:
                if refine(g["predicate"]) != refine(p["predicate"]):
                    continue
                if iou(gt_boxes[g["subject"]], pred_boxes[refine(p["subject"])]) < 0.5:
                    continue
                if iou(gt_boxes[g["object"]], pred_boxes[refine(p["object"])]) < 0.5:
                    continue
                match = cat(refine(g["subject"])) == cat(refine(p["subject"])) and \
                    cat(refine(g["object"])) == cat(refine(p["object"]))
                if match:
                    break
            reward += EDGE_W * int(match)
        return reward / max(1, len(solution["relationships"]))
    except KeyError:  # a relation to an undefined id: the reference zeroes the whole sample
        return 0.0


def edge_relax_reward(text: str, solution: dict, scale=(1000, 1000)) -> float:
    try:
        objs, rels = pred_objects(text, scale)
        gt_boxes = {o["id"]: o["bbox"] for o in solution["objects"]}
        pred_boxes = {o["id"]: o["bbox"] for o in objs}
        reward = 0.0
        for g in solution["relationships"]:
            sims = []
            for p in rels:
                if iou(gt_boxes[g["subject"]], pred_boxes[refine(p["subject"])]) < 0.5:
                    continue
                if iou(gt_boxes[g["object"]], pred_boxes[refine(p["object"])]) < 0.5:
                    continue
                sims.append(sim(refine(g["subject"]), refine(p["subject"])) * sim(refine(g["object"]),
                            refine(p["object"])) * (refine(g["predicate"]) == refine(p["predicate"])))
            reward += EDGE_W * max(sims) if sims else 0.0
        return reward / max(1, len(solution["relationships"]))
    except KeyError:
        return 0.0


# -- Soft Recall --------------------------------------------------------------------------------------------------------
def bi_match(gts: list[dict], preds: list[dict]) -> list[tuple[dict, dict]]:
    pad = max(0, len(gts) - len(preds))
    cost = np.zeros((len(preds) + pad, len(gts)))
    for i, p in enumerate(preds):
        for j, g in enumerate(gts):
            cost[i, j] = SEM_W * (1 - sim(p["id"], g["id"])) + GIOU_W * (1 - giou(p["bbox"], g["bbox"])) \
                + L1_W * l1(p["bbox"], g["bbox"])
    if pad:
        cost[len(preds):, :] = 1e5
    rows, cols = linear_sum_assignment(cost)
    return [(gts[c], preds[r]) for r, c in zip(rows, cols) if r < len(preds)]


def node_acc_reward(text: str, solution: dict, scale=(1000, 1000)) -> float:
    objs, _ = pred_objects(text, scale)
    reward = sum(NODE_W * sim(g["id"], p["id"]) for g, p in bi_match(solution["objects"], objs))
    return reward / (len(solution["objects"]) or 1)


def node_box_reward(text: str, solution: dict, scale=(1000, 1000)) -> float:
    objs, _ = pred_objects(text, scale)
    reward = 0.0
    for g, p in bi_match(solution["objects"], objs):
        reward += (iou(g["bbox"], p["bbox"]) * 2.0 + math.exp(-l1(g["bbox"], p["bbox"])) * 5.0) / 7.0 * NODE_W
    return reward / (len(solution["objects"]) or 1)


def edge_soft_reward(text: str, solution: dict, scale=(1000, 1000)) -> float:
    objs, rels = pred_objects(text, scale)
    map_obj = {g["id"]: p["id"] for g, p in bi_match(solution["objects"], objs)}
    last = {(refine(r["subject"]), refine(r["object"])): refine(r["predicate"]) for r in rels}
    reward = 0.0
    for g in solution["relationships"]:
        if g["subject"] not in map_obj or g["object"] not in map_obj:
            continue
        pair = (map_obj[g["subject"]], map_obj[g["object"]])
        if pair in last:
            reward += sim(g["subject"], pair[0]) * sim(g["object"], pair[1]) * \
                (refine(g["predicate"]) == last[pair]) * EDGE_W
    return reward / max(1, len(solution["relationships"]))


REFERENCE = {
    "format_reward": lambda text, solution, scale: format_reward(text),
    "edge_hard_reward": edge_hard_reward,
    "edge_relax_reward": edge_relax_reward,
    "node_acc_reward": node_acc_reward,
    "node_box_reward": node_box_reward,
    "edge_soft_reward": edge_soft_reward,
}
