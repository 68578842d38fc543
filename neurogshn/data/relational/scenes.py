"""The embedded benchmark: deterministic relational scenes in the official COCO formats.

Each scene has one or two stuff regions (sky, grass, water, sand) filling the background and
2–6 things (circle, square, triangle, diamond, cross) with a color and a size, drawn with light
texture and noise. Masks are rasterised here (pixel-centre tests, no anti-aliasing), so the
panoptic ground truth is exact; occlusion is resolved by drawing order and a placement that
leaves any object less than :data:`MIN_VISIBLE` of its area visible is rejected. Within a
scene every color+shape pair is unique, so "the red circle" (with or without its size) always
picks out one object.

:func:`generate_scenes` writes, per split::

    images/{split}/{image_id:012d}.png            RGB image
    panoptic_{split}/{image_id:012d}.png          id = R + 256·G + 256²·B
    annotations/panoptic_{split}.json             COCO panoptic (+ "attributes" per thing)
    annotations/captions_{split}.json             COCO captions, 5 per image
    annotations/hard_negatives_{split}.json       ARO-style negatives per caption
    annotations/groundings_{split}.json           which segments each caption's noun phrases name
    annotations/logical_forms_{split}.json        each caption's and negative's logical form
    annotations/vqa_{split}.json, ve_{split}.json, nlvr2_{split}.json   task files

and ``annotations/scenes.json``, the manifest that declares the data set as this benchmark
(its diagnostics, :mod:`neurogshn.data.relational.adapter`, run only on data sets that do).

Every image is drawn from its own random stream ``(seed, split, index)``, so changing the size
of one split changes no other split, and the same seed gives byte-identical files. The wording
of each caption is drawn from a second stream ``(seed, split, 2, index)`` among the split's
phrasing families (:mod:`neurogshn.data.relational.phrasing`). With held-out phrasings the
``val`` and ``test`` splits get families of their own, and a ``test_seen`` split holds the
test split's scenes and statements worded by the training families: the same images and
content, seen wording, so the two test splits measure what the wording alone changes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from neurogshn.data.benchmarks import RELATIONAL_SCENES
from neurogshn.data.relational.captions import (
    HARD_NEGATIVE_KINDS,
    CaptionSpec,
    hard_negatives,
    make_captions,
)
from neurogshn.data.relational.logic import SceneFacts, SceneObject, true_relations
from neurogshn.data.relational.phrasing import FAMILY_SPLITS, Style, families_for, render
from neurogshn.data.relational.streams import image_rng, phrasing_rng, split_code
from neurogshn.data.relational.vocabulary import (
    CATEGORY_IDS,
    COLOR_RGB,
    COLORS,
    SHAPES,
    SIZES,
    STUFF,
    STUFF_RGB,
    coco_categories,
)
from neurogshn.errors import ConfigError, DataError
from neurogshn.utils.io import atomic_path, write_json_atomic

log = logging.getLogger(__name__)

#: Radius (fraction of the image side) of each size.
SIZE_RADIUS: dict[str, float] = {"small": 0.07, "large": 0.115}
#: An object must keep at least this fraction of its drawn area visible.
MIN_VISIBLE: float = 0.7
#: Image-id offset per split (ids are unique across the splits of one data set).
SPLIT_ID_BASE: dict[str, int] = {"train": 0, "val": 1_000_000, "test": 2_000_000}
DEFAULT_SPLITS: dict[str, int] = {"train": 2000, "val": 200, "test": 1000}
#: 2: hard negatives gained ``size_flip`` (images, captions and other files as in version 1).
#: 3: hard negatives gained ``count_flip`` and ``stuff_replace`` (everything else as in version 2).
#: 4: hard negatives gained ``unrelated_pair`` (everything else as in version 3).
#: 5: captions worded by phrasing families (held-out families for val/test on request), the
#: ``test_seen`` split, grounding and logical-form files, ``caption_id`` in hard negatives.
BENCHMARK_VERSION = 5
#: The manifest's ``benchmark`` field: what declares a data set as this benchmark.
BENCHMARK_NAME: str = RELATIONAL_SCENES
#: Splits that show another split's scenes (same images, ids and content, other wording).
SCENE_SOURCE: dict[str, str] = {"test_seen": "test"}
#: NLVR2-style pairs per training image (val and test keep one per image). One pair per image
#: let a task head memorise its 2,000 pairs instead of the quantifiers (docs/results.md).
DEFAULT_NLVR2_TRAIN_PAIRS = 5


@dataclass
class Scene:
    """A rendered scene.

    Attributes:
        image: ``H×W×3`` uint8 RGB.
        segment_map: ``H×W`` int64 panoptic ids (no void: stuff covers the background).
        segments: COCO ``segments_info`` dicts (things carry ``attributes``).
        facts: what the scene logic needs (things with visible centroids, stuff names).
    """

    image: np.ndarray
    segment_map: np.ndarray
    segments: list[dict[str, Any]]
    facts: SceneFacts
    captions: list[str] = field(default_factory=list)
    negatives: list[dict[str, str | None]] = field(default_factory=list)
    groundings: list[list[tuple[int, int, tuple[int, ...]]]] = field(default_factory=list)
    logical_forms: dict[str, str] = field(default_factory=dict)
    families: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Rasterisation
# ---------------------------------------------------------------------------------------------


def shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Pixel-centre inside test of ``shape`` of radius ``r`` (offsets ``dx``, ``dy``)."""
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        h = 0.82 * r
        return (np.abs(dx) <= h) & (np.abs(dy) <= h)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= 1.1 * r
    if shape == "cross":
        t = 0.36 * r
        return ((np.abs(dx) <= t) & (np.abs(dy) <= r)) | ((np.abs(dy) <= t) & (np.abs(dx) <= r))
    if shape == "triangle":
        # upward triangle: apex (0, -r), base at y = 0.75 r, half-width 0.98 r
        top, base, half = -r, 0.75 * r, 0.98 * r
        inside_y = (dy >= top) & (dy <= base)
        return inside_y & (np.abs(dx) <= half * (dy - top) / (base - top))
    raise ConfigError(f"unknown shape {shape!r}")


