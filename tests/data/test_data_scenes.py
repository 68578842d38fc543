"""The relational-scenes generator: determinism, exact masks, verified captions and tasks."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neurogshn.data.coco import CocoPanopticDataset
from neurogshn.data.relational.captions import (
    HARD_NEGATIVE_KINDS,
    MAX_STATED_COUNT,
    CaptionSpec,
    count_flips,
    stuff_replacements,
    unrelated_pairs,
)
from neurogshn.data.relational.logic import (
    RELATION_DOMINANCE,
    RELATION_MARGIN,
    NounPhrase,
    Relation,
    SceneFacts,
    SceneObject,
    answer,
    entailment_label,
    evaluate,
    evaluate_pair,
    parse_statement,
)
from neurogshn.data.relational.phrasing import Style, render
from neurogshn.data.relational.scenes import (
    DEFAULT_NLVR2_TRAIN_PAIRS,
    generate_scenes,
    make_scene,
    render_scene,
)
from neurogshn.data.relational.vocabulary import (
    COLOR_RGB,
    COLORS,
    NUMBER_WORDS,
    SHAPES,
    SIZES,
    STUFF,
    vqa_answers,
)
from neurogshn.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")


def _files(root: Path, exclude: tuple[str, ...] = ()) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(e in str(p.relative_to(root)) for e in exclude)
    }


def _facts_by_id(root: Path, split: str) -> dict[int, SceneFacts]:
    ds = CocoPanopticDataset(root, split, strict=True)
    out = {}
    for rec in ds:
        out[rec.image_id] = SceneFacts.from_segmentation(
            rec.segmentation.segment_map, rec.segmentation.segments, rec.attributes
        )
    return out


@pytest.fixture(scope="module")
def facts(scenes_root: Path) -> dict[str, dict[int, SceneFacts]]:
    """Scene facts rebuilt from the files on disk (masks → centroids), per split."""
    return {s: _facts_by_id(scenes_root, s) for s in SPLITS}


@pytest.fixture(scope="module")
def forms(scenes_root: Path) -> dict[str, str]:
    """``{text: logical form}`` of every caption and hard negative of every split: the
    statement in the scene logic's grammar, whatever phrasing family worded it."""
    out: dict[str, str] = {}
    for split in SPLITS:
        path = scenes_root / "annotations" / f"logical_forms_{split}.json"
        out.update(json.loads(path.read_text())["forms"])
    return out


def _hard_negative_items(root: Path, split: str) -> list[dict]:
    return json.loads((root / "annotations" / f"hard_negatives_{split}.json").read_text())["items"]


def test_layout_and_counts(scenes_root: Path) -> None:
    for split, n in (("train", 24), ("val", 8), ("test", 8)):
        assert len(list((scenes_root / "images" / split).glob("*.png"))) == n
        assert len(list((scenes_root / f"panoptic_{split}").glob("*.png"))) == n
        for name in ("panoptic", "captions", "hard_negatives", "vqa", "ve", "nlvr2"):
            assert (scenes_root / "annotations" / f"{name}_{split}.json").is_file()
    pan = json.loads((scenes_root / "annotations" / "panoptic_train.json").read_text())
    cats = {c["name"]: c for c in pan["categories"]}
    assert set(cats) == set(SHAPES) | set(STUFF)
    assert all(cats[s]["isthing"] == 1 for s in SHAPES)
    assert all(cats[s]["isthing"] == 0 for s in STUFF)
    caps = json.loads((scenes_root / "annotations" / "captions_train.json").read_text())
    assert {im["id"] for im in caps["images"]} == {im["id"] for im in pan["images"]}
    per_image = Counter(a["image_id"] for a in caps["annotations"])
    assert set(per_image.values()) == {5}
    # ids unique across splits
    ids = [CocoPanopticDataset(scenes_root, s).image_ids for s in SPLITS]
    assert len(set().union(*map(set, ids))) == sum(map(len, ids))


