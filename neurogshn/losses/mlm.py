r"""Image-conditioned masked language modelling (MLM) on the ITM head's cross-encoder.

The masking and the forward pass are the model's
(:func:`~neurogshn.model.mlm.masked_word_logits`): per caption of the batch
``itm_mlm_copies`` masked copies; in each,
:math:`k = \max(1, \mathrm{round}(\rho\, n))` of its ``n`` words (``rho`` =
``itm_mlm_mask_rate``) are drawn without replacement with probability

.. math::
    P(w) \propto \mathrm{idf}(w) + \epsilon

(:class:`~neurogshn.model.mlm.TokenStatistics`; :math:`\epsilon = 0.1` keeps every word
possible), and each is replaced by one mask token per word piece. The masked copies go through
the text encoder (not memoised: random masks rarely repeat) and the ITM head's cross-encoder
with their own image, or, for a fraction ``itm_mlm_image_dropout`` of them (drawn at random,
at least one and not all), with the learned null image (which trains the text-only prior
of :meth:`~neurogshn.model.gshn.GSHN.word_pmi`).

.. math::
    \mathcal{L}_{MLM} = -\frac{1}{M}\sum_{m} \log p(x_m \mid \text{image or null},\ \tilde t)

over the ``M`` hidden pieces, with the masked-token head tied to the text model's word
embeddings (:class:`~neurogshn.model.mlm.MaskedTokenHead`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from neurogshn.model.mlm import MaskedWordLogits


class MLMLoss(NamedTuple):
    """Masked language modelling on a batch: the cross-entropy over the hidden pieces and the
    detached top-1 accuracy on the pieces read with the image (``accuracy``) and with the null
    image (``prior_accuracy``, ``nan`` when none was dropped)."""

    loss: Tensor
    accuracy: Tensor
    prior_accuracy: Tensor


def mlm_loss(out: MaskedWordLogits) -> MLMLoss:
    """Cross-entropy of the head's predictions (:func:`~neurogshn.model.mlm.masked_word_logits`)
    against the hidden pieces, and the accuracies with and without the image."""
    logits = out.logits.float()
    loss = F.cross_entropy(logits, out.targets)
    with torch.no_grad():
        right = (logits.argmax(-1) == out.targets).float()
        dropped = out.dropped
        accuracy = right[~dropped].mean() if bool((~dropped).any()) else right.new_tensor(0.0)
        prior = right[dropped].mean() if bool(dropped.any()) else right.new_tensor(float("nan"))
    return MLMLoss(loss, accuracy, prior)
