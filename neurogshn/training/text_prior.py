"""Fit the text-only priors of a trained model's relation and concept classifiers.

Pretraining with ``itm_text_prior`` trains the priors (:mod:`neurogshn.model.text_prior`)
alongside everything else. A model trained without them gets them here: the text encoder
(frozen, in eval mode) encodes every masked caption of a caption set once, and the prior's
linear maps are fitted to those states by cross-entropy. Nothing else of the model changes,
so its retrieval figures with and without the prior differ only in how the relation and
concept terms are scored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from neurogshn.errors import ConfigError
from neurogshn.losses.relation import encode_masked
from neurogshn.model.gshn import GSHN
from neurogshn.model.text_prior import MaskedTextPrior


@dataclass(frozen=True)
class PriorFit:
    """What :func:`fit_text_prior` measured for one vocabulary (``relation`` / ``concept``):
    masked phrases it was fitted on, their final mean cross-entropy (nats) and the accuracy
    of the prior's most likely class, and the entropy (nats) of the phrases' frequencies, the
    cross-entropy a prior that ignores the words around the slot would reach."""

    vocabulary: str
    phrases: int
    cross_entropy: float
    accuracy: float
    frequency_entropy: float


@torch.no_grad()
def masked_states(
    model: GSHN, captions: Sequence[str], vocab: Sequence[str], mentions: str, batch_size: int
) -> tuple[Tensor, Tensor]:
    """Text-encoder states at the mask of every masked phrase of ``vocab`` in ``captions``,
    and the phrase index of each (phrases whose mask was truncated away are left out).

    Shapes:
        returns ``K×D``, ``K``.
    """
    states = [torch.empty(0, model.config.embed_dim, device=model.device)]
    targets = [torch.empty(0, dtype=torch.long, device=model.device)]
    for start in range(0, len(captions), batch_size):
        chunk = captions[start : start + batch_size]
        found = encode_masked(model, chunk, vocab, mentions, model.device)
        if found is not None:
            states.append(found.mask_states())
            targets.append(found.targets)
    return torch.cat(states).float(), torch.cat(targets)


def fit_text_prior(
    model: GSHN,
    captions: Sequence[str],
    epochs: int = 20,
    lr: float = 1e-3,
    batch_size: int = 512,
    seed: int = 0,
) -> list[PriorFit]:
    """Fit ``model.text_prior`` (built by ``itm_text_prior=True``, e.g.
    ``GSHN.from_pretrained(dir, overrides={"itm_text_prior": True})``) on ``captions``.

    Each linear map starts as the phrase frequencies (weights 0, biases their logarithms, so
    the cross-entropy starts at their entropy), is trained with Adam in mini-batches of cached
    states and ends as the epoch (or the start) with the lowest cross-entropy on all of them;
    the rest of the model is left as it is (its train/eval mode restored).

    Args:
        model: a GSHN with a text prior.
        captions: the captions to fit on (the training split's: the prior is the phrase
            distribution of the training text).
        epochs: passes over the masked phrases.
        lr: Adam learning rate.
        batch_size: captions per text-encoder call, masked phrases per optimiser step.
        seed: seed of the batch order.

    Returns:
        One :class:`PriorFit` per vocabulary the prior has.

    Raises:
        ConfigError: when the model has no text prior, or no caption states a phrase of a
            vocabulary the prior has.
    """
    prior: MaskedTextPrior | None = getattr(model, "text_prior", None)
    if prior is None:
        raise ConfigError("this model has no text prior (build it with itm_text_prior=True)")
    if epochs < 1 or lr <= 0 or batch_size < 1:
        raise ValueError(
            f"need epochs >= 1, lr > 0, batch_size >= 1; got {epochs}, {lr}, {batch_size}"
        )
    c = model.config
    parts = []
    if prior.relation is not None:
        parts.append(("relation", prior.relation, c.itm_relation_vocab, c.itm_relation_mentions))
    if prior.concept is not None:
        parts.append(("concept", prior.concept, c.itm_concept_vocab, "all"))
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    try:
        data = []
        for name, _, vocab, mentions in parts:
            states, targets = masked_states(model, captions, vocab, mentions, batch_size)
            if len(targets) == 0:
                raise ConfigError(
                    f"no caption states a phrase of the {name} vocabulary {list(vocab)}"
                )
            data.append((states, targets))
        out = []
        for (name, head, vocab, _), (states, targets) in zip(parts, data, strict=True):
            counts = torch.bincount(targets, minlength=len(vocab)).float()
            with torch.no_grad():
                head.weight.zero_()
                head.bias.copy_((counts / counts.sum()).clamp_min(1e-6).log())
            optimiser = torch.optim.Adam(head.parameters(), lr=lr)
            logits_of = prior.relation_logits if name == "relation" else prior.concept_logits
            best = (*_quality(logits_of, states, targets), _copy(head))
            for _ in range(epochs):
                with torch.enable_grad():
                    order = torch.randperm(len(targets), generator=generator).to(states.device)
                    for batch in order.split(batch_size):
                        loss = torch.nn.functional.cross_entropy(
                            logits_of(states[batch]), targets[batch]
                        )
                        optimiser.zero_grad(set_to_none=True)
                        loss.backward()
                        optimiser.step()
                ce, acc = _quality(logits_of, states, targets)
                if ce < best[0]:
                    best = (ce, acc, _copy(head))
            ce, acc, state = best
            head.load_state_dict(state)
            freq = counts[counts > 0] / counts.sum()
            entropy = float(-(freq * freq.log()).sum())
            out.append(PriorFit(name, len(targets), ce, acc, entropy))
        return out
    finally:
        model.train(was_training)


@torch.no_grad()
def _quality(
    logits_of: Callable[[Tensor], Tensor], states: Tensor, targets: Tensor
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of a prior on all the masked phrases."""
    logits = logits_of(states)
    ce = float(torch.nn.functional.cross_entropy(logits, targets))
    return ce, float((logits.argmax(-1) == targets).float().mean())


def _copy(module: torch.nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}