def test_same_seed_is_byte_identical_and_splits_are_independent(tmp_path: Path) -> None:
    a = generate_scenes(
        tmp_path / "a",
        seed=3,
        splits={"train": 3, "val": 2, "test": 2},
        image_size=48,
        progress=False,
    )
    b = generate_scenes(
        tmp_path / "b",
        seed=3,
        splits={"train": 3, "val": 2, "test": 2},
        image_size=48,
        progress=False,
    )
    assert _files(a) == _files(b)
    # more training images: val/test files unchanged, train prefix unchanged
    c = generate_scenes(
        tmp_path / "c",
        seed=3,
        splits={"train": 5, "val": 2, "test": 2},
        image_size=48,
        progress=False,
    )
    fa, fc = _files(a, exclude=("scenes.json",)), _files(c, exclude=("scenes.json",))
    for k, v in fa.items():
        if "train" not in k:
            assert fc[k] == v, k
        elif k.endswith(".png"):
            assert fc[k] == v, k  # the first 3 training images are the same
    assert len([k for k in fc if k.startswith("images/train/")]) == 5
    d = generate_scenes(
        tmp_path / "d",
        seed=4,
        splits={"train": 3, "val": 2, "test": 2},
        image_size=48,
        progress=False,
    )
    assert _files(d)["images/train/000000000001.png"] != fa["images/train/000000000001.png"]


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="image_size"):
        generate_scenes(tmp_path, splits={"train": 1}, image_size=16, progress=False)
    with pytest.raises(ConfigError, match=">= 0"):
        generate_scenes(tmp_path, splits={"train": -1}, progress=False)


def test_masks_are_exact(scenes_root: Path) -> None:
    """Panoptic PNG ids decode to segments_info with matching area and bbox; no void; thing
    pixels have the thing's color."""
    for split in SPLITS:
        pan = json.loads((scenes_root / "annotations" / f"panoptic_{split}.json").read_text())
        cats = {c["id"]: c for c in pan["categories"]}
        for ann in pan["annotations"]:
            png = Image.open(scenes_root / f"panoptic_{split}" / ann["file_name"])
            rgb = np.asarray(png).astype(np.int64)
            ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
            img = np.asarray(Image.open(scenes_root / "images" / split / ann["file_name"]))
            assert img.shape == (*ids.shape, 3) and img.dtype == np.uint8
            listed = {s["id"] for s in ann["segments_info"]}
            assert set(np.unique(ids).tolist()) == listed  # no void, nothing unlisted
            things = [s for s in ann["segments_info"] if cats[s["category_id"]]["isthing"]]
            stuff = [s for s in ann["segments_info"] if not cats[s["category_id"]]["isthing"]]
            assert 2 <= len(things) <= 6 and 1 <= len(stuff) <= 2
            pairs = [(s["attributes"]["color"], cats[s["category_id"]]["name"]) for s in things]
            assert len(set(pairs)) == len(pairs)  # color+shape unique: descriptions unique
            for s in ann["segments_info"]:
                m = ids == s["id"]
                ys, xs = np.nonzero(m)
                assert s["area"] == m.sum()
                assert s["bbox"] == [
                    xs.min(),
                    ys.min(),
                    xs.max() - xs.min() + 1,
                    ys.max() - ys.min() + 1,
                ]
                assert s["iscrowd"] == 0
                if s in things:
                    assert s["attributes"]["size"] in SIZES
                    color = s["attributes"]["color"]
                    # the median pixel of the mask is close to the color's RGB (texture,
                    # noise and the dark outline move it a little)
                    med = np.median(img[m].astype(float), axis=0)
                    dists = {c: np.abs(med - COLOR_RGB[c]).max() for c in COLORS}
                    assert min(dists, key=dists.get) == color


