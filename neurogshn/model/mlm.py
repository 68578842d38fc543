r"""Image-conditioned masked language modelling over the text encoder's whole vocabulary.

A caption word is replaced by one mask token per word piece ("the red circle [MASK] the blue
square"), the masked caption goes through the text encoder and the cross-modal encoder of the
ITM head (which reads the scene graph's nodes), and :class:`MaskedTokenHead` predicts each
masked piece over the tokenizer's whole vocabulary, with the output layer tied to the text
transformer's frozen input word embeddings :math:`E \in \mathbb{R}^{V\times H}`
(ALBEF, Li et al. 2021; BLIP, Li et al. 2022):

.. math::
    p(x \mid \text{image}, \tilde t) = \mathrm{softmax}\big(E\,\mathrm{LN}(\mathrm{GELU}(W h_m))
    + b\big)_x

with :math:`h_m` the cross-modal state at the mask. Tying to :math:`E` is what makes the head
open-vocabulary: a word the training captions never used still has an embedding next to its
synonyms', so "beneath" is scored by what the head learnt for "below".

Which words. Any word can be masked; *content* words more often. What is content is decided
from the training captions, not from a word list: :class:`TokenStatistics` counts in how many
captions each token occurs, and a word's weight is the inverse document frequency of its
rarest piece, :math:`\mathrm{idf}(w) = \max_{x \in w} \log\frac{N + 1}{\mathrm{df}(x) + 1}`.
Articles, copulas and punctuation occur in most captions and get a weight near 0; nouns,
adjectives, numerals and prepositions get more; a word no training caption used gets the
largest weight.

Text-only prior. Some of the masked captions are paired with a learned *null image* (a single
node) instead of their own (``image_dropout``), so the same encoder also learns
:math:`q(x \mid \tilde t)`, what the text alone predicts. The match evidence of a caption is the
image-conditioned pointwise mutual information of its content words,

.. math::
    \mathrm{PMI}(w) = \log p(w \mid \text{image}, \tilde t_w) - \log q(w \mid \tilde t_w),

(each word masked in turn, its pieces' log-probabilities summed): positive when the image makes
the stated word more likely than the text alone does, whatever the wording.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from neurogshn.model.itm import ITMHead
    from neurogshn.model.text import TextEncoder


@dataclass(frozen=True)
class CaptionWord:
    """One word of a tokenised caption: characters ``[start, end)`` and the indices and ids of
    its word pieces in the tokenizer's output (special tokens included in the indexing)."""

    start: int
    end: int
    token_index: tuple[int, ...]
    token_ids: tuple[int, ...]


def caption_words(
    tokenizer: object, texts: Sequence[str], max_length: int
) -> list[list[CaptionWord]]:
    """The words of each text as the tokenizer's pre-tokenizer splits them (whitespace and
    punctuation), each with its pieces; words truncated away are left out.

    Args:
        tokenizer: a Hugging Face *fast* tokenizer (``word_ids`` and offsets).
        texts: captions.
        max_length: truncation length (as the text encoder's).
    """
    if not texts:
        return []
    enc = tokenizer(  # type: ignore[operator]
        list(texts), truncation=True, max_length=max_length, return_offsets_mapping=True
    )
    out = []
    for i in range(len(texts)):
        ids = enc["input_ids"][i]
        offsets = enc["offset_mapping"][i]
        groups: dict[int, list[int]] = {}
        for t, w in enumerate(enc.word_ids(i)):
            if w is not None:
                groups.setdefault(w, []).append(t)
        words = []
        for _, pieces in sorted(groups.items()):
            start, end = int(offsets[pieces[0]][0]), int(offsets[pieces[-1]][1])
            words.append(CaptionWord(start, end, tuple(pieces), tuple(int(ids[t]) for t in pieces)))
        out.append(words)
    return out


def contrast_words(
    text: str, words: Sequence[CaptionWord], other: str, other_words: Sequence[CaptionWord]
) -> list[CaptionWord]:
    """The words of ``text`` that are not matched, in order, by a word of ``other`` (a
    contrasting caption such as a hard negative): :class:`difflib.SequenceMatcher` over the
    lower-cased word strings. For a caption and its hard negative these are the words the
    image has to decide, whatever the wording; empty when the two read the same."""
    a = [text[w.start : w.end].lower() for w in words]
    b = [other[w.start : w.end].lower() for w in other_words]
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    matched = {i + k for i, _, n in matcher.get_matching_blocks() for k in range(n)}
    return [w for i, w in enumerate(words) if i not in matched]


