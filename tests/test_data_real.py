"""VG150 raw files, PSG json and the reference's hub rows → the common schema; bad input is never silent.

Fixtures are written in exactly the real formats (h5 via h5py, the two json files, small JPEG/PNG images).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from sgglib.data import DataError, LoadReport, load_sgg, vocabulary
from sgglib.data.hub import from_reference_row
from sgglib.data.schema import clean_graph
from sgglib.data.psg import convert_psg
from sgglib.data.vg150 import box_to_xyxy, convert_vg150

# Original-pixel xyxy boxes per image; sizes with a longest side of 512 make boxes_1024 = 2 × pixels (exact ints).
VG_IMAGES = [  # (image_id, W, H, split, [(label, xyxy)], [(s, o, predicate)] local indices)
    (101, 512, 256, 0, [(1, (10, 20, 110, 220)), (2, (100, 30, 300, 250))], [(0, 1, 1)]),
    (102, 256, 512, 0, [(2, (0, 0, 256, 512)), (3, (40, 50, 60, 70)), (1, (5, 5, 7, 9))], [(1, 0, 2), (2, 0, 1)]),
    (103, 512, 512, 0, [(3, (1, 1, 5, 5))], []),  # no relations: filtered by the protocol
    (104, 400, 512, 0, [(1, (20, 20, 80, 80)), (1, (100, 100, 300, 200))], [(0, 1, 2), (1, 0, 1)]),
    (105, 512, 384, 2, [(3, (50, 60, 150, 160)), (2, (200, 100, 300, 300))], [(1, 0, 1)]),
]
LABELS = {"1": "person", "2": "bike", "3": "traffic_light"}
PREDICATES = {"1": "riding", "2": "near"}


def write_vg150(root: Path, images=VG_IMAGES, corrupt: tuple[int, ...] = (), drop_key: str | None = None) -> Path:
    (root / "VG_100K").mkdir(parents=True)
    labels, boxes, first_box, last_box, rels, preds, first_rel, last_rel, split, image_data = ([] for _ in range(10))
    for image_id, w, h, sp, objs, rs in images:
        s = 1024 / max(w, h)
        first_box.append(len(labels) if objs else -1)
        for label, (x1, y1, x2, y2) in objs:
            labels.append([label])
            boxes.append([(x1 + x2) / 2 * s, (y1 + y2) / 2 * s, (x2 - x1) * s, (y2 - y1) * s])
        last_box.append(len(labels) - 1 if objs else -1)
        first_rel.append(len(rels) if rs else -1)
        for a, b, p in rs:
            rels.append([first_box[-1] + a, first_box[-1] + b])  # global box indices
            preds.append([p])
        last_rel.append(len(rels) - 1 if rs else -1)
        split.append(sp)
        image_data.append({"image_id": image_id, "width": w, "height": h, "url": "", "coco_id": None,
                           "flickr_id": None})
        path = root / "VG_100K" / f"{image_id}.jpg"
        if image_id in corrupt:
            path.write_bytes(b"not a jpeg")
        else:
            Image.new("RGB", (w, h), (90, 120, 150)).save(path)
    data = {"labels": np.array(labels, np.int64), "boxes_1024": np.array(boxes, np.int32),
            "img_to_first_box": np.array(first_box), "img_to_last_box": np.array(last_box),
            "relationships": np.array(rels, np.int32).reshape(-1, 2), "predicates": np.array(preds, np.int64),
            "img_to_first_rel": np.array(first_rel), "img_to_last_rel": np.array(last_rel),
            "split": np.array(split)}
    with h5py.File(root / "VG-SGG-with-attri.h5", "w") as f:
        for k, v in data.items():
            if k != drop_key:
                f.create_dataset(k, data=v)
    (root / "VG-SGG-dicts-with-attri.json").write_text(json.dumps({
        "label_to_idx": {v: int(k) for k, v in LABELS.items()}, "idx_to_label": LABELS,
        "predicate_to_idx": {v: int(k) for k, v in PREDICATES.items()}, "idx_to_predicate": PREDICATES}))
    (root / "image_data.json").write_text(json.dumps(image_data))
    return root


def test_vg150_box_conversion_round_trip():
    # cx,cy,w,h at longest side 1024 → xyxy in original pixels, exact when the scale is a power of two
    assert box_to_xyxy([240, 480, 400, 800], 512, 256) == [20.0, 40.0, 220.0, 440.0]
    assert box_to_xyxy([100, 100, 50, 20], 2048, 1000) == [150.0, 180.0, 250.0, 220.0]


def test_vg150_splits_boxes_ids_relations(tmp_path):
    root = write_vg150(tmp_path / "vg")
    train, rep = convert_vg150(root, "train", num_val=1)
    val, _ = convert_vg150(root, "val", num_val=1)
    test, _ = convert_vg150(root, "test", num_val=1)
    # 103 has no relations → filtered and counted; val = the first filtered train image
    assert [r["image_id"] for r in val] == ["101"] and [r["image_id"] for r in train] == ["102", "104"]
    assert [r["image_id"] for r in test] == ["105"]
    assert rep.counts["images_skipped_no_relations"] == 1 and rep.examples["images_skipped_no_relations"] == ["103"]
    for row, (image_id, w, h, _, objs, rs) in zip(val + train + test, [VG_IMAGES[i] for i in (0, 1, 3, 4)]):
        assert (row["width"], row["height"]) == (w, h)
        assert [o["bbox"] for o in row["objects"]] == [list(map(float, b)) for _, b in objs]  # box round trip
    r102 = train[0]
    assert [o["id"] for o in r102["objects"]] == ["bike.1", "traffic light.1", "person.1"]  # names normalised
    assert r102["relationships"] == [{"subject": "traffic light.1", "predicate": "near", "object": "bike.1"},
                                     {"subject": "person.1", "predicate": "riding", "object": "bike.1"}]
    assert [o["id"] for o in train[1]["objects"]] == ["person.1", "person.2"]  # per-category numbering
    assert Image.open(train[0]["image"]).size == (256, 512)


def test_vg150_through_load_sgg_with_cache_and_vocabulary(tmp_path):
    root = write_vg150(tmp_path / "vg")
    # the protocol's filtering of 103 (no relations) is reported on every load
    with pytest.warns(UserWarning, match="images_skipped_no_relations: 1"):
        ds = load_sgg(str(root), split="train", num_val=1, cache_dir=tmp_path / "cache")
    assert len(ds) == 2 and ds[0]["image"].size == (256, 512) and ds[0]["objects"][1]["bbox"] == [40, 50, 60, 70]
    with pytest.warns(UserWarning, match="images_skipped_no_relations: 1"):
        again = load_sgg(str(root), split="train", num_val=1, cache_dir=tmp_path / "cache")
    assert again[1]["relationships"] == ds[1]["relationships"]
    voc = vocabulary(str(root))
    assert voc.categories == ("person", "bike", "traffic light") and voc.predicates == ("riding", "near")
    assert list((tmp_path / "cache").glob("vg150-*/report-train.json"))


def test_vg150_corrupt_image_is_a_counted_skip_with_warning(tmp_path):
    root = write_vg150(tmp_path / "vg", corrupt=(104,))
    rows, rep = convert_vg150(root, "train", num_val=1)
    assert [r["image_id"] for r in rows] == ["102"]
    assert rep.counts["images_skipped_unreadable"] == 1 and rep.examples["images_skipped_unreadable"] == ["104"]
    for _ in range(2):  # built, then from the cache: the saved report is re-emitted
        with pytest.warns(UserWarning, match="images_skipped_unreadable: 1 \\(e.g. 104\\)"):
            load_sgg(str(root), split="train", num_val=1, cache_dir=tmp_path / "cache")


def test_vg150_missing_h5_key_is_an_error_naming_it(tmp_path):
    root = write_vg150(tmp_path / "vg", drop_key="predicates")
    with pytest.raises(DataError, match=r"vg150 .*predicates"):
        convert_vg150(root, "train")


def test_vg150_relation_to_another_images_box_is_dropped_and_counted(tmp_path):
    # a global index outside the image's box range is an unknown object for that image
    images = [VG_IMAGES[0][:5] + ([(0, 1, 1), (0, 5, 2)],), VG_IMAGES[1]]
    root = write_vg150(tmp_path / "vg", images=images)
    rows, rep = convert_vg150(root, "train", num_val=0)
    assert len(rows[0]["relationships"]) == 1
    assert rep.counts["relations_dropped_unknown_object"] == 1 and rep.examples["relations_dropped_unknown_object"] == ["101"]


def test_clean_graph_boxes_outside_or_empty():
    # clipped into the image (counted); zero area or fully outside → object and its relations dropped (counted)
    rep = LoadReport("src", "train")
    g = clean_graph(["a", "b", "c", "d"], [(-5, 0, 20, 10), (5, 5, 5, 9), (200, 0, 300, 10), (0, 0, 1, 1)],
                    [(0, "x", 3), (1, "x", 3), (2, "y", 0), (0, "x", 3)], 100, 50, "img7", rep)
    assert g["objects"] == [{"id": "a.1", "bbox": [0.0, 0.0, 20.0, 10.0]}, {"id": "d.1", "bbox": [0.0, 0.0, 1.0, 1.0]}]
    assert g["relationships"] == [{"subject": "a.1", "predicate": "x", "object": "d.1"}]
    assert rep.counts == {"boxes_clipped": 1, "objects_dropped_bad_box": 2, "relations_dropped_bad_box": 2,
                          "relations_dropped_duplicate": 1}
    assert "img7" in str(rep)
    # nothing left → the image is skipped and counted
    assert clean_graph(["a"], [(0, 0, 0, 0)], [(0, "x", 0)], 10, 10, "img8", rep) is None
    assert rep.examples["images_skipped_no_relations"] == ["img8"]


# -- PSG ---------------------------------------------------------------------------------------------------------
def write_psg(root: Path, records=None) -> Path:
    root.mkdir(parents=True)
    (root / "imgs").mkdir()
    records = records or [
        {"file_name": "imgs/1.png", "height": 40, "width": 60, "image_id": "1", "pan_seg_file_name": "",
         "segments_info": [], "annotations": [{"bbox": [1, 2, 30, 40], "category_id": 0},
                                              {"bbox": [0, 20, 60, 40], "category_id": 3}],
         "relations": [[0, 1, 1]]},
        {"file_name": "imgs/2.png", "height": 50, "width": 50, "image_id": "2", "pan_seg_file_name": "",
         "segments_info": [], "annotations": [{"bbox": [0, 0, 10, 10], "category_id": 0},
                                              {"bbox": [10, 10, 20, 20], "category_id": 0},
                                              {"bbox": [5, 5, 50, 50], "category_id": 2}],
         "relations": [[1, 0, 0], [0, 2, 1]]},
        {"file_name": "imgs/3.png", "height": 30, "width": 30, "image_id": "3", "pan_seg_file_name": "",
         "segments_info": [], "annotations": [{"bbox": [0, 0, 10, 10], "category_id": 1},
                                              {"bbox": [3, 3, 30, 30], "category_id": 2}],
         "relations": [[0, 1, 0]]},
    ]
    for r in records:
        if "file_name" in r and "width" in r:
            Image.new("RGB", (r["width"], r["height"]), (10, 200, 30)).save(root / r["file_name"])
    (root / "psg.json").write_text(json.dumps({
        "data": records, "thing_classes": ["person", "dog"], "stuff_classes": ["grass", "wall-other-merged"],
        "predicate_classes": ["beside", "standing on"], "test_image_ids": ["3"]}))
    return root / "psg.json"


def test_psg_conversion_and_splits(tmp_path):
    path = write_psg(tmp_path / "psg")
    train, rep = convert_psg(path, "train", image_root=path.parent)
    test, _ = convert_psg(path, "test", image_root=path.parent)
    assert [r["image_id"] for r in train] == ["1", "2"] and [r["image_id"] for r in test] == ["3"]
    assert train[0]["objects"] == [{"id": "person.1", "bbox": [1.0, 2.0, 30.0, 40.0]},
                                   {"id": "wall other merged.1", "bbox": [0.0, 20.0, 60.0, 40.0]}]  # stuff id
    assert train[1]["relationships"] == [{"subject": "person.2", "predicate": "beside", "object": "person.1"},
                                         {"subject": "person.1", "predicate": "standing on", "object": "grass.1"}]
    assert not rep.counts
    ds = load_sgg(str(path), split="test", cache_dir=tmp_path / "cache")
    assert ds[0]["image"].size == (30, 30) and ds[0]["objects"][0]["id"] == "dog.1"
    assert vocabulary(str(path)).categories == ("person", "dog", "grass", "wall other merged")
    with pytest.raises(ValueError, match="train and test only"):
        convert_psg(path, "val", image_root=path.parent)


def test_psg_missing_key_and_bad_category_name_the_image(tmp_path):
    rec = {"file_name": "imgs/9.png", "height": 10, "width": 10, "image_id": "9", "annotations": []}
    path = write_psg(tmp_path / "a", [rec])  # no "relations"
    with pytest.raises(DataError, match=r"psg .*image 9: missing key\(s\) \['relations'\]"):
        convert_psg(path, "train", image_root=path.parent)
    rec = dict(rec, relations=[], annotations=[{"bbox": [0, 0, 5, 5], "category_id": 4}])
    path = write_psg(tmp_path / "b", [rec])
    with pytest.raises(DataError, match="image 9: category_id 4"):
        convert_psg(path, "train", image_root=path.parent)


def test_psg_unknown_object_and_corrupt_image_are_counted(tmp_path):
    recs = [{"file_name": "imgs/1.png", "height": 20, "width": 20, "image_id": "1",
             "annotations": [{"bbox": [0, 0, 5, 5], "category_id": 0}, {"bbox": [5, 5, 9, 9], "category_id": 1}],
             "relations": [[0, 1, 0], [0, 7, 0]]},
            {"file_name": "imgs/2.png", "height": 20, "width": 20, "image_id": "2",
             "annotations": [{"bbox": [0, 0, 5, 5], "category_id": 0}, {"bbox": [5, 5, 9, 9], "category_id": 1}],
             "relations": [[0, 1, 0]]}]
    path = write_psg(tmp_path / "p", recs)
    (path.parent / "imgs" / "2.png").write_bytes(b"\x89PNG broken")
    rows, rep = convert_psg(path, "train", image_root=path.parent)
    assert [r["image_id"] for r in rows] == ["1"] and len(rows[0]["relationships"]) == 1
    assert rep.counts == {"relations_dropped_unknown_object": 1, "images_skipped_unreadable": 1}
    assert rep.examples["images_skipped_unreadable"] == ["2"]


# -- the reference's hub rows ------------------------------------------------------------------------------------
def test_reference_hub_row_conversion():
    # objects/relationships arrive as JSON strings with boxes in original pixels; size comes from the image
    row = {"image_id": 7, "image": Image.new("RGB", (64, 48)), "prompt_open": "…", "prompt_close": "…",
           "objects": json.dumps([{"id": "man.1", "bbox": [1, 2, 30, 40]}, {"id": "hat.1", "bbox": [3, 4, 9, 9]}]),
           "relationships": json.dumps([{"subject": "man.1", "predicate": "wearing", "object": "hat.1"}])}
    out = from_reference_row(row)
    assert (out["image_id"], out["width"], out["height"]) == ("7", 64, 48)
    assert out["objects"][0] == {"id": "man.1", "bbox": [1.0, 2.0, 30.0, 40.0]}
    assert out["relationships"] == [{"subject": "man.1", "predicate": "wearing", "object": "hat.1"}]
    bad = dict(row, relationships=json.dumps([{"subject": "man.1", "predicate": "on", "object": "dog.3"}]))
    with pytest.warns(UserWarning, match="relations_dropped_unknown_object"):
        from_reference_row(bad)
    with pytest.raises(DataError, match="hub: image 7: missing key"):
        from_reference_row({k: v for k, v in row.items() if k != "objects"})