def test_captions_true_and_negatives_false(scenes_root: Path, facts, forms) -> None:
    """Judged by the logic, on the texts' logical forms, on facts rebuilt from the files
    (masks), not from the generator."""
    kinds = Counter()
    for split in SPLITS:
        caps = json.loads((scenes_root / "annotations" / f"captions_{split}.json").read_text())
        for a in caps["annotations"]:
            assert evaluate(forms[a["caption"]], facts[split][a["image_id"]]), a
        hn = json.loads((scenes_root / "annotations" / f"hard_negatives_{split}.json").read_text())
        assert hn["version"] == 2
        by_image = {}
        for a in caps["annotations"]:
            by_image.setdefault(a["image_id"], []).append(a["caption"])
        for it in hn["items"]:
            scene = facts[split][it["image_id"]]
            assert by_image[it["image_id"]][it["caption_index"]] == it["caption"]
            for kind in HARD_NEGATIVE_KINDS:
                neg = it[kind]
                if neg is None:
                    continue
                kinds[kind] += 1
                assert neg != it["caption"] and forms[neg] != forms[it["caption"]]
                assert not evaluate(forms[neg], scene), (it, kind)
    # relation swaps, object replacements and size flips can always be built
    n_items = sum(
        len(
            json.loads((scenes_root / "annotations" / f"hard_negatives_{s}.json").read_text())[
                "items"
            ]
        )
        for s in SPLITS
    )
    assert kinds["relation_swap"] == n_items and kinds["object_replace"] == n_items
    assert kinds["size_flip"] == n_items
    assert kinds["attribute_swap"] > n_items // 2
    # a count flip exactly for the captions that state the number of objects
    counts = sum(
        forms[cap].startswith("there are ")
        for s in SPLITS
        for cap in (
            a["caption"]
            for a in json.loads((scenes_root / "annotations" / f"captions_{s}.json").read_text())[
                "annotations"
            ]
        )
    )
    assert 0 < kinds["count_flip"] == counts
    assert kinds["stuff_replace"] > 0


def test_relation_swap_keeps_words(scenes_root: Path) -> None:
    """ARO-style: the relation swap is a permutation of the caption's words (up to a/an),
    in every phrasing family (possessive frames included)."""

    def words(text: str) -> Counter:
        toks = text.replace(",", "").replace(".", "").replace(";", "").split()
        return Counter("a" if t == "an" else t for t in toks)

    hn = json.loads((scenes_root / "annotations" / "hard_negatives_val.json").read_text())
    for it in hn["items"]:
        assert words(it["caption"]) == words(it["relation_swap"])
        assert it["caption"] != it["relation_swap"]


def test_size_flip_changes_one_size(scenes_root: Path, forms) -> None:
    """A size flip states its caption with one size flipped, or added (wrong): its logical
    form differs in one size word (the wording may name sizes otherwise: "little", "big")."""
    flip = {"small": "large", "large": "small"}
    flipped = added = 0
    for split in SPLITS:
        for it in _hard_negative_items(scenes_root, split):
            cap, neg = forms[it["caption"]].split(), forms[it["size_flip"]].split()
            if len(cap) == len(neg):
                diff = [(a, b) for a, b in zip(cap, neg) if a != b]
                assert len(diff) == 1 and flip.get(diff[0][0]) == diff[0][1], it
                flipped += 1
            else:
                assert len(neg) == len(cap) + 1, it
                extra = [w for w in neg if w in SIZES]
                assert len(extra) == len([w for w in cap if w in SIZES]) + 1, it
                added += 1
    assert flipped > 0 and added > 0


def test_count_flip_changes_the_number_by_one(scenes_root: Path, forms) -> None:
    """A count flip states its caption with the number of objects off by one: the two
    logical forms differ in the number only, and so do the two texts (worded alike)."""
    seen: Counter = Counter()
    for split in SPLITS:
        for it in _hard_negative_items(scenes_root, split):
            if it["count_flip"] is None:
                assert not forms[it["caption"]].startswith("there are "), it
                continue
            cap, neg = forms[it["caption"]].split(), forms[it["count_flip"]].split()
            diff = [(a, b) for a, b in zip(cap, neg, strict=True) if a != b]
            assert len(diff) == 1 and all(w.isdigit() for w in diff[0]), it
            old, new = (int(w) for w in diff[0])
            assert abs(old - new) == 1, it
            seen[new - old] += 1
            words = [
                (a, b)
                for a, b in zip(it["caption"].split(), it["count_flip"].split(), strict=True)
                if a != b
            ]
            assert len(words) == 1, it
            assert {w.strip(",.;") for w in words[0]} <= {
                *NUMBER_WORDS,
                *map(str, range(2, MAX_STATED_COUNT + 1)),
            }, it
    assert seen[1] > 0