def ungrounded_words(
    words: Sequence[CaptionWord], phrases: Sequence[tuple[int, int]]
) -> list[CaptionWord]:
    """The words of a caption that lie outside all of its grounded phrases (character spans
    ``(start, end)``, e.g. from :mod:`neurogshn.data.grounding`): the words that relate,
    count and place what the phrases name ("sits under", "higher than", "riding", "on"),
    whatever the wording; every word when no phrase is given."""
    return [w for w in words if not any(w.start < end and start < w.end for start, end in phrases)]


def mask_word(text: str, word: CaptionWord, mask_token: str) -> str:
    """``text`` with ``word`` replaced by one ``mask_token`` per piece (space-separated)."""
    masks = " ".join([mask_token] * len(word.token_ids))
    return text[: word.start] + masks + text[word.end :]


class TokenStatistics(nn.Module):
    r"""Document frequencies of the tokenizer's tokens over a caption corpus, kept as buffers
    (saved with the model): ``document_frequency`` ``V`` and ``documents`` (scalar).

    :meth:`word_weight` is the inverse document frequency of a word's rarest piece; before
    :meth:`fit` every word weighs 1.

    Args:
        vocab_size: the tokenizer's vocabulary size ``V``.
    """

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.register_buffer("document_frequency", torch.zeros(vocab_size))
        self.register_buffer("documents", torch.zeros(()))

    @property
    def fitted(self) -> bool:
        return bool(self.documents > 0)

    @torch.no_grad()
    def fit(self, tokenizer: object, captions: Sequence[str], max_length: int) -> None:
        """Count, over ``captions``, the captions each token occurs in (replaces earlier
        counts)."""
        df = torch.zeros_like(self.document_frequency)
        for start in range(0, len(captions), 4096):
            enc = tokenizer(  # type: ignore[operator]
                list(captions[start : start + 4096]),
                truncation=True,
                max_length=max_length,
                add_special_tokens=False,
            )
            for ids in enc["input_ids"]:
                if ids:
                    df[torch.tensor(sorted(set(ids)), dtype=torch.long)] += 1
        self.document_frequency.copy_(df)
        self.documents.fill_(float(len(captions)))

    def word_stats(self, words: Sequence[CaptionWord]) -> list[tuple[float, float]]:
        """``(word_weight, document_fraction)`` of each word, in one pass over the counts."""
        n = float(self.documents)
        if n <= 0:
            return [(1.0, 0.0)] * len(words)
        df = self.document_frequency.tolist()
        out = []
        for w in words:
            rarest = min(df[t] for t in w.token_ids)
            out.append((math.log((n + 1.0) / (rarest + 1.0)), rarest / n))
        return out

    def word_weight(self, word: CaptionWord) -> float:
        r""":math:`\max_{x \in w} \log\frac{N+1}{\mathrm{df}(x)+1}` (1 before :meth:`fit`)."""
        n = float(self.documents)
        if n <= 0:
            return 1.0
        df = min(float(self.document_frequency[t]) for t in word.token_ids)
        return math.log((n + 1.0) / (df + 1.0))

    def document_fraction(self, word: CaptionWord) -> float:
        """Fraction of the corpus' captions that contain the word's rarest piece (0 before
        :meth:`fit`)."""
        n = float(self.documents)
        if n <= 0:
            return 0.0
        return min(float(self.document_frequency[t]) for t in word.token_ids) / n


