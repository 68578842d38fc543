"""The relational-scenes benchmark's diagnostics for one split of a generated data set.

Scoring code never imports this module: :func:`neurogshn.data.diagnostics.diagnostics_for`
returns a :class:`RelationalDiagnostics` for a data set whose manifest declares
:data:`~neurogshn.data.relational.scenes.BENCHMARK_NAME`, and scoring calls its methods
(:class:`~neurogshn.data.diagnostics.DatasetDiagnostics`).

The oracle judges a caption by its *logical form*, not its wording. A generated split writes
``annotations/logical_forms_{split}.json`` (``{"forms": {text: form}}``): each caption and
hard negative mapped to its statement in the scene logic's grammar
(:mod:`~neurogshn.data.relational.logic`), so captions worded by held-out phrasing families,
which the grammar does not parse, are judged the same as the training wording. A text the file
does not list is parsed as it stands (a user's captions written in the grammar). The scene
facts are rebuilt from the files on disk
(:func:`~neurogshn.data.relational.facts.load_scene_facts`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from neurogshn.data.relational.facts import load_scene_facts, scene_facts_problem
from neurogshn.data.relational.logic import (
    FALSE_REASONS,
    SceneFacts,
    Statement,
    StatementError,
    evaluate_clause,
    parse_statement,
    why_false,
)
from neurogshn.data.relational.scenes import BENCHMARK_NAME
from neurogshn.errors import DataError


def logical_forms_path(root: str | os.PathLike[str], split: str) -> Path:
    """``root/annotations/logical_forms_{split}.json``."""
    return Path(root) / "annotations" / f"logical_forms_{split}.json"


def load_logical_forms(root: str | os.PathLike[str], split: str) -> dict[str, str]:
    """``{text: logical form}`` of a split (empty when the file is absent).

    Raises:
        DataError: naming the file, when it exists but is not a ``{"forms": {text: form}}``
            object of strings.
    """
    from neurogshn.data.coco import load_json

    path = logical_forms_path(root, split)
    if not path.is_file():
        return {}
    data = load_json(path)
    forms = data.get("forms") if isinstance(data, dict) else None
    if not isinstance(forms, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in forms.items()
    ):
        raise DataError(path, 'expected {"forms": {text: logical form}} with string values')
    return dict(forms)


class RelationalDiagnostics:
    """Truth oracle and false-reason diagnostics of one split of a relational-scenes data set.

    Args:
        root: data set root.
        split: the split (``test``, ``test_seen`` …).
        dataset: the split's :class:`~neurogshn.data.coco.CocoPanopticDataset` if already
            loaded (otherwise it is loaded on first use).

    Attributes:
        name: :data:`~neurogshn.data.relational.scenes.BENCHMARK_NAME`.
        reasons: :data:`~neurogshn.data.relational.logic.FALSE_REASONS`.
        forms: ``{text: logical form}`` of the split (:func:`load_logical_forms`).
    """

    name: str = BENCHMARK_NAME
    reasons: tuple[str, ...] = FALSE_REASONS

    def __init__(self, root: str | os.PathLike[str], split: str, dataset: Any = None) -> None:
        self.root = Path(root)
        self.split = split
        self._dataset = dataset
        self.forms = load_logical_forms(self.root, split)
        self._facts: dict[int, SceneFacts] = {}
        self._statements: dict[str, Statement] = {}

    @property
    def dataset(self) -> Any:
        """The split's COCO panoptic data set (loaded on first use)."""
        if self._dataset is None:
            from neurogshn.data.coco import CocoPanopticDataset

            self._dataset = CocoPanopticDataset(self.root, self.split)
        return self._dataset

    def logical_form(self, text: str) -> str:
        """The statement ``text`` makes, in the scene logic's grammar (the text itself when
        the split's logical forms do not list it)."""
        return self.forms.get(text, text)

    def statement(self, text: str) -> Statement:
        """``text``'s logical form, parsed (memoised).

        Raises:
            StatementError: when the form is not in the grammar (the message quotes it).
        """
        st = self._statements.get(text)
        if st is None:
            st = self._statements[text] = parse_statement(self.logical_form(text))
        return st

    def facts(self, image_ids: Sequence[int]) -> dict[int, SceneFacts]:
        """``{image_id: SceneFacts}``, rebuilt from the split's files (memoised).

        Raises:
            DataError: when the images are not in the benchmark's vocabulary.
        """
        missing = [int(i) for i in image_ids if int(i) not in self._facts]
        if missing:
            self._facts.update(load_scene_facts(self.dataset, missing))
        return {int(i): self._facts[int(i)] for i in image_ids}

    def problem(self, texts: Sequence[str], image_ids: Sequence[int]) -> str | None:
        """Why the oracle cannot judge ``texts`` on ``image_ids`` (``None`` when it can): a
        caption whose logical form is not a statement of the grammar, or an image outside the
        benchmark's vocabulary. Reads the panoptic JSON only (no PNG is decoded)."""
        for text in texts:
            try:
                self.statement(str(text))
            except StatementError as exc:
                return str(exc)
        ids = [int(i) for i in image_ids if int(i) not in self._facts]
        return scene_facts_problem(self.dataset, ids) if ids else None

    def truth_matrix(self, texts: Sequence[str], image_ids: Sequence[int]) -> np.ndarray:
        """Truth of every caption on every image.

        Args:
            texts: captions (or any text the split's logical forms list).
            image_ids: images of the split.

        Returns:
            ``bool`` array ``[caption, image]``.

        Shapes:
            output: ``len(texts) × len(image_ids)``.

        Raises:
            StatementError: a caption outside the grammar; DataError: an image outside the
            vocabulary (see :meth:`problem`).
        """
        facts = self.facts(image_ids)
        scenes = [facts[int(i)] for i in image_ids]
        out = np.zeros((len(texts), len(scenes)), dtype=bool)
        for row, text in enumerate(texts):
            clauses = self.statement(str(text)).clauses
            for col, scene in enumerate(scenes):
                out[row, col] = all(evaluate_clause(c, scene) for c in clauses)
        return out

    def why_false(self, text: str, image_id: int) -> str | None:
        """Why ``text`` is false of the image: a :attr:`reasons` entry for its first false
        clause (:func:`~neurogshn.data.relational.logic.why_false`), ``None`` when true."""
        return why_false(self.statement(str(text)), self.facts([int(image_id)])[int(image_id)])


__all__ = ["RelationalDiagnostics", "load_logical_forms", "logical_forms_path"]