def test_count_flips() -> None:
    a = NounPhrase("circle", "red", None)
    b = NounPhrase("square", "blue", None)
    spec = CaptionSpec("count", a, "left of", b, n=3)
    assert [c.n for c in count_flips(spec)] == [4, 2]
    assert [c.n for c in count_flips(replace(spec, n=MAX_STATED_COUNT))] == [MAX_STATED_COUNT - 1]
    assert [c.n for c in count_flips(replace(spec, n=1))] == [2]
    assert count_flips(replace(spec, kind="relation", n=None)) == []
    assert render(count_flips(spec)[0], Style("plain")).text == (
        "there are four objects, and the red circle is left of the blue square."
    )
    assert count_flips(spec)[0].canonical() == (
        "there are 4 objects, and the red circle is left of the blue square."
    )


def test_stuff_replace_names_an_absent_stuff(scenes_root: Path, facts, forms) -> None:
    """A stuff replacement states its background caption with another stuff word, which
    names a class the scene does not have."""
    n = 0
    for split in SPLITS:
        for it in _hard_negative_items(scenes_root, split):
            if it["stuff_replace"] is None:
                continue
            cap, neg = forms[it["caption"]].split(), forms[it["stuff_replace"]].split()
            diff = [(a, b) for a, b in zip(cap, neg, strict=True) if a != b]
            assert len(diff) == 1 and set(diff[0]) <= set(STUFF), it
            assert diff[0][1] not in facts[split][it["image_id"]].stuff, it
            n += 1
    assert n > 0


def test_stuff_replacements() -> None:
    a = NounPhrase("circle", "red", None)
    b = NounPhrase("square", "blue", None)
    spec = CaptionSpec("background", a, "left of", b, stuff=STUFF[1])
    scene = SceneFacts((), (STUFF[1], STUFF[2]))
    assert [c.stuff for c in stuff_replacements(spec, scene)] == [STUFF[3], STUFF[0]]
    assert stuff_replacements(replace(spec, kind="relation", stuff=None), scene) == []
    full = SceneFacts((), STUFF)
    assert stuff_replacements(spec, full) == []


def test_unrelated_pair_names_a_pair_with_no_relation(scenes_root: Path, facts, forms) -> None:
    """An unrelated-pair negative states a relation between two uniquely named objects of the
    scene between which no relation holds, one of them from the caption's first relation."""
    n = 0
    for split in SPLITS:
        for it in _hard_negative_items(scenes_root, split):
            if it["unrelated_pair"] is None:
                continue
            scene = facts[split][it["image_id"]]
            neg, cap = (
                next(c for c in parse_statement(forms[t]).clauses if isinstance(c, Relation))
                for t in (it["unrelated_pair"], it["caption"])
            )
            (sub,), (obj,) = scene.match(neg.subject), scene.match(neg.object)
            assert scene.relation(sub, obj) is None and scene.relation(obj, sub) is None, it
            assert 0 < scene.closeness(sub, neg.rel, obj) <= 1, it
            kept = {o.id for o in scene.match(cap.subject) + scene.match(cap.object)}
            assert len(kept & {sub.id, obj.id}) == 1, it
            n += 1
    assert n > 0


def test_unrelated_pairs() -> None:
    """Exact candidates on a hand-built scene (margin 0.1, dominance 1.25; y grows down)."""

    def obj(i: int, shape: str, color: str, x: float, y: float, size: str = "small"):
        return SceneObject(i, shape, color, size, x, y, 100)

    a = obj(1, "circle", "red", 0.2, 0.5)
    b = obj(2, "square", "blue", 0.6, 0.5)  # a is left of b
    c = obj(3, "cross", "green", 0.47, 0.73, "large")  # diagonal from a; b is above c
    d = obj(4, "triangle", "yellow", 0.25, 0.56)  # too close to a; b is right of d
    f = obj(5, "cross", "green", 0.9, 0.1)  # related to both; makes "green cross" ambiguous
    scene = SceneFacts((a, b, c, d, f))
    assert scene.closeness(a, "left of", c) == pytest.approx(0.27 / (1.25 * 0.23))
    assert scene.closeness(a, "above", d) == pytest.approx(0.6)
    spec = CaptionSpec(
        "relation", NounPhrase("circle", "red"), "left of", NounPhrase("square", "blue")
    )
    assert [c.canonical() for c in unrelated_pairs(spec, scene)] == [
        "the red circle is left of the large green cross.",
        "the red circle is above the yellow triangle.",
    ]
    # nothing is unrelated to the blue square: the subject is replaced instead
    swapped = replace(spec, a=spec.b, rel="right of", b=spec.a)
    assert [c.canonical() for c in unrelated_pairs(swapped, scene)] == [
        "the large green cross is right of the red circle.",
        "the yellow triangle is below the red circle.",
    ]
    assert all(not evaluate(c.canonical(), scene) for c in unrelated_pairs(spec, scene))
    assert unrelated_pairs(spec, SceneFacts((a, b))) == []