class MaskedTokenHead(nn.Module):
    r"""Prediction of masked word pieces over the whole vocabulary, tied to the text model's
    word embeddings: :math:`\mathrm{logits} = E\,\mathrm{LN}(\mathrm{GELU}(W h)) + b`.

    The embedding matrix ``E`` is not a parameter of this module (it belongs to the text
    encoder and stays frozen); it is passed to :meth:`forward`.

    Args:
        dim: cross-modal state size ``D``.
        hidden: the word embeddings' size ``H``.
        vocab_size: ``V``.

    Shapes:
        - states ``M×D``, embeddings ``V×H`` → logits ``M×V``
    """

    def __init__(self, dim: int, hidden: int, vocab_size: int) -> None:
        super().__init__()
        self.transform = nn.Linear(dim, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def reset_parameters(self) -> None:
        self.transform.reset_parameters()
        self.norm.reset_parameters()
        nn.init.zeros_(self.bias)

    def forward(self, states: Tensor, embeddings: Tensor) -> Tensor:
        h = self.norm(nn.functional.gelu(self.transform(states)))
        return h @ embeddings.to(h.dtype).T + self.bias

    def log_prob(self, states: Tensor, embeddings: Tensor, targets: Tensor) -> Tensor:
        """``log p(target)`` of each row, in chunks (the ``M×V`` logits are not all kept).

        Shapes:
            states ``M×D``, targets ``M`` → ``M``
        """
        out = []
        for start in range(0, states.shape[0], 512):
            logits = self(states[start : start + 512], embeddings).float()
            t = targets[start : start + 512, None]
            out.append((logits.gather(1, t) - logits.logsumexp(-1, keepdim=True)).squeeze(1))
        return torch.cat(out) if out else states.new_zeros(0)


@dataclass
class MaskedCaptions:
    """Masked copies of captions and what their masks hide.

    Attributes:
        texts: ``R`` masked strings.
        rows: ``R`` index of the caption each masked string comes from.
        piece_row: ``M`` masked string of each hidden piece.
        piece_index: ``M`` token index of the piece in its masked string.
        targets: ``M`` token id of the hidden piece.
        piece_word: ``M`` index of the hidden *word* the piece belongs to (words numbered
            over the whole batch; ``W`` words).
        num_words: ``W``.
    """

    texts: list[str]
    rows: Tensor
    piece_row: Tensor
    piece_index: Tensor
    targets: Tensor
    piece_word: Tensor
    num_words: int

    def __len__(self) -> int:
        return len(self.texts)


def masked_captions(
    tokenizer: object,
    texts: Sequence[str],
    words: Sequence[Sequence[Sequence[CaptionWord]]],
    max_length: int,
    device: torch.device | str = "cpu",
) -> MaskedCaptions:
    """Build masked strings: for caption ``i``, one masked copy per entry of ``words[i]``,
    with every word of that entry masked (one mask token per piece).

    A copy whose masks do not land where the hidden pieces were (a tokenizer that merges
    across the replaced span; not the case for BERT-style pre-tokenizers) is left out.
    """
    mask_token = str(tokenizer.mask_token)  # type: ignore[attr-defined]
    mask_id = int(tokenizer.mask_token_id)  # type: ignore[attr-defined]
    candidates: list[tuple[int, str, Sequence[CaptionWord]]] = []
    for i, (text, groups) in enumerate(zip(texts, words, strict=True)):
        for group in groups:
            if not group:
                continue
            masked = text
            for w in sorted(group, key=lambda w: -w.start):
                masked = mask_word(masked, w, mask_token)
            candidates.append((i, masked, group))
    enc = (
        tokenizer(  # type: ignore[operator]
            [c[1] for c in candidates], truncation=True, max_length=max_length
        )
        if candidates
        else {"input_ids": []}
    )
    out_texts, rows, piece_row, piece_index, targets, piece_word = [], [], [], [], [], []
    num_words = 0
    for (i, masked, group), ids in zip(candidates, enc["input_ids"], strict=True):
        pieces = [(t, x) for w in group for t, x in zip(w.token_index, w.token_ids, strict=True)]
        if not all(t < len(ids) and ids[t] == mask_id for t, _ in pieces):
            continue
        if sum(1 for x in ids if x == mask_id) != len(pieces):
            continue
        r = len(out_texts)
        out_texts.append(masked)
        rows.append(i)
        for w in group:
            for t, x in zip(w.token_index, w.token_ids, strict=True):
                piece_row.append(r)
                piece_index.append(t)
                targets.append(x)
                piece_word.append(num_words)
            num_words += 1

    def tensor(v: list[int]) -> Tensor:
        return torch.tensor(v, dtype=torch.long, device=device)

    return MaskedCaptions(
        out_texts,
        tensor(rows),
        tensor(piece_row),
        tensor(piece_index),
        tensor(targets),
        tensor(piece_word),
        num_words,
    )


class MaskedWordLogits(NamedTuple):
    """The head's prediction for every hidden piece of a batch of masked captions: ``logits``
    ``M×V`` over the vocabulary, the true pieces ``targets`` ``M`` and ``dropped`` ``M`` (bool,
    the piece's caption read the null image)."""

    logits: Tensor
    targets: Tensor
    dropped: Tensor


#: Floor added to every word's inverse document frequency when drawing the words to mask.
MASK_WEIGHT_FLOOR = 0.1


def draw_masked_words(
    words: Sequence[Sequence[CaptionWord]],
    statistics: TokenStatistics,
    rate: float,
    copies: int = 1,
    first_from: Sequence[Sequence[CaptionWord] | None] | None = None,
) -> list[list[list[CaptionWord]]]:
    """For each caption ``copies`` groups of words to mask, each drawn independently (see
    module docstring); a caption without words gets none. With ``first_from`` (per caption a
    subset of its words, or ``None``), the first group of a caption whose subset is not empty
    draws its ``k`` words from that subset only (all of them when it has ``k`` or fewer)."""
    out: list[list[list[CaptionWord]]] = []
    flat = statistics.word_stats([w for ws in words for w in ws])
    for i, ws in enumerate(words):
        here, flat = flat[: len(ws)], flat[len(ws) :]
        if not ws:
            out.append([])
            continue
        k = max(1, round(rate * len(ws)))
        weights = torch.tensor([w + MASK_WEIGHT_FLOOR for w, _ in here], dtype=torch.float64)
        allowed = None
        if first_from is not None and first_from[i]:
            subset = set(first_from[i])  # type: ignore[arg-type]
            allowed = torch.tensor([w in subset for w in ws], dtype=torch.bool)
        groups = []
        for copy in range(copies):
            w = weights
            if copy == 0 and allowed is not None and bool(allowed.any()):
                w = torch.where(allowed, weights, torch.zeros_like(weights))
            n = min(k, int((w > 0).sum()))
            picked = torch.multinomial(w, n, replacement=False).tolist()
            groups.append([ws[j] for j in sorted(picked)])
        out.append(groups)
    return out


def masked_word_logits(
    te: TextEncoder,
    head: ITMHead,
    statistics: TokenStatistics,
    captions: Sequence[str],
    nodes: Tensor,
    node_mask: Tensor,
    node_pos: Tensor | None,
    mask_rate: float,
    copies: int,
    image_dropout: float,
    contrasts: Sequence[str | None] | None = None,
    phrases: Sequence[Sequence[tuple[int, int]] | None] | None = None,
) -> MaskedWordLogits | None:
    """Mask ``copies`` word groups per caption (:func:`draw_masked_words`), read the masked
    captions with their images (dense ``nodes`` ``B×N×D``, ``node_mask`` ``B×N``, ``node_pos``
    ``B×N×2`` or ``None``) or, for a fraction ``image_dropout`` of them (at least one and not
    all), with the null image, and predict the hidden pieces; ``None`` when nothing could be
    masked. With ``contrasts`` (per caption a contrasting caption, e.g. its hard negative, or
    ``None``), the first copy of a caption that has one masks the words where the two differ
    (:func:`contrast_words`) instead of a random draw. With ``phrases`` (per caption the
    character spans of its grounded phrases, or ``None``), the first copy of a caption that
    has some draws its words from those outside them (:func:`ungrounded_words`). Draws use
    torch's global RNG, so seeded runs are deterministic."""
    words = caption_words(te.tokenizer, list(captions), te.max_length)
    first_from = None
    if phrases is not None:
        first_from = [
            ungrounded_words(ws, spans) if spans else None
            for ws, spans in zip(words, phrases, strict=True)
        ]
    groups = draw_masked_words(words, statistics, mask_rate, copies, first_from)
    if contrasts is not None:
        rows = [i for i, c in enumerate(contrasts) if c]
        others = caption_words(te.tokenizer, [str(contrasts[i]) for i in rows], te.max_length)
        for i, other_words in zip(rows, others, strict=True):
            differ = contrast_words(captions[i], words[i], str(contrasts[i]), other_words)
            if differ and groups[i]:
                groups[i][0] = differ
    masked = masked_captions(te.tokenizer, list(captions), groups, te.max_length, nodes.device)
    if not len(masked):
        return None
    enc = te(masked.texts, cache=False)
    rows = masked.rows
    n, m = nodes[rows], node_mask[rows]
    p = None if node_pos is None else node_pos[rows]
    # a fixed number of rows read the null image (every process of a data-parallel run then
    # logs the same diagnostics)
    n_drop = round(image_dropout * len(rows))
    if image_dropout > 0 and len(rows) > 1:
        n_drop = min(max(n_drop, 1), len(rows) - 1)
    drop = torch.zeros(len(rows), dtype=torch.bool, device=nodes.device)
    drop[torch.randperm(len(rows), device=nodes.device)[:n_drop]] = True
    if bool(drop.any()):
        null, _, _ = head.null_nodes(len(rows), False)
        null_full = torch.cat([null, n.new_zeros(len(rows), n.shape[1] - 1, n.shape[2])], 1)
        null_mask = torch.zeros_like(m)
        null_mask[:, 0] = True
        n = torch.where(drop[:, None, None], null_full.to(n.dtype), n)
        m = torch.where(drop[:, None], null_mask, m)
        if p is not None:
            p = torch.where(drop[:, None, None], p.new_full(p.shape, 0.5), p)
    states = head.token_states(enc.token_embeds, enc.attention_mask, n, m, p)
    logits = head.token_head(
        states[masked.piece_row, masked.piece_index], te.word_embeddings
    ).float()
    dropped = drop[masked.piece_row]
    return MaskedWordLogits(logits, masked.targets, dropped)
