"""Phrase grounding: which panoptic segments each noun phrase of a caption names.

A *noun phrase* is a category name of the data set (several words allowed, singular or plural,
e.g. "circle", "crosses", "traffic light") with the attribute words right before it that the
data set's ``segments_info`` attributes use (the benchmark: "small white" in "a small white
square"). A phrase is *grounded* in the segments of its category whose attributes agree with
every attribute word; phrases that no segment matches are left out (e.g. "object", or "a red
cross" in a hard negative). On the generated benchmark this is exact (captions name each object
uniquely by construction); on real COCO captions it grounds category mentions ("two dogs" →
every dog segment), as weak phrase-grounding supervision.

The result feeds the ITM head's grounding term (:mod:`neurogshn.losses.grounding`): the tokens
of a phrase should attend to its segments' nodes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

_WORD = re.compile(r"[a-z0-9]+", re.IGNORECASE)


@dataclass(frozen=True)
class SegmentLabel:
    """What the grounding needs to know about one panoptic segment.

    Args:
        id: panoptic segment id.
        category: category name.
        attributes: ``{name: value}`` (e.g. ``{"color": "red", "size": "small"}``).
    """

    id: int
    category: str
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PhraseGrounding:
    """One grounded noun phrase: characters ``[start, end)`` of the caption name
    ``segment_ids``."""

    start: int
    end: int
    segment_ids: tuple[int, ...]


def _plural(word: str) -> str:
    return word + ("es" if word.endswith(("s", "x", "ch", "sh", "ss")) else "s")


class PhraseGrounder:
    """Finds and grounds noun phrases for one data set's categories and attribute values.

    Args:
        categories: the data set's category names.
        attribute_values: ``{value word: attribute name}`` (e.g. ``{"red": "color"}``).
    """

    def __init__(self, categories: Iterable[str], attribute_values: Mapping[str, str]) -> None:
        self.attribute_values = {str(k).lower(): str(v) for k, v in attribute_values.items()}
        # token sequence (singular and plural last word) -> category name; longest first
        forms: dict[tuple[str, ...], str] = {}
        for name in categories:
            words = tuple(w.lower() for w in _WORD.findall(str(name)))
            if not words:
                continue
            forms.setdefault(words, str(name))
            forms.setdefault((*words[:-1], _plural(words[-1])), str(name))
        self._forms = sorted(forms.items(), key=lambda kv: -len(kv[0]))

    @classmethod
    def for_segments(
        cls, categories: Iterable[str], segments: Iterable[SegmentLabel]
    ) -> PhraseGrounder:
        """A grounder whose attribute words are every attribute value found in ``segments``."""
        values: dict[str, str] = {}
        for seg in segments:
            for name, value in seg.attributes.items():
                values.setdefault(str(value).lower(), str(name))
        return cls(categories, values)

    def phrases(self, text: str) -> list[tuple[int, int, str, dict[str, str]]]:
        """``(start, end, category, {attribute: value})`` of each noun phrase, in order."""
        words = [(m.group().lower(), m.start(), m.end()) for m in _WORD.finditer(text)]
        out = []
        i = 0
        while i < len(words):
            hit = None
            for form, name in self._forms:
                n = len(form)
                if tuple(w for w, _, _ in words[i : i + n]) == form:
                    hit = (n, name)
                    break
            if hit is None:
                i += 1
                continue
            n, name = hit
            attrs: dict[str, str] = {}
            first = i
            while first > 0 and words[first - 1][0] in self.attribute_values:
                attr = self.attribute_values[words[first - 1][0]]
                if attr in attrs:
                    break
                attrs[attr] = words[first - 1][0]
                first -= 1
            out.append((words[first][1], words[i + n - 1][2], name, attrs))
            i += n
        return out

    def ground(self, text: str, segments: Sequence[SegmentLabel]) -> list[PhraseGrounding]:
        """The noun phrases of ``text`` that name at least one of ``segments``."""
        out = []
        for start, end, category, attrs in self.phrases(text):
            ids = tuple(
                s.id
                for s in segments
                if s.category == category
                and all(str(s.attributes.get(k, "")).lower() == v for k, v in attrs.items())
            )
            if ids:
                out.append(PhraseGrounding(start, end, ids))
        return out


def caption_groundings(dataset: Any) -> dict[tuple[int, int], tuple[PhraseGrounding, ...]]:
    """``{(image_id, caption_index): phrases}`` for every caption of a
    :class:`~neurogshn.data.coco.CocoPanopticDataset` (read from its annotations only; no image
    is decoded). Captions without a grounded phrase are left out."""
    labels = {iid: dataset.segment_labels(iid) for iid in dataset.image_ids}
    grounder = PhraseGrounder.for_segments(
        (c["name"] for c in dataset.categories.values()),
        (s for segs in labels.values() for s in segs),
    )
    out: dict[tuple[int, int], tuple[PhraseGrounding, ...]] = {}
    for iid in dataset.image_ids:
        for k, caption in enumerate(dataset.captions.get(iid, [])):
            found = grounder.ground(caption, labels[iid])
            if found:
                out[(iid, k)] = tuple(found)
    return out