def test_relations_have_margin(scenes_root: Path, facts, forms) -> None:
    """Every caption relation holds by the margin and dominates the other axis."""
    caps = json.loads((scenes_root / "annotations" / "captions_train.json").read_text())
    n = 0
    for a in caps["annotations"]:
        scene = facts["train"][a["image_id"]]
        for clause in parse_statement(forms[a["caption"]]).clauses:
            if not isinstance(clause, Relation):
                continue
            (s,), (o,) = scene.match(clause.subject), scene.match(clause.object)
            dx, dy = o.x - s.x, o.y - s.y
            main, other = {
                "left of": (dx, dy),
                "right of": (-dx, dy),
                "above": (dy, dx),
                "below": (-dy, dx),
            }[clause.rel]
            assert main > RELATION_MARGIN and main > RELATION_DOMINANCE * abs(other)
            n += 1
    assert n >= len(caps["annotations"])


def test_captions_use_varied_templates(scenes_root: Path) -> None:
    caps = json.loads((scenes_root / "annotations" / "captions_train.json").read_text())
    starts = Counter(" ".join(a["caption"].split()[:2]) for a in caps["annotations"])
    assert len(starts) >= 6
    texts = [a["caption"] for a in caps["annotations"]]
    assert any(", and the" in t for t in texts) and any("background" in t for t in texts)


def test_vqa_answers_by_logic_and_balanced(scenes_root: Path, facts) -> None:
    for split in SPLITS:
        data = json.loads((scenes_root / "annotations" / f"vqa_{split}.json").read_text())
        assert data["answers"] == vqa_answers()
        types = Counter(q["type"] for q in data["questions"])
        assert set(types) == {"color", "shape", "count", "relation", "existence"}
        for q in data["questions"]:
            assert q["answer"] in data["answers"]
            assert answer(q["question"], facts[split][q["image_id"]]) == q["answer"], q
        for kind in ("existence", "relation"):
            c = Counter(q["answer"] for q in data["questions"] if q["type"] == kind)
            assert set(c) == {"yes", "no"} and abs(c["yes"] - c["no"]) <= 1, (split, kind, c)
        assert len({q["question_id"] for q in data["questions"]}) == len(data["questions"])
    train = json.loads((scenes_root / "annotations" / "vqa_train.json").read_text())
    counts = Counter(q["answer"] for q in train["questions"] if q["type"] == "count")
    assert len(counts) >= 5 and max(counts.values()) - min(counts.values()) <= 3, counts


def test_ve_labels_by_logic_and_balanced(scenes_root: Path, facts) -> None:
    for split in SPLITS:
        data = json.loads((scenes_root / "annotations" / f"ve_{split}.json").read_text())
        assert data["labels"] == ["entailment", "neutral", "contradiction"]
        c = Counter(it["label"] for it in data["items"])
        assert max(c.values()) - min(c.values()) <= 1 and len(c) == 3, c
        for it in data["items"]:
            scene = facts[split][it["image_id"]]
            assert entailment_label(it["statement"], scene) == it["label"], it
            assert evaluate(it["statement"], scene) == (it["label"] == "entailment")


