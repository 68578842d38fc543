"""Load COCO-format panoptic + captions data sets: ours and the real COCO 2017 layout.

Two layouts are recognised (docs/data.md):

==============  ===================================  =====================================
                relational scenes (ours)             COCO 2017 as downloaded
==============  ===================================  =====================================
images          ``images/{split}/``                  ``{split}2017/``
panoptic PNGs   ``panoptic_{split}/``                ``annotations/panoptic_{split}2017/``
                                                     (or ``panoptic_{split}2017/``)
panoptic JSON   ``annotations/panoptic_{split}.json``  ``annotations/panoptic_{split}2017.json``
captions JSON   ``annotations/captions_{split}.json``  ``annotations/captions_{split}2017.json``
==============  ===================================  =====================================

Lenient mode (default) skips a bad record, keeps going and lists it in ``ds.skipped`` with the
reason; strict mode raises :class:`~neurogshn.errors.DataError` at the first problem. A
whole file that is unreadable (malformed JSON, wrong top-level structure) is an error in both
modes. A ``file_name`` that is absolute or contains ``..`` is refused in both modes (never
read). Metadata and file existence are checked when the data set is opened; pixels are
decoded in ``ds[i]``, which raises ``DataError`` for a record that turns out to be bad (and,
in lenient mode, also records it in ``ds.skipped``); iterating over ``ds`` skips such records
in lenient mode.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
from PIL import Image

from neurogshn.data.grounding import SegmentLabel
from neurogshn.errors import DataError
from neurogshn.segmentation.base import PanopticSegmentation, Segment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SkippedRecord:
    """A record the loader skipped (or repaired) in lenient mode: the file and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def describe_skipped(what: str, records: Sequence[Any], shown: int = 3) -> str | None:
    """One line naming the records a lenient reader skipped — ``"2 record(s) of the test split
    skipped (lenient; --strict stops at the first): a.png: truncated; b.png: …"`` — or
    ``None`` when there are none. ``records``: :class:`SkippedRecord` or ``{"path", "reason"}``
    dicts (a graph cache's ``skipped``)."""
    if not records:
        return None
    named = []
    for r in records[:shown]:
        if isinstance(r, dict):
            named.append(f"{r.get('path', '?')}: {r.get('reason', '?')}")
        else:
            named.append(str(r))
    more = f"; … {len(records) - shown} more" if len(records) > shown else ""
    return (
        f"{len(records)} record(s) of {what} skipped (lenient; --strict stops at the first): "
        + "; ".join(named)
        + more
    )


