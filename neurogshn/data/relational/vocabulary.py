"""The fixed vocabulary of the relational-scenes benchmark (DESIGN.md §4).

Other data sets can reuse it: categories are matched **by name**, never by id.

================  ==========================================================
things (shapes)   circle, square, triangle, diamond, cross
stuff             sky, grass, water, sand
colors            red, green, blue, yellow, purple, orange, white, gray
sizes             small, large
relations         left of, right of, above, below
================  ==========================================================

Category ids on disk: things 1–5, stuff 6–9, in the order above.
"""

from __future__ import annotations

from typing import Any

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross")
STUFF: tuple[str, ...] = ("sky", "grass", "water", "sand")
COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange", "white", "gray")
SIZES: tuple[str, ...] = ("small", "large")
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")

#: Relation → its converse (``A left of B`` ⇔ ``B right of A``).
CONVERSE: dict[str, str] = {
    "left of": "right of",
    "right of": "left of",
    "above": "below",
    "below": "above",
}

#: Plural of each shape (for counting statements).
PLURALS: dict[str, str] = {
    "circle": "circles",
    "square": "squares",
    "triangle": "triangles",
    "diamond": "diamonds",
    "cross": "crosses",
}

#: Number words used in statements and VQA answers (``0``–``6``).
NUMBER_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six")

#: Rendered RGB of each thing color (before texture/noise).
COLOR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (215, 38, 38),
    "green": (34, 160, 56),
    "blue": (38, 72, 220),
    "yellow": (242, 214, 36),
    "purple": (138, 56, 178),
    "orange": (245, 138, 28),
    "white": (246, 246, 246),
    "gray": (128, 128, 128),
}

#: Rendered RGB of each stuff region (before texture/noise).
STUFF_RGB: dict[str, tuple[int, int, int]] = {
    "sky": (150, 200, 238),
    "grass": (110, 176, 84),
    "water": (58, 112, 170),
    "sand": (222, 200, 150),
}

THING_CATEGORY_IDS: dict[str, int] = {name: i + 1 for i, name in enumerate(SHAPES)}
STUFF_CATEGORY_IDS: dict[str, int] = {name: len(SHAPES) + i + 1 for i, name in enumerate(STUFF)}
CATEGORY_IDS: dict[str, int] = {**THING_CATEGORY_IDS, **STUFF_CATEGORY_IDS}


def coco_categories() -> list[dict[str, Any]]:
    """The ``categories`` list of the panoptic JSON (COCO panoptic format)."""
    cats = [
        {"id": THING_CATEGORY_IDS[s], "name": s, "supercategory": "shape", "isthing": 1}
        for s in SHAPES
    ]
    cats += [
        {"id": STUFF_CATEGORY_IDS[s], "name": s, "supercategory": "background", "isthing": 0}
        for s in STUFF
    ]
    return cats


def vqa_answers() -> list[str]:
    """The VQA answer vocabulary: colors, shapes, counts 0–6 (digits), yes, no."""
    return [*COLORS, *SHAPES, *[str(i) for i in range(len(NUMBER_WORDS))], "yes", "no"]
