"""The model side: the embedded tiny Qwen2-VL builds, saves and loads offline like a hub checkpoint; its processor is
a real Qwen2-VL processor (not the bare tokenizer AutoProcessor returns without torchvision); predict writes jsonl."""

import dataclasses
import json

import pytest
from PIL import Image, ImageDraw

from sgglib.embedded.model import TinyModelConfig, build_tiny_model
from sgglib.embedded.tokenizer import train_tokenizer
from sgglib.models import SGGQwen2VLProcessor, load_model_and_processor, predict
from sgglib.prompts import prompt_messages
from sgglib.runs import read_predictions

GRAPH = {"objects": [{"id": "red circle.1", "bbox": [12, 34, 560, 1000]}, {"id": "blue square.1", "bbox": [0, 0, 9, 99]}],
         "relationships": [{"subject": "red circle.1", "predicate": "next to", "object": "blue square.1"}]}
TEXTS = [json.dumps(GRAPH), "List every object and relation of the image as JSON."] * 20
TINY = TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64,
                       mrope_section=(2, 3, 3), vision_depth=1, vision_embed_dim=32, vision_heads=2, vocab_size=400,
                       image_mean=(0.8, 0.8, 0.8), max_pixels=112 * 112)


def images(n=3, size=112):
    out = []
    for i in range(n):
        im = Image.new("RGB", (size, size), (204, 204, 204))
        ImageDraw.Draw(im).ellipse([8 + 20 * i, 8, 36 + 20 * i, 36], fill=(215, 35, 35))
        out.append({"image_id": f"img{i}", "image": im})
    return out


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny"), TINY, texts=TEXTS)


def test_tokenizer_numbers_are_single_tokens_and_round_trip():
    # Qwen2-VL boxes live on a 0-1000 grid: each integer must be one token, and decoding must be lossless
    tok = train_tokenizer(TEXTS, vocab_size=300)
    for n in (0, 7, 99, 560, 1000):
        assert len(tok(str(n))["input_ids"]) == 1
    text = json.dumps(GRAPH) + " 2025 héllo ✓"
    assert tok.decode(tok(text)["input_ids"]) == text
    for special in ("<|im_start|>", "<|im_end|>", "<|image_pad|>", "<|vision_start|>", "<|vision_end|>"):
        assert len(tok(special)["input_ids"]) == 1


def test_tokenizer_caps_merged_token_length():
    # BPE across words on a repeated sentence merges it into one token unless max_token_length caps it
    sentence = "Object names must come from this list: [red circle, blue square, green triangle]."
    texts = [sentence] * 50 + TEXTS
    whole = train_tokenizer(texts, vocab_size=400, use_regex=False)
    capped = train_tokenizer(texts, vocab_size=400, use_regex=False, max_token_length=12)
    assert max(len(whole.decode([i])) for i in whole(sentence)["input_ids"]) > 24
    pieces = [capped.decode([i]) for i in capped(sentence)["input_ids"]]
    assert max(map(len, pieces)) <= 12 and "".join(pieces) == sentence


def test_build_save_load_round_trip_offline(tiny_dir, monkeypatch):
    # the embedded default loads through the same from_pretrained path as a hub checkpoint, with the hub disabled
    import torch
    from transformers import Qwen2VLForConditionalGeneration

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, processor = load_model_and_processor(tiny_dir, dtype="float32")
    assert isinstance(model, Qwen2VLForConditionalGeneration)
    assert isinstance(processor, SGGQwen2VLProcessor)
    again, _ = load_model_and_processor(tiny_dir, dtype="float32")
    for (n, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), n
    assert (tiny_dir / "tiny_config.json").exists()