@dataclass
class ImageRecord:
    """One image with its panoptic ground truth and captions.

    Attributes:
        image_id: COCO image id.
        file_name: image file name relative to the images directory.
        image: ``H×W×3`` uint8 RGB.
        segmentation: the panoptic segmentation (areas and boxes computed from the mask).
        captions: the image's captions (``[]`` when it has none).
        attributes: ``{segment id: {"color": …, "size": …}}`` for segments whose
            ``segments_info`` entry carries ``attributes`` (the generated benchmark does).
    """

    image_id: int
    file_name: str
    image: np.ndarray
    segmentation: PanopticSegmentation
    captions: list[str]
    attributes: dict[int, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Layout:
    """Where one split's files live."""

    name: str  # "scenes" or "coco2017"
    images_dir: Path
    panoptic_dir: Path
    panoptic_json: Path
    captions_json: Path | None


@dataclass(frozen=True)
class _Meta:
    image_id: int
    file_name: str
    image_path: Path
    panoptic_path: Path
    segments_info: tuple[dict[str, Any], ...]
    width: int | None
    height: int | None


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def load_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file; any problem is a :class:`DataError` naming the file (and line/col)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(p, "file not found")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(p, f"not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise DataError(p, f"cannot read file: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            p, f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None


def safe_join(base: Path, file_name: object, root: Path | None = None) -> Path:
    """``base / file_name`` if ``file_name`` is a plain relative path inside ``base`` whose
    real location (symbolic links followed) is inside ``base`` or ``root`` (the data root).

    The link check is on the resolved paths, so a data set may keep its images on another disk
    behind a linked folder, but a linked file that points outside is refused.

    Raises:
        ValueError: for a non-string, empty, absolute or ``..``-containing name, or a name
            that symbolic links take outside ``root``.
    """
    if not isinstance(file_name, str) or not file_name.strip():
        raise ValueError(f"file_name must be a non-empty string, got {file_name!r}")
    if "\x00" in file_name:
        raise ValueError(f"file_name {file_name!r} contains a NUL byte")
    posix, win = PurePosixPath(file_name), PureWindowsPath(file_name)
    if posix.is_absolute() or win.is_absolute() or win.drive or file_name.startswith(("/", "\\")):
        raise ValueError(f"file_name {file_name!r} is an absolute path (refused)")
    if ".." in posix.parts or ".." in win.parts:
        raise ValueError(f"file_name {file_name!r} escapes the data root with '..' (refused)")
    joined = base / posix
    if os.path.commonpath([os.path.normpath(base), os.path.normpath(joined)]) != os.path.normpath(
        base
    ):
        raise ValueError(f"file_name {file_name!r} resolves outside {base} (refused)")
    real = joined.resolve()
    fences = {base.resolve()} | ({root.resolve()} if root is not None else set())
    if not any(real == f or f in real.parents for f in fences):
        raise ValueError(
            f"file_name {file_name!r} is a symbolic link to {real}, outside the data root (refused)"
        )
    return joined


def to_rgb_uint8(im: Image.Image) -> np.ndarray:
    """Convert a PIL image of any common mode to ``H×W×3`` uint8 RGB.

    16-bit grayscale is scaled to 8 bits (``round(v / 257)``); alpha is composited over
    black; palette, 1-bit, CMYK, YCbCr and float images go through PIL's conversions.
    """
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im).astype(np.int64)
        if mode == "I" and arr.size and (arr.min() < 0 or arr.max() > 65535):
            arr = np.clip(arr, 0, 65535)
        g = np.round(arr / 257.0).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        scale = 255.0 if arr.size and np.nanmax(arr) <= 1.0 else 1.0
        g = np.clip(np.nan_to_num(arr) * scale, 0, 255).round().astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = np.asarray(im.convert("RGBA"), dtype=np.uint16)
        alpha = rgba[:, :, 3:4]
        return ((rgba[:, :, :3] * alpha + 127) // 255).astype(np.uint8)
    if mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8).copy()


def decode_image(path: Path) -> np.ndarray:
    """Decode an image file to ``H×W×3`` uint8 RGB (``DataError`` if it cannot be decoded)."""
    try:
        with Image.open(path) as im:
            im.load()
            return to_rgb_uint8(im)
    except FileNotFoundError:
        raise DataError(path, "image file not found") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(path, f"cannot decode image ({type(exc).__name__}: {exc})") from None


def decode_panoptic_png(path: Path) -> np.ndarray:
    """Decode a COCO panoptic PNG to an ``H×W`` int64 id map (``id = R + 256·G + 256²·B``)."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("RGB", "RGBA"):
                raise DataError(
                    path, f"panoptic PNG must be 8-bit RGB (id = R + 256·G + 256²·B), got {im.mode}"
                )
            rgb = np.asarray(im.convert("RGB") if im.mode == "RGBA" else im, dtype=np.int64)
    except FileNotFoundError:
        raise DataError(path, "panoptic PNG not found") from None
    except DataError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(path, f"cannot decode panoptic PNG ({type(exc).__name__}: {exc})") from None
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def resolve_layout(root: str | os.PathLike[str], split: str) -> Layout:
    """Find the split's files under ``root`` (ours first, then COCO 2017).

    Raises:
        DataError: naming the files that were looked for.
    """
    r = Path(root)
    if not r.is_dir():
        raise DataError(r, "data set root does not exist or is not a directory")
    ann = r / "annotations"
    ours = ann / f"panoptic_{split}.json"
    if ours.is_file() and not split.endswith("2017"):
        cap = ann / f"captions_{split}.json"
        return Layout(
            "scenes",
            r / "images" / split,
            r / f"panoptic_{split}",
            ours,
            cap if cap.is_file() else None,
        )
    coco_split = split[: -len("2017")] if split.endswith("2017") else split
    coco = ann / f"panoptic_{coco_split}2017.json"
    if coco.is_file():
        pan_dir = ann / f"panoptic_{coco_split}2017"
        if not pan_dir.is_dir() and (r / f"panoptic_{coco_split}2017").is_dir():
            pan_dir = r / f"panoptic_{coco_split}2017"
        img_dir = r / f"{coco_split}2017"
        if not img_dir.is_dir() and (r / "images" / f"{coco_split}2017").is_dir():
            img_dir = r / "images" / f"{coco_split}2017"
        cap = ann / f"captions_{coco_split}2017.json"
        return Layout("coco2017", img_dir, pan_dir, coco, cap if cap.is_file() else None)
    raise DataError(
        ours,
        f"no panoptic annotations for split {split!r}: expected {ours} (relational-scenes "
        f"layout) or {coco} (COCO 2017 layout); generate data with `neurogshn data scenes`",
    )


# ---------------------------------------------------------------------------------------------
# The data set
# ---------------------------------------------------------------------------------------------


class CocoPanopticDataset:
    """A COCO panoptic (+ captions) split.

    Args:
        root: data set root (either layout, see module docstring).
        split: ``train`` / ``val`` / ``test`` (for COCO 2017: ``train``/``val`` or
            ``train2017``/``val2017``).
        strict: raise :class:`DataError` at the first problem instead of skipping.

    Attributes:
        image_ids: ids of the usable records, in file order.
        captions: ``{image_id: [caption, …]}`` (every usable id; ``[]`` when none).
        categories: ``{category_id: {"id", "name", "isthing", "supercategory"}}``.
        skipped: :class:`SkippedRecord` for every record skipped or repaired.
        layout: the :class:`Layout` found.

    ``ds[i]`` → :class:`ImageRecord` (``H×W×3`` uint8 image, ``H×W`` segment map).
    """

    def __init__(self, root: str | os.PathLike[str], split: str, strict: bool = False) -> None:
        self.root = Path(root)
        self.split = split
        self.strict = strict
        self.skipped: list[SkippedRecord] = []
        self._skipped_keys: set[tuple[str, str]] = set()
        self.layout = resolve_layout(self.root, split)
        self.categories: dict[int, dict[str, Any]] = {}
        self._metas: list[_Meta] = []
        self._by_id: dict[int, int] = {}
        self._load_panoptic()
        self.image_ids: list[int] = [m.image_id for m in self._metas]
        self.captions: dict[int, list[str]] = {i: [] for i in self.image_ids}
        if self.layout.captions_json is not None:
            self._load_captions(self.layout.captions_json)
        else:
            log.info("%s: no captions file for split %r; captions are empty", self.root, split)
        if self.skipped:
            log.warning(
                "%s split %r: %d record(s) skipped or repaired (see .skipped); first: %s",
                self.root,
                split,
                len(self.skipped),
                self.skipped[0],
            )

    # -- problems -------------------------------------------------------------------------

    def _problem(self, path: str | os.PathLike[str], reason: str) -> None:
        """Strict: raise. Lenient: record (once)."""
        if self.strict:
            raise DataError(path, reason)
        key = (str(path), reason)
        if key not in self._skipped_keys:
            self._skipped_keys.add(key)
            self.skipped.append(SkippedRecord(str(path), reason))

    # -- metadata ---------------------------------------------------------------------------

    def _load_panoptic(self) -> None:
        path = self.layout.panoptic_json
        data = load_json(path)
        if not isinstance(data, dict):
            raise DataError(path, f"top level must be a JSON object, got {type(data).__name__}")
        for key in ("images", "annotations", "categories"):
            if not isinstance(data.get(key), list):
                raise DataError(path, f'missing or non-list "{key}" (COCO panoptic format)')

        for k, cat in enumerate(data["categories"]):
            try:
                cid, name = int(cat["id"]), str(cat["name"])
                isthing = bool(int(cat.get("isthing", 1)))
            except (KeyError, TypeError, ValueError):
                self._problem(path, f"categories[{k}]: needs integer id, name, isthing: {cat!r}")
                continue
            self.categories[cid] = {
                "id": cid,
                "name": name,
                "isthing": int(isthing),
                "supercategory": str(cat.get("supercategory", "")),
            }

        anns: dict[int, dict[str, Any]] = {}
        for k, ann in enumerate(data["annotations"]):
            try:
                iid = int(ann["image_id"])
                if not isinstance(ann.get("segments_info"), list):
                    raise TypeError
            except (KeyError, TypeError, ValueError):
                self._problem(
                    path, f"annotations[{k}]: needs integer image_id and a segments_info list"
                )
                continue
            if iid in anns:
                self._problem(path, f"annotations[{k}]: second annotation for image {iid} ignored")
                continue
            anns[iid] = ann

        seen: set[int] = set()
        for k, img in enumerate(data["images"]):
            try:
                iid = int(img["id"])
                fname = img["file_name"]
            except (KeyError, TypeError, ValueError):
                self._problem(path, f"images[{k}]: needs integer id and file_name: {img!r}")
                continue
            if iid in seen:
                self._problem(path, f"images[{k}]: duplicate image id {iid}")
                continue
            seen.add(iid)
            ann = anns.get(iid)
            if ann is None:
                self._problem(path, f"image {iid}: no panoptic annotation")
                continue
            try:
                image_path = safe_join(self.layout.images_dir, fname, self.root)
                pan_name = ann.get("file_name")
                if pan_name is None and isinstance(fname, str):
                    pan_name = str(PurePosixPath(fname).with_suffix(".png"))
                panoptic_path = safe_join(self.layout.panoptic_dir, pan_name, self.root)
            except ValueError as exc:
                self._problem(path, f"image {iid}: {exc}")
                continue
            if not image_path.is_file():
                self._problem(image_path, f"image {iid}: image file not found")
                continue
            if not panoptic_path.is_file():
                self._problem(panoptic_path, f"image {iid}: panoptic PNG not found")
                continue
            w, h = img.get("width"), img.get("height")
            meta = _Meta(
                image_id=iid,
                file_name=fname,
                image_path=image_path,
                panoptic_path=panoptic_path,
                segments_info=tuple(ann["segments_info"]),
                width=int(w) if isinstance(w, int | float) else None,
                height=int(h) if isinstance(h, int | float) else None,
            )
            self._by_id[iid] = len(self._metas)
            self._metas.append(meta)
        for iid in anns:
            if iid not in seen:
                self._problem(path, f"annotation for image {iid}, which is not in images")

    def _load_captions(self, path: Path) -> None:
        data = load_json(path)
        if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
            raise DataError(path, 'expected a COCO captions object with an "annotations" list')
        unknown = 0
        for k, ann in enumerate(data["annotations"]):
            try:
                iid, cap = int(ann["image_id"]), ann["caption"]
                if not isinstance(cap, str):
                    raise TypeError
            except (KeyError, TypeError, ValueError):
                self._problem(path, f"annotations[{k}]: needs integer image_id and caption text")
                continue
            if iid not in self.captions:
                unknown += 1
            elif not cap.strip():
                self._problem(path, f"annotations[{k}]: empty caption for image {iid}")
            else:
                self.captions[iid].append(cap.strip())
        if unknown:
            log.warning(
                "%s: %d caption(s) name images that are not in the panoptic split; ignored",
                path,
                unknown,
            )

    def segment_labels(self, image_id: int) -> list[SegmentLabel]:
        """Id, category name and attributes of each segment of ``image_id``, from the
        panoptic JSON alone (no PNG is read; entries with a bad id or an unknown category are
        left out, as :meth:`__getitem__` drops them)."""
        meta = self._metas[self.index_of(image_id)]
        out = []
        for info in meta.segments_info:
            try:
                sid, cat = int(info["id"]), self.categories.get(int(info["category_id"]))
            except (KeyError, TypeError, ValueError):
                continue
            if cat is None or sid == 0:
                continue
            att = info.get("attributes")
            attributes = {str(a): str(b) for a, b in att.items()} if isinstance(att, dict) else {}
            out.append(SegmentLabel(sid, str(cat["name"]), attributes))
        return out

    # -- records ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._metas)

    def index_of(self, image_id: int) -> int:
        """Position of ``image_id`` (``KeyError`` if not in the data set)."""
        return self._by_id[int(image_id)]

    def get_by_image_id(self, image_id: int) -> ImageRecord:
        return self[self.index_of(image_id)]

    def __iter__(self) -> Iterator[ImageRecord]:
        """Usable records; in lenient mode records that fail to decode are skipped."""
        for i in range(len(self)):
            try:
                yield self[i]
            except DataError:
                if self.strict:
                    raise

    def __getitem__(self, index: int) -> ImageRecord:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} records")
        meta = self._metas[index]
        try:
            return self._load(meta)
        except DataError as exc:
            if not self.strict:
                self._problem(exc.path, exc.problem)
            raise

    def _load(self, meta: _Meta) -> ImageRecord:
        image = decode_image(meta.image_path)
        ids = decode_panoptic_png(meta.panoptic_path)
        if ids.shape != image.shape[:2]:
            raise DataError(
                meta.panoptic_path,
                f"panoptic PNG is {ids.shape[1]}×{ids.shape[0]} but the image "
                f"{meta.image_path.name} is {image.shape[1]}×{image.shape[0]}",
            )
        seg_map, segments, attributes = self._segments(meta, ids)
        return ImageRecord(
            image_id=meta.image_id,
            file_name=meta.file_name,
            image=image,
            segmentation=PanopticSegmentation(seg_map, segments),
            captions=list(self.captions.get(meta.image_id, [])),
            attributes=attributes,
        )

    def _segments(
        self, meta: _Meta, ids: np.ndarray
    ) -> tuple[np.ndarray, list[Segment], dict[int, dict[str, str]]]:
        h, w = ids.shape
        uniq, inverse, counts = np.unique(ids.ravel(), return_inverse=True, return_counts=True)
        # boxes of every id in one pass
        ys, xs = np.divmod(np.arange(h * w), w)
        n = len(uniq)
        x0 = np.full(n, w, dtype=np.int64)
        y0 = np.full(n, h, dtype=np.int64)
        x1 = np.full(n, -1, dtype=np.int64)
        y1 = np.full(n, -1, dtype=np.int64)
        np.minimum.at(x0, inverse, xs)
        np.minimum.at(y0, inverse, ys)
        np.maximum.at(x1, inverse, xs)
        np.maximum.at(y1, inverse, ys)
        pos = {int(u): k for k, u in enumerate(uniq)}

        png = meta.panoptic_path
        segments: list[Segment] = []
        attributes: dict[int, dict[str, str]] = {}
        listed: set[int] = set()
        void_ids: set[int] = set()
        for k, info in enumerate(meta.segments_info):
            try:
                sid, cid = int(info["id"]), int(info["category_id"])
            except (KeyError, TypeError, ValueError):
                self._problem(
                    self.layout.panoptic_json,
                    f"image {meta.image_id}: segments_info[{k}] needs integer id and category_id",
                )
                continue
            if sid in listed:
                self._problem(
                    self.layout.panoptic_json,
                    f"image {meta.image_id}: segment id {sid} listed twice (second ignored)",
                )
                continue
            listed.add(sid)
            if sid == 0:
                self._problem(
                    self.layout.panoptic_json,
                    f"image {meta.image_id}: segment id 0 is void and cannot be a segment",
                )
                continue
            if sid not in pos:
                self._problem(
                    png,
                    f"image {meta.image_id}: segment {sid} is in segments_info but not in the "
                    "panoptic PNG (segment dropped)",
                )
                continue
            cat = self.categories.get(cid)
            if cat is None:
                self._problem(
                    self.layout.panoptic_json,
                    f"image {meta.image_id}: segment {sid} has unknown category_id {cid} "
                    "(its pixels set to void)",
                )
                void_ids.add(sid)
                continue
            j = pos[sid]
            bbox = (float(x0[j]), float(y0[j]), float(x1[j] - x0[j] + 1), float(y1[j] - y0[j] + 1))
            segments.append(
                Segment(
                    id=sid,
                    category=cat["name"],
                    is_thing=bool(cat["isthing"]),
                    score=1.0,
                    area=int(counts[j]),
                    bbox=bbox,
                )
            )
            att = info.get("attributes")
            if isinstance(att, dict):
                attributes[sid] = {str(a): str(b) for a, b in att.items()}
        unlisted = [int(u) for u in uniq if u != 0 and int(u) not in listed]
        if unlisted:
            shown = ", ".join(str(u) for u in unlisted[:5]) + (" …" if len(unlisted) > 5 else "")
            self._problem(
                png,
                f"image {meta.image_id}: {len(unlisted)} segment id(s) in the panoptic PNG are "
                f"not in segments_info ({shown}); their pixels set to void",
            )
            void_ids.update(unlisted)
        if void_ids:
            mask = np.isin(ids, np.fromiter(void_ids, dtype=np.int64))
            ids = ids.copy()
            ids[mask] = 0
        return ids, segments, attributes
