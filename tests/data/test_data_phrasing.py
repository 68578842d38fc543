"""Phrasing families: held-out wording per split, grounded spans, stable logical forms."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from neurogshn.data.coco import CocoPanopticDataset
from neurogshn.data.relational.captions import CaptionSpec
from neurogshn.data.relational.logic import NounPhrase, parse_statement
from neurogshn.data.relational.phrasing import (
    FAMILIES,
    FAMILY_SPLITS,
    Style,
    canonical,
    families_for,
    family_phrases,
    render,
)
from neurogshn.data.relational.scenes import generate_scenes

RED_CIRCLE = NounPhrase("circle", "red", "small")
BLUE_SQUARE = NounPhrase("square", "blue")
GREEN_CROSS = NounPhrase("cross", "green")
GRAY_DIAMOND = NounPhrase("diamond", "gray", "large")

#: One spec of every statement kind.
SPECS: dict[str, CaptionSpec] = {
    "relation": CaptionSpec("relation", RED_CIRCLE, "left of", BLUE_SQUARE),
    "two_relations": CaptionSpec(
        "two_relations", RED_CIRCLE, "above", BLUE_SQUARE, GREEN_CROSS, "right of", GRAY_DIAMOND
    ),
    "background": CaptionSpec("background", GRAY_DIAMOND, "below", RED_CIRCLE, stuff="sand"),
    "count": CaptionSpec("count", BLUE_SQUARE, "right of", GREEN_CROSS, n=4),
}


def _relation_phrases(split: str) -> set[str]:
    return {
        phrase
        for name in FAMILY_SPLITS[split]
        for table in (FAMILIES[name].relations, FAMILIES[name].possessive)
        for phrases in table.values()
        for phrase in phrases
    }


def _frames(split: str) -> set[str]:
    return {
        frame
        for name in FAMILY_SPLITS[split]
        for frame in (*FAMILIES[name].frames, FAMILIES[name].second)
    }


@pytest.mark.parametrize(("a", "b"), list(itertools.combinations(FAMILY_SPLITS, 2)))
def test_split_families_share_no_phrasing(a: str, b: str) -> None:
    """Train, val and test families share no relation phrase, clause frame, joiner,
    background or count construction (a model scored on test reads wording it never saw,
    and settings chosen on val were not tuned to the test's wording)."""
    assert not _relation_phrases(a) & _relation_phrases(b)
    assert not _frames(a) & _frames(b)
    phrases = {
        s: set().union(*(family_phrases(FAMILIES[n]) for n in FAMILY_SPLITS[s])) for s in (a, b)
    }
    assert not phrases[a] & phrases[b]
    assert not set(FAMILY_SPLITS[a]) & set(FAMILY_SPLITS[b])


def test_families_for_splits() -> None:
    assert families_for("test", heldout=True) == FAMILY_SPLITS["test"]
    assert families_for("val", heldout=True) == FAMILY_SPLITS["val"]
    for split in ("train", "test_seen", "probe"):
        assert families_for(split, heldout=True) == FAMILY_SPLITS["train"]
    assert families_for("test", heldout=False) == FAMILY_SPLITS["train"]


def _styles(family: str) -> list[Style]:
    """Enough styles to reach every frame, phrase, joiner and outer template of a family."""
    return [Style(family, k, k, k + 1, k, k) for k in range(6)]


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("kind", sorted(SPECS))
def test_render_spans_cover_the_noun_phrases(family: str, kind: str) -> None:
    """Each span of a rendered caption covers exactly its slot's noun phrase in the family's
    words (size, colour and shape; no determiner), and every slot of the spec has one."""
    spec = SPECS[kind]
    fam = FAMILIES[family]
    slots = {"a", "b", "c", "d"} if kind == "two_relations" else {"a", "b"}
    texts = set()
    for style in _styles(family):
        out = render(spec, style)
        texts.add(out.text)
        assert out.text.endswith(".") and "{" not in out.text
        assert {slot for _, _, slot in out.spans} == slots
        assert len(out.spans) == len(slots)
        for start, end, slot in out.spans:
            assert out.text[start:end] == fam.noun_phrase(getattr(spec, slot)), (style, slot)
            before = out.text[:start].split()
            assert before and before[-1].lower() in ("the", "a", "an"), out.text
        # the same style words the content alike; the logical form does not depend on it
        assert render(spec, style) == out
    assert len(texts) >= min(2, len(fam.frames))  # the styles do reach other frames


def test_canonical_form_is_stable_and_parses() -> None:
    """The logical form is the scene logic's statement of the content, whatever the family,
    and does not change (the truth oracle and logical_forms_{split}.json rely on it)."""
    assert {k: canonical(s) for k, s in SPECS.items()} == {
        "relation": "the small red circle is left of the blue square.",
        "two_relations": (
            "the small red circle is above the blue square, and the green cross is right of "
            "the large gray diamond."
        ),
        "background": (
            "the large gray diamond is below the small red circle, and there is sand in the "
            "background."
        ),
        "count": "there are 4 objects, and the blue square is right of the green cross.",
    }
    for spec in SPECS.values():
        assert spec.canonical() == canonical(spec)
        parse_statement(canonical(spec))  # in the grammar
    worded = {render(SPECS["relation"], Style(name)).text for name in FAMILIES}
    assert len(worded) > len(FAMILY_SPLITS)  # many wordings, one form
    assert render(SPECS["relation"], Style("plain")).text == canonical(SPECS["relation"])


def test_test_family_spells_grey() -> None:
    assert "grey" in render(SPECS["two_relations"], Style("test_further")).text
    assert "gray" in render(SPECS["two_relations"], Style("plain")).text


@pytest.fixture(scope="module")
def heldout_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("heldout") / "data"
    return generate_scenes(
        root,
        seed=1,
        splits={"train": 3, "val": 2, "test": 3},
        image_size=48,
        progress=False,
        heldout_phrasings=True,
    )


def _json(root: Path, name: str) -> dict:
    return json.loads((root / "annotations" / name).read_text())


def test_heldout_generation_writes_test_seen(heldout_root: Path) -> None:
    """test_seen shows the test split's images (same files, ids and masks) and statements,
    worded by the training families only; val and test use their own families."""
    manifest = _json(heldout_root, "scenes.json")
    assert manifest["heldout_phrasings"] is True
    assert manifest["splits"] == {"train": 3, "val": 2, "test": 3, "test_seen": 3}
    assert manifest["scene_source"] == {"test_seen": "test"}
    assert manifest["phrasing_families"]["test_seen"] == list(FAMILY_SPLITS["train"])
    assert manifest["phrasing_families"]["test"] == list(FAMILY_SPLITS["test"])

    test, seen = (CocoPanopticDataset(heldout_root, s, strict=True) for s in ("test", "test_seen"))
    assert test.image_ids == seen.image_ids
    for name in sorted(p.name for p in (heldout_root / "images" / "test").iterdir()):
        for folder in ("images/{}", "panoptic_{}"):
            a = (heldout_root / folder.format("test") / name).read_bytes()
            b = (heldout_root / folder.format("test_seen") / name).read_bytes()
            assert a == b, (folder, name)
    assert (
        _json(heldout_root, "panoptic_test.json")["annotations"]
        == _json(heldout_root, "panoptic_test_seen.json")["annotations"]
    )

    # the same statements, other words
    forms = {
        s: _json(heldout_root, f"logical_forms_{s}.json")["forms"] for s in ("test", "test_seen")
    }
    for image_id in test.image_ids:
        a, b = test.captions[image_id], seen.captions[image_id]
        assert [forms["test"][c] for c in a] == [forms["test_seen"][c] for c in b]
        assert not set(a) & set(b)
    caption_ids = {
        a["id"]
        for s in ("test", "test_seen")
        for a in _json(heldout_root, f"captions_{s}.json")["annotations"]
    }
    assert len(caption_ids) == 2 * sum(len(c) for c in test.captions.values())

    # which family worded each caption
    for split, group in (
        ("train", "train"),
        ("test_seen", "train"),
        ("val", "val"),
        ("test", "test"),
    ):
        used = {item["family"] for item in _json(heldout_root, f"groundings_{split}.json")["items"]}
        assert used and used <= set(FAMILY_SPLITS[group]), split
    for image_id in test.image_ids:
        for caption in test.captions[image_id]:
            # a held-out caption is not the training wording ("plain") of its content
            assert caption != forms["test"][caption]

    # task files follow the images: test_seen asks what test asks
    for task in ("vqa", "ve", "nlvr2"):
        assert _json(heldout_root, f"{task}_test.json") == _json(
            heldout_root, f"{task}_test_seen.json"
        )
