"""Phrase grounding: noun phrases of captions → panoptic segments (neurogshn.data.grounding)."""

from __future__ import annotations

import pytest

import neurogshn.data.coco as coco_mod
from neurogshn.data.coco import CocoPanopticDataset
from neurogshn.data.grounding import (
    PhraseGrounder,
    PhraseGrounding,
    SegmentLabel,
    caption_groundings,
)
from neurogshn.data.relational.vocabulary import COLORS, SHAPES, SIZES, STUFF

SEGMENTS = [
    SegmentLabel(1, "square", {"color": "white", "size": "small"}),
    SegmentLabel(2, "square", {"color": "white", "size": "large"}),
    SegmentLabel(3, "square", {"color": "red", "size": "small"}),
    SegmentLabel(4, "cross", {"color": "blue", "size": "small"}),
    SegmentLabel(5, "cross", {"color": "green", "size": "large"}),
    SegmentLabel(6, "grass"),
    SegmentLabel(7, "traffic light", {"color": "red", "size": "small"}),
]
CATEGORIES = ["square", "cross", "circle", "grass", "traffic light", "light"]


@pytest.fixture
def grounder() -> PhraseGrounder:
    return PhraseGrounder.for_segments(CATEGORIES, SEGMENTS)


def spans(text: str, found: list[PhraseGrounding]) -> list[tuple[str, tuple[int, ...]]]:
    return [(text[p.start : p.end], p.segment_ids) for p in found]


def test_attribute_words_before_the_category(grounder):
    text = "there is a small white square."
    assert grounder.phrases(text) == [(11, 29, "square", {"color": "white", "size": "small"})]
    found = grounder.ground(text, SEGMENTS)
    assert found == [PhraseGrounding(11, 29, (1,))]
    assert text[11:29] == "small white square"


def test_partial_attributes_ground_every_matching_segment(grounder):
    text = "A White Square left of a red square"  # case-insensitive, spans in the original
    assert spans(text, grounder.ground(text, SEGMENTS)) == [
        ("White Square", (1, 2)),
        ("red square", (3,)),
    ]


def test_plural_grounds_every_segment_of_the_category(grounder):
    text = "two crosses and a square"
    assert spans(text, grounder.ground(text, SEGMENTS)) == [
        ("crosses", (4, 5)),
        ("square", (1, 2, 3)),
    ]


def test_multi_word_category_wins_over_its_last_word(grounder):
    text = "a small red traffic light and two traffic lights"
    assert grounder.phrases(text) == [
        (2, 25, "traffic light", {"size": "small", "color": "red"}),
        (34, 48, "traffic light", {}),
    ]
    assert spans(text, grounder.ground(text, SEGMENTS)) == [
        ("small red traffic light", (7,)),
        ("traffic lights", (7,)),
    ]


def test_attribute_mismatch_gives_no_grounding(grounder):
    for text in ("a large red square", "a red cross", "a small green cross"):
        assert len(grounder.phrases(text)) == 1  # the phrase is found ...
        assert grounder.ground(text, SEGMENTS) == []  # ... but names no segment
    # for_segments only knows the values its segments carry: "yellow" is an ordinary word
    # there, but with the full vocabulary it is an attribute that no cross has
    assert [p.segment_ids for p in grounder.ground("a yellow cross", SEGMENTS)] == [(4, 5)]
    full = PhraseGrounder(CATEGORIES, {c: "color" for c in COLORS} | {s: "size" for s in SIZES})
    assert full.phrases("a yellow cross") == [(2, 14, "cross", {"color": "yellow"})]
    assert full.ground("a yellow cross", SEGMENTS) == []
    # a category with no segment in the image is not grounded either
    assert grounder.ground("a circle", SEGMENTS) == []


def test_words_that_are_not_categories_give_nothing(grounder):
    for text in ("there are two objects.", "a small white object", "crossing squared", ""):
        assert grounder.phrases(text) == []
        assert grounder.ground(text, SEGMENTS) == []


def test_stuff_is_grounded(grounder):
    text = "the red square is on the grass."
    assert spans(text, grounder.ground(text, SEGMENTS)) == [
        ("red square", (3,)),
        ("grass", (6,)),
    ]