def test_processor_expands_images_and_uses_background_normalisation(tiny_dir):
    # AutoProcessor's trap without torchvision: a bare tokenizer would ignore images; ours must emit pixel_values and one
    # <|image_pad|> per merged 28x28 cell (112 px -> 16 tokens)
    _, processor = load_model_and_processor(tiny_dir)
    text = processor.apply_chat_template(prompt_messages("hi", system="sys"), tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|>")
    assert text.endswith("<|im_start|>assistant\n")
    batch = processor(text=[text], images=[images(1)[0]["image"]], return_tensors="pt")
    assert batch["pixel_values"].shape[0] == 64 and batch["image_grid_thw"].tolist() == [[1, 8, 8]]
    pad_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((batch["input_ids"] == pad_id).sum()) == 16
    assert list(processor.image_processor.image_mean) == [0.8, 0.8, 0.8]
    assert list(processor.image_processor.image_std) == [0.25, 0.25, 0.25]
    # a background pixel (204 = 0.8 * 255) normalises to ~0
    assert float(batch["pixel_values"].abs().min()) < 1e-6


def test_processor_save_load_round_trip(tiny_dir, tmp_path):
    # the torchvision-free subclass itself round-trips through save_pretrained/from_pretrained
    _, processor = load_model_and_processor(tiny_dir)
    processor.save_pretrained(tmp_path)
    again = SGGQwen2VLProcessor.from_pretrained(tmp_path)
    assert type(again) is SGGQwen2VLProcessor
    assert again.tokenizer.get_vocab() == processor.tokenizer.get_vocab()
    assert list(again.image_processor.image_mean) == list(processor.image_processor.image_mean)


def test_lora_wraps_the_model(tiny_dir):
    # optional LoRA: only adapter weights train
    model, _ = load_model_and_processor(tiny_dir, lora={"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]})
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_predict_writes_jsonl(tiny_dir, tmp_path):
    # batched greedy inference: one line per image with its id, the raw completion and the box frame
    model, processor = load_model_and_processor(tiny_dir)
    rows = images(3)
    out = tmp_path / "predictions.jsonl"
    records = predict(model, processor, rows, "Describe.", out_path=out, batch_size=2, max_new_tokens=5,
                      progress=False)
    assert read_predictions(out) == records
    assert [r["image_id"] for r in records] == ["img0", "img1", "img2"]
    assert all(isinstance(r["completion"], str) and r["box_scale"] == [1000.0, 1000.0] for r in records)
    # sampling: n samples per image, tagged by index
    sampled = predict(model, processor, rows[:1], lambda r: "Describe.", batch_size=1, max_new_tokens=3,
                      do_sample=True, temperature=1.0, num_return_sequences=2, progress=False)
    assert [r["sample"] for r in sampled] == [0, 1]


def test_qwen2_5_vl_path(tmp_path):
    # the same loader and predict serve Qwen2.5-VL checkpoints; boxes are then in resized-input pixels (W', H')
    from transformers import Qwen2_5_VLForConditionalGeneration

    from sgglib.models import SGGQwen2_5_VLProcessor

    path = build_tiny_model(tmp_path, dataclasses.replace(TINY, arch="qwen2_5_vl"), texts=TEXTS)
    model, processor = load_model_and_processor(path)
    assert isinstance(model, Qwen2_5_VLForConditionalGeneration) and isinstance(processor, SGGQwen2_5_VLProcessor)
    records = predict(model, processor, images(2), "Describe.", batch_size=2, max_new_tokens=3, progress=False)
    assert [r["box_scale"] for r in records] == [[112.0, 112.0]] * 2


def test_aux_tasks_never_ask_for_a_scene_graph():
    # the base model's auxiliary tasks: list, ground, detect (xywh or xyxy, as the prompt says), describe, relate; a
    # detect answer has an empty relation list, a relate answer no object list (so it is no scene graph), and no aux
    # prompt carries the scene-graph prompt's relationship clause
    import random

    from sgglib import prompts
    from sgglib.data import Vocabulary
    from sgglib.embedded.aux_tasks import aux_examples
    from sgglib.parse import parse_completion

    row = {"image": Image.new("RGB", (100, 100)), "width": 100, "height": 100,
           "objects": [{"id": "red circle.1", "bbox": [50, 50, 60, 60]}, {"id": "blue square.1", "bbox": [0, 0, 10, 10]}],
           "relationships": [{"subject": "red circle.1", "predicate": "near", "object": "blue square.1"}]}
    vocab = Vocabulary(("red circle", "blue square"), ("near",))
    relation_clause = prompts.open_prompt().split("\n")[2]
    seen = set()
    for seed in range(20):
        exs = aux_examples(row, random.Random(seed), vocabulary=vocab)
        assert len(exs) == 5
        texts = [e["prompt"][-1]["content"][-1]["text"] for e in exs]
        assert all(relation_clause not in t for t in texts)
        detect_prompt, detect = texts[2], exs[2]["completion"][0]["content"][0]["text"]
        result = parse_completion(detect)
        assert json.loads(detect.strip("`json\n"))["relationships"] == []
        xywh = "[x, y, width, height]" in detect_prompt
        seen.add((xywh, prompts.OBJECTS_CLAUSE.split(",")[0] in detect_prompt))
        # a detect answer is a valid scene graph; in xywh, red circle.1 at [500, 500, 600, 600] reads as swapped
        # corners (x2 < x1), kept as written by the parser: a zero-area box that overlaps nothing
        assert result.ok and result.graph.objects[0].bbox == ((500, 500, 100, 100) if xywh else (500, 500, 600, 600))
        relate = exs[4]["completion"][0]["content"][0]["text"]
        assert json.loads(relate.strip("`json\n")) == {"relationships": row["relationships"]}
        assert parse_completion(relate).failure.value == "missing_keys"
    assert seen == {(False, False), (False, True), (True, False), (True, True)}


def test_transcribe_task_is_text_to_graph_on_a_blank_image():
    # the optional sixth task writes a *random* scene, given in words, as a whole scene graph: the schema without any
    # image content. The answer must parse as a valid graph holding exactly the described objects and relations, with
    # no self-relation and no id the object list lacks; without ``transcribe`` the five tasks are drawn as before
    import random

    from sgglib import prompts
    from sgglib.data import Vocabulary
    from sgglib.embedded.aux_tasks import aux_examples
    from sgglib.parse import parse_completion

    row = {"image": Image.new("RGB", (90, 60), (0, 0, 0)), "width": 90, "height": 60,
           "objects": [{"id": "red circle.1", "bbox": [5, 5, 20, 20]}], "relationships": []}
    vocab = Vocabulary(("red circle", "blue square", "green frame"), ("near", "left of"))
    plain = aux_examples(row, random.Random(3), vocabulary=vocab)
    extended = aux_examples(row, random.Random(3), vocabulary=vocab, transcribe=vocab)
    assert extended[:5] == plain and len(extended) == 6
    relation_counts = set()
    for seed in range(30):
        ex = aux_examples(row, random.Random(seed), transcribe=vocab)[-1]
        assert ex["images"][0].size == (90, 60) and ex["images"][0].getextrema() == ((255, 255),) * 3
        text = ex["prompt"][-1]["content"][-1]["text"]
        closed = prompts.closed_prompt(vocab.categories, vocab.predicates)
        assert text.startswith("Generate a scene graph for this description")
        assert text.endswith(closed.split("\n", 1)[1]) and text.split("\n")[1].startswith("Description: ")
        result = parse_completion(ex["completion"][0]["content"][0]["text"])
        assert result.ok
        ids = [o.id for o in result.graph.objects]
        assert len(set(ids)) == len(ids) and all(o.category in vocab.categories for o in result.graph.objects)
        description = text.split("\n")[1]
        for o in result.graph.objects:
            assert f"{o.id} is at [{', '.join(str(int(v)) for v in o.bbox)}]." in description
        for r in result.graph.relations:
            assert r.subject != r.object and {r.subject, r.object} <= set(ids) and r.predicate in vocab.predicates
            assert f"{r.subject} is {r.predicate} {r.object}." in description
        relation_counts.add(len(result.graph.relations))
    assert 0 in relation_counts and max(relation_counts) >= 3
    # unstated_relations=1: the description names the objects only, and the answer still lists the relations
    guessed = [aux_examples(row, random.Random(seed), transcribe=vocab, unstated_relations=1.0)[-1] for seed in range(30)]
    assert all(" is at [" in e["prompt"][-1]["content"][-1]["text"] for e in guessed)
    assert not any(f" is {p} " in e["prompt"][-1]["content"][-1]["text"].split("\n")[1]
                   for e in guessed for p in vocab.predicates)
    assert sum('"subject"' in e["completion"][0]["content"][0]["text"] for e in guessed) >= 10


def test_base_tasks_scores_relate_answers_at_the_level_of_ids():
    # benchmarks/base_tasks.py: a relate answer scores its exact triplets; anything else writes none (not a crash)
    from base_tasks import relate_scores, written_triplets

    from sgglib.diagnostics import answer_kind

    fenced = '```json\n{"relationships": [{"subject": "a.1", "predicate": "near", "object": "b.1"}]}\n```'
    assert written_triplets(fenced) == {("a.1", "near", "b.1")} == written_triplets(fenced.strip("`json\n"))
    assert written_triplets("a.1 is near b.1.") == set() == written_triplets('```json\n{"objects": []}\n```')
    assert written_triplets('{"relationships": [1]}') == set()
    rows = [{"relationships": [{"subject": "a.1", "predicate": "near", "object": "b.1"},
                               {"subject": "b.1", "predicate": "on", "object": "a.1"}]},
            {"relationships": [{"subject": "c.1", "predicate": "near", "object": "a.1"}]}]
    scores = relate_scores([fenced, "nothing"], rows)
    assert scores == {"triplet_recall": 100 / 3, "triplet_precision": 100.0, "triplets_per_answer": 0.5}
    assert answer_kind(json.dumps(GRAPH)) == "valid, 2 objects, with relations"
    assert answer_kind('{"relationships": []}') == "failure: missing_keys"