def test_nlvr2_labels_by_logic_and_balanced(scenes_root: Path, facts) -> None:
    for split in SPLITS:
        data = json.loads((scenes_root / "annotations" / f"nlvr2_{split}.json").read_text())
        c = Counter(it["label"] for it in data["items"])
        pairs = DEFAULT_NLVR2_TRAIN_PAIRS if split == "train" else 1
        assert abs(c[True] - c[False]) <= 1 and len(data["items"]) == pairs * len(facts[split])
        assert set(Counter(it["left_image_id"] for it in data["items"]).values()) == {pairs}
        assert len({(it["left_image_id"], it["right_image_id"]) for it in data["items"]}) == len(
            data["items"]
        )
        for it in data["items"]:
            assert it["left_image_id"] != it["right_image_id"]
            left, right = facts[split][it["left_image_id"]], facts[split][it["right_image_id"]]
            assert evaluate_pair(it["statement"], left, right) == it["label"], it


def test_nlvr2_pair_rounds_extend_the_one_pair_file(facts) -> None:
    """More pairs per image append rounds; the first round is the one-pair file, so val/test
    and old task files keep their items."""
    from neurogshn.data.relational.streams import split_rng
    from neurogshn.data.relational.taskgen import make_nlvr2

    one = make_nlvr2(facts["val"], split_rng(0, "val", 2))["items"]
    three = make_nlvr2(facts["val"], split_rng(0, "val", 2), pairs_per_image=3)["items"]
    assert three[: len(one)] == one and len(three) == 3 * len(one) == 24
    assert [it["id"] for it in three] == list(range(24))
    # 8 images: 7 possible right images each, so 3 rounds never repeat a pair
    assert len({(it["left_image_id"], it["right_image_id"]) for it in three}) == 24
    c = Counter(it["label"] for it in three)
    assert c[True] == c[False] == 12
    with pytest.raises(ConfigError, match="pairs_per_image"):
        make_nlvr2(facts["val"], split_rng(0, "val", 2), pairs_per_image=0)


def test_nlvr2_train_pairs_option(tmp_path: Path) -> None:
    root = generate_scenes(
        tmp_path / "d",
        splits={"train": 3, "val": 2},
        image_size=40,
        progress=False,
        nlvr2_train_pairs=2,
    )
    ann = root / "annotations"
    assert len(json.loads((ann / "nlvr2_train.json").read_text())["items"]) == 6
    assert len(json.loads((ann / "nlvr2_val.json").read_text())["items"]) == 2
    manifest = json.loads((ann / "scenes.json").read_text())
    assert manifest["nlvr2_train_pairs_per_image"] == 2
    with pytest.raises(ConfigError, match="nlvr2_train_pairs"):
        generate_scenes(tmp_path / "e", splits={"train": 2}, progress=False, nlvr2_train_pairs=0)


def test_render_scene_rejects_heavy_occlusion() -> None:
    """Every thing keeps most of its area visible (occluded placements are rejected)."""
    for i in range(20):
        scene = make_scene(11, "probe", i, image_size=64)
        for o in scene.facts.objects:
            assert o.area >= 10
        assert len(scene.captions) == 5 and len(set(scene.captions)) == 5
    with pytest.raises(ConfigError):
        render_scene(np.random.default_rng(0), size=8)


def test_interrupted_generation_leaves_no_partial_data_set(tmp_path: Path, monkeypatch) -> None:
    import neurogshn.data.relational.scenes as scenes

    real = scenes.generate_split
    calls = []

    def failing(root, split, *a, **kw):
        calls.append(split)
        if split == "val":
            raise KeyboardInterrupt
        return real(root, split, *a, **kw)

    monkeypatch.setattr(scenes, "generate_split", failing)
    out = tmp_path / "new"
    with pytest.raises(KeyboardInterrupt):
        generate_scenes(out, splits={"train": 2, "val": 1}, image_size=40, progress=False)
    assert calls == ["train", "val"] and not out.exists()
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(scenes, "generate_split", real)
    # an existing non-empty directory is refused, and written in place with overwrite
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "README").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        generate_scenes(tmp_path / "keep", splits={"train": 1}, image_size=40, progress=False)
    assert sorted(p.name for p in (tmp_path / "keep").iterdir()) == ["README"]
    generate_scenes(
        tmp_path / "keep", splits={"train": 1}, image_size=40, progress=False, overwrite=True
    )
    assert (tmp_path / "keep" / "README").read_text() == "mine"
    assert CocoPanopticDataset(tmp_path / "keep", "train", strict=True)[0].captions