def test_attribute_run_stops_at_a_repeated_attribute(grounder):
    # "white red square": only "red" binds to the square (one color per phrase)
    assert grounder.phrases("a white red square") == [(8, 18, "square", {"color": "red"})]


def test_explicit_attribute_vocabulary():
    g = PhraseGrounder(["box"], {"Big": "size"})
    assert g.phrases("two big boxes") == [(4, 13, "box", {"size": "big"})]
    segs = [SegmentLabel(1, "box", {"size": "BIG"}), SegmentLabel(2, "box", {"size": "tiny"})]
    assert g.ground("two big boxes", segs) == [PhraseGrounding(4, 13, (1,))]


# ---------------------------------------------------------------- the generated benchmark


@pytest.fixture(scope="module")
def train_split(scenes_root) -> CocoPanopticDataset:
    return CocoPanopticDataset(scenes_root, "train")


def test_caption_groundings_on_generated_scenes(train_split):
    ds = train_split
    found = caption_groundings(ds)
    things, stuff = set(SHAPES), set(STUFF)
    n_captions = 0
    for iid in ds.image_ids:
        labels = {s.id: s for s in ds.segment_labels(iid)}
        assert labels and len(labels) == len(ds.segment_labels(iid))
        for k, caption in enumerate(ds.captions[iid]):
            n_captions += 1
            assert (iid, k) in found, f"no grounded phrase in {caption!r}"
            for p in found[(iid, k)]:
                words = caption[p.start : p.end].lower().split()
                assert words and p.segment_ids
                category = words[-1]
                if category in stuff:
                    assert [labels[s].category for s in p.segment_ids] == [category]
                    continue
                category = category.removesuffix("es") if category.endswith("sses") else category
                category = category.removesuffix("s") if category not in things else category
                assert category in things, caption
                for sid in p.segment_ids:
                    seg = labels[sid]  # the id exists in this image
                    assert seg.category == category
                    for w in words[:-1]:  # every attribute word agrees with the segment
                        assert w in seg.attributes.values(), (caption, seg)
                        assert w in COLORS or w in SIZES
    assert n_captions == sum(len(c) for c in ds.captions.values()) > 0
    assert set(found) <= {(i, k) for i in ds.image_ids for k in range(len(ds.captions[i]))}


def test_generated_captions_name_each_object_uniquely(train_split):
    """The benchmark's captions identify objects uniquely: a thing phrase names one segment."""
    found = caption_groundings(train_split)
    sizes = [len(p.segment_ids) for phrases in found.values() for p in phrases]
    assert sizes and max(sizes) == 1


def test_segment_labels_read_no_image(train_split, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("an image file was opened")

    monkeypatch.setattr(coco_mod.Image, "open", boom)
    iid = train_split.image_ids[0]
    labels = train_split.segment_labels(iid)
    assert all(isinstance(s, SegmentLabel) and s.id != 0 for s in labels)
    cats = {s.category for s in labels}
    assert cats & set(STUFF) and cats & set(SHAPES)
    for s in labels:
        if s.category in SHAPES:
            assert s.attributes["color"] in COLORS and s.attributes["size"] in SIZES
        else:
            assert s.attributes == {}
    assert caption_groundings(train_split)
    with pytest.raises(AssertionError, match="image file was opened"):
        train_split[0]  # the check above is live: decoding a record does open files


def test_segment_labels_agree_with_the_decoded_record(train_split):
    for i in range(3):
        record = train_split[i]
        labels = train_split.segment_labels(record.image_id)
        decoded = {s.id: s.category for s in record.segmentation.segments}
        assert {s.id: s.category for s in labels} == decoded


def test_spans_index_the_original_text_when_lowercasing_changes_its_length():
    from neurogshn.data.grounding import PhraseGrounder, SegmentLabel

    grounder = PhraseGrounder(["square"], {"red": "color"})
    text = "İ see a Red Square."
    (found,) = grounder.ground(text, [SegmentLabel(7, "square", {"color": "red"})])
    assert text[found.start : found.end] == "Red Square" and found.segment_ids == (7,)