def _edge(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it."""
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


def _background(
    rng: np.random.Generator, size: int, yy: np.ndarray, xx: np.ndarray
) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """Stuff layout: one region, or two separated by a wavy horizontal boundary."""
    image = np.empty((size, size, 3), dtype=np.float32)
    n_stuff = 1 + int(rng.random() < 0.6)
    names = [STUFF[int(i)] for i in rng.permutation(len(STUFF))[:n_stuff]]
    if n_stuff == 1:
        regions = [(names[0], np.ones((size, size), dtype=bool))]
    else:
        c = rng.uniform(0.35, 0.6) * size
        amp = rng.uniform(0.02, 0.06) * size
        freq = rng.uniform(0.5, 2.0) * 2 * np.pi / size
        phase = rng.uniform(0, 2 * np.pi)
        boundary = c + amp * np.sin(freq * xx[0] + phase)
        top = yy < boundary[None, :]
        regions = [(names[0], top), (names[1], ~top)]
    for name, mask in regions:
        base = np.asarray(STUFF_RGB[name], dtype=np.float32)
        # low-frequency texture: gentle waves whose direction and period vary per image
        fx, fy = rng.uniform(0.05, 0.25, size=2)
        ph = rng.uniform(0, 2 * np.pi)
        amp = np.float32(rng.uniform(4, 10))
        wave = np.sin(np.float32(fx) * xx[mask] + np.float32(fy) * yy[mask] + np.float32(ph))
        image[mask] = base[None, :] + (amp * wave)[:, None]
    return image, regions


def render_scene(rng: np.random.Generator, size: int = 128, max_tries: int = 50) -> Scene:
    """Draw one scene from ``rng``.

    Args:
        rng: the scene's random stream.
        size: image side in pixels (>= 32).
        max_tries: placement attempts before the object count is reduced.

    Shapes:
        ``Scene.image``: ``size×size×3`` uint8; ``Scene.segment_map``: ``size×size`` int64.
    """
    if size < 32:
        raise ConfigError(f"image_size must be at least 32 pixels, got {size}")
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    image, regions = _background(rng, size, yy, xx)
    n_obj = int(rng.integers(2, 7))
    combos = [(c, s) for c in COLORS for s in SHAPES]
    picks = rng.choice(len(combos), size=6, replace=False)
    ids = rng.choice(256**3 - 1, size=8, replace=False) + 1
    tries = 0
    while True:
        tries += 1
        if tries > max_tries:
            n_obj, tries = max(2, n_obj - 1), 0
        objs = []
        for k in range(n_obj):
            color, shape = combos[int(picks[k])]
            sz = SIZES[int(rng.integers(len(SIZES)))]
            r = SIZE_RADIUS[sz] * size
            lo, hi = r + 1.0, size - r - 2.0
            cx, cy = rng.uniform(lo, hi), rng.uniform(lo, hi)
            objs.append((shape, color, sz, r, cx, cy))
        # draw (later objects occlude earlier ones)
        seg = np.zeros((size, size), dtype=np.int64)
        masks = []
        for k, (shape, _c, _s, r, cx, cy) in enumerate(objs):
            m = shape_mask(shape, xx + 0.5 - cx, yy + 0.5 - cy, r)
            masks.append(m)
            seg[m] = k + 1
        visible = [(seg == k + 1) for k in range(n_obj)]
        if any(v.sum() < MIN_VISIBLE * m.sum() or m.sum() == 0 for v, m in zip(visible, masks)):
            continue
        facts_objs = []
        for k, (shape, color, sz, _r, _cx, _cy) in enumerate(objs):
            ys, xs = np.nonzero(visible[k])
            facts_objs.append(
                SceneObject(
                    id=int(ids[k]),
                    shape=shape,
                    color=color,
                    size=sz,
                    x=float((xs.mean() + 0.5) / size),
                    y=float((ys.mean() + 0.5) / size),
                    area=len(xs),
                )
            )
        facts = SceneFacts(tuple(facts_objs))
        if not true_relations(facts):
            continue
        break

    # paint things
    for k, (_shape, color, _sz, _r, _cx, _cy) in enumerate(objs):
        m = masks[k]
        base = np.asarray(COLOR_RGB[color], dtype=np.float32)
        shade = 0.9 + 0.1 * np.sin(rng.uniform(0.1, 0.4) * (xx[m] + yy[m]))
        image[m] = base[None, :] * shade[:, None]
        edge = _edge(m)
        image[edge] *= 0.55
    image += rng.standard_normal((size, size, 3), dtype=np.float32) * np.float32(5.0)
    image = np.clip(image, 0, 255, out=image).round().astype(np.uint8)

    # panoptic map
    segment_map = np.zeros((size, size), dtype=np.int64)
    segments: list[dict[str, Any]] = []
    stuff_present = []
    for j, (name, mask) in enumerate(regions):
        sid = int(ids[6 + j])
        visible = mask & (seg == 0)
        if not visible.any():
            continue
        segment_map[visible] = sid
        stuff_present.append(name)
        segments.append(_segment_info(sid, CATEGORY_IDS[name], visible))
    for k, (shape, color, sz, *_rest) in enumerate(objs):
        sid = int(ids[k])
        v = seg == k + 1
        segment_map[v] = sid
        info = _segment_info(sid, CATEGORY_IDS[shape], v)
        info["attributes"] = {"color": color, "size": sz}
        segments.append(info)
    facts = SceneFacts(facts.objects, tuple(stuff_present))
    return Scene(image=image, segment_map=segment_map, segments=segments, facts=facts)


def _segment_info(sid: int, category_id: int, mask: np.ndarray) -> dict[str, Any]:
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return {
        "id": sid,
        "category_id": category_id,
        "iscrowd": 0,
        "bbox": [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1],
        "area": len(xs),
    }


def ids_to_rgb(segment_map: np.ndarray) -> np.ndarray:
    """Encode panoptic ids as COCO PNG colors (``id = R + 256·G + 256²·B``)."""
    ids = segment_map.astype(np.int64)
    return np.stack([ids % 256, (ids // 256) % 256, ids // 65536], axis=-1).astype(np.uint8)


def rgb_to_ids(rgb: np.ndarray) -> np.ndarray:
    """Decode a COCO panoptic PNG (``H×W×3`` uint8) to ids."""
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def draw_style(rng: np.random.Generator, families: tuple[str, ...]) -> Style:
    """The wording choices of one caption: a family of ``families`` and one random integer
    per choice (:class:`~neurogshn.data.relational.phrasing.Style`)."""
    family = families[int(rng.integers(len(families)))]
    picks = [int(v) for v in rng.integers(1 << 30, size=5)]
    return Style(family, *picks)


def make_scene(
    seed: int,
    split: str,
    index: int,
    image_size: int = 128,
    families: tuple[str, ...] = FAMILY_SPLITS["train"],
) -> Scene:
    """Scene ``index`` of ``split``: image, masks, captions (worded by ``families``), their
    hard negatives (worded like their caption), groundings and logical forms.

    A split of :data:`SCENE_SOURCE` shows its source split's scene and statements; only the
    wording is its own."""
    rng = image_rng(seed, SCENE_SOURCE.get(split, split), index)
    scene = render_scene(rng, image_size)
    specs = make_captions(scene.facts, rng, n=5)
    negatives = [hard_negatives(s, scene.facts, rng) for s in specs]
    wording = phrasing_rng(seed, split, index)
    for spec, negs in zip(specs, negatives, strict=True):
        style = draw_style(wording, families)
        caption = render(spec, style)
        scene.captions.append(caption.text)
        scene.families.append(style.family)
        scene.logical_forms[caption.text] = spec.canonical()
        scene.groundings.append(_phrase_segments(scene.facts, spec, caption.spans))
        worded: dict[str, str | None] = {}
        for kind in HARD_NEGATIVE_KINDS:
            neg = negs[kind]
            text = None if neg is None else render(neg, style).text
            if neg is not None and text is not None:
                scene.logical_forms[text] = neg.canonical()
            worded[kind] = text
        scene.negatives.append(worded)
    return scene


def _phrase_segments(
    facts: SceneFacts, spec: CaptionSpec, spans: tuple[tuple[int, int, str], ...]
) -> list[tuple[int, int, tuple[int, ...]]]:
    """Each noun phrase's characters and the segment ids of the objects it names."""
    out = []
    for start, end, slot in spans:
        phrase = getattr(spec, slot)
        ids = tuple(o.id for o in facts.match(phrase))
        if ids:
            out.append((start, end, ids))
    return out


# ---------------------------------------------------------------------------------------------
# Writing the data set
# ---------------------------------------------------------------------------------------------


def _save_png(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array).save(path, format="PNG", compress_level=1)


def _info(seed: int, image_size: int, split: str) -> dict[str, Any]:
    return {
        "description": "neurogshn relational scenes (generated)",
        "version": BENCHMARK_VERSION,
        "seed": int(seed),
        "split": split,
        "image_size": int(image_size),
    }


def image_id_for(split: str, index: int) -> int:
    """The image id of scene ``index`` of ``split`` (unique across splits, except that a split
    of :data:`SCENE_SOURCE` shares its source's ids: they are the same images)."""
    split = SCENE_SOURCE.get(split, split)
    base = SPLIT_ID_BASE.get(split)
    if base is None:
        base = 3_000_000 + (split_code(split) % 1000) * 1_000_000
    return base + index + 1


def generate_split(
    out_dir: str | os.PathLike[str],
    split: str,
    n: int,
    seed: int = 0,
    image_size: int = 128,
    progress: bool = True,
    nlvr2_pairs_per_image: int = 1,
    families: tuple[str, ...] = FAMILY_SPLITS["train"],
) -> dict[int, Scene]:
    """Write one split (images, panoptic PNGs and JSON, captions worded by ``families``, hard
    negatives, groundings, logical forms, tasks).

    ``nlvr2_pairs_per_image``: NLVR2-style pairs with each image on the left
    (:func:`neurogshn.data.relational.taskgen.make_nlvr2`).

    Returns:
        ``{image_id: Scene}`` of the split (its images are not kept in memory twice).
    """
    from tqdm.auto import tqdm

    from neurogshn.data.relational.taskgen import write_task_files

    root = Path(out_dir)
    img_dir, pan_dir, ann_dir = (
        root / "images" / split,
        root / f"panoptic_{split}",
        root / "annotations",
    )
    for d in (img_dir, pan_dir, ann_dir):
        d.mkdir(parents=True, exist_ok=True)
    images, pan_anns, cap_anns, neg_items, ground_items = [], [], [], [], []
    forms: dict[str, str] = {}
    scenes: dict[int, Scene] = {}
    cap_id = image_id_for(split, 0) * 10
    if split in SCENE_SOURCE:  # its own caption ids: the images are shared, not the captions
        cap_id += 5_000_000_000
    for index in tqdm(range(n), desc=f"scenes {split}", unit="img", disable=not progress):
        image_id = image_id_for(split, index)
        scene = make_scene(seed, split, index, image_size, families)
        file_name = f"{image_id:012d}.png"
        _save_png(scene.image, img_dir / file_name)
        _save_png(ids_to_rgb(scene.segment_map), pan_dir / file_name)
        images.append(
            {"id": image_id, "file_name": file_name, "width": image_size, "height": image_size}
        )
        pan_anns.append(
            {"image_id": image_id, "file_name": file_name, "segments_info": scene.segments}
        )
        parts = zip(scene.captions, scene.negatives, scene.groundings, scene.families)
        for ci, (cap, negs, phrases, family) in enumerate(parts):
            cap_anns.append({"id": cap_id, "image_id": image_id, "caption": cap})
            neg_items.append(
                {"image_id": image_id, "caption_index": ci, "caption_id": cap_id, "caption": cap}
                | {k: negs[k] for k in HARD_NEGATIVE_KINDS}
            )
            ground_items.append(
                {
                    "caption_id": cap_id,
                    "image_id": image_id,
                    "family": family,
                    "phrases": [
                        {"start": a, "end": b, "segment_ids": list(ids)} for a, b, ids in phrases
                    ],
                }
            )
            cap_id += 1
        forms.update(scene.logical_forms)
        scene.image = np.empty((0, 0, 3), dtype=np.uint8)  # free memory; files hold it
        scenes[image_id] = scene
    info = _info(seed, image_size, split)
    write_json_atomic(
        ann_dir / f"panoptic_{split}.json",
        {
            "info": info,
            "licenses": [],
            "images": images,
            "annotations": pan_anns,
            "categories": coco_categories(),
        },
        indent=None,
    )
    write_json_atomic(
        ann_dir / f"captions_{split}.json",
        {"info": info, "licenses": [], "images": images, "annotations": cap_anns},
        indent=None,
    )
    write_json_atomic(
        ann_dir / f"hard_negatives_{split}.json", {"version": 2, "items": neg_items}, indent=None
    )
    write_json_atomic(
        ann_dir / f"groundings_{split}.json", {"version": 1, "items": ground_items}, indent=None
    )
    write_json_atomic(
        ann_dir / f"logical_forms_{split}.json",
        {"version": 1, "grammar": "neurogshn.data.relational.logic", "forms": forms},
        indent=None,
    )
    write_task_files(
        root,
        split,
        {k: v.facts for k, v in scenes.items()},
        seed,
        nlvr2_pairs_per_image,
        rng_split=SCENE_SOURCE.get(split, split),
    )
    return scenes


def generate_scenes(
    out_dir: str | os.PathLike[str],
    seed: int = 0,
    splits: Mapping[str, int] | None = None,
    image_size: int = 128,
    progress: bool = True,
    nlvr2_train_pairs: int = DEFAULT_NLVR2_TRAIN_PAIRS,
    heldout_phrasings: bool = False,
    overwrite: bool = False,
) -> Path:
    """Generate the relational-scenes benchmark into ``out_dir``.

    Args:
        out_dir: data set root (created).
        seed: the benchmark seed; same seed, sizes and pair count → byte-identical files.
        splits: ``{split: number of images}`` (default :data:`DEFAULT_SPLITS`; with
            ``heldout_phrasings`` a ``test_seen`` split as large as ``test`` is added).
        image_size: image side in pixels.
        progress: show a tqdm bar per split.
        nlvr2_train_pairs: NLVR2-style pairs per image of the ``train`` split (other splits:
            one). The first pair of each image does not depend on it.
        heldout_phrasings: ``val`` and ``test`` are worded by phrasing families of their own,
            which neither the training families nor each other share
            (:data:`~neurogshn.data.relational.phrasing.FAMILY_SPLITS`); every other split by
            the training families.
        overwrite: write into a non-empty ``out_dir`` (files of the same names are replaced);
            without it such a directory is refused, so that nobody's data is overwritten.

    Returns:
        ``out_dir`` as a ``Path``.

    Raises:
        DataError: ``out_dir`` exists, is not empty and ``overwrite`` is off.
    """
    splits = dict(DEFAULT_SPLITS if splits is None else splits)
    if heldout_phrasings and "test" in splits and "test_seen" not in splits:
        splits["test_seen"] = splits["test"]
    for name, n in splits.items():
        if int(n) < 0:
            raise ConfigError(f"split {name!r}: number of images must be >= 0, got {n}")
        if int(n) >= 1_000_000:
            raise ConfigError(f"split {name!r}: at most 999,999 images, got {n}")
    if image_size < 32:
        raise ConfigError(f"image_size must be at least 32 pixels, got {image_size}")
    if int(nlvr2_train_pairs) < 1:
        raise ConfigError(f"nlvr2_train_pairs must be >= 1, got {nlvr2_train_pairs}")
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise DataError(root, "exists and is not a directory")
    if root.is_dir() and any(root.iterdir()) and not overwrite:
        raise DataError(
            root,
            "is not empty: refusing to write the benchmark into it (choose a new directory, "
            "or pass --overwrite to replace the files of the same names)",
        )
    families = {name: families_for(name, heldout_phrasings) for name in splits}
    manifest = {
        "benchmark": BENCHMARK_NAME,
        "version": BENCHMARK_VERSION,
        "seed": int(seed),
        "image_size": int(image_size),
        "splits": {k: int(v) for k, v in splits.items()},
        "nlvr2_train_pairs_per_image": int(nlvr2_train_pairs),
        "heldout_phrasings": bool(heldout_phrasings),
        "phrasing_families": {k: list(v) for k, v in families.items()},
        "scene_source": {k: v for k, v in SCENE_SOURCE.items() if k in splits},
    }

    def write(target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        for name, n in splits.items():
            generate_split(
                target,
                name,
                int(n),
                seed=seed,
                image_size=image_size,
                progress=progress,
                nlvr2_pairs_per_image=int(nlvr2_train_pairs) if name == "train" else 1,
                families=families[name],
            )
        write_json_atomic(target / "annotations" / "scenes.json", manifest)

    if root.is_dir() and any(root.iterdir()):
        # --overwrite into an existing, non-empty directory: files are replaced in place
        # (each JSON atomically; the manifest last)
        log.info("generating into existing directory %s (files are overwritten)", root)
        write(root)
    else:
        # a new directory appears complete or not at all (a killed run leaves no half data set)
        with atomic_path(root) as tmp:
            write(tmp)
    return root
