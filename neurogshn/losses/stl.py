r"""Spiked Text Learning (STL): text features, spike-encoded, teach the visual spiking codes.

Spiking text projector (:class:`~neurogshn.model.heads.SpikingTextProjector`). Each content
token's feature :math:`e_t \in \mathbb{R}^D` (the text encoder's token embedding; special
tokens and padding excluded; detached by default so that the text encoder is the teacher and is
trained by ITC/ITM only) drives, as a constant input current
:math:`W_s\,\mathrm{LN}(e_t) + b_s` over the same ``T`` steps and with the same LIF neuron
model as the visual spiking encoder, ``H`` LIF neurons
(``H`` = size of the visual code ``E_SNN``). Its firing rates :math:`y_t \in \{0,1/T,…,1\}^H`
are the token's spike code — a discrete code in the same space as the visual one.

Visual codes: :math:`x_n = E_{SNN,n}` (rates of the last spiking layer of node ``n``). With
cosine similarity :math:`\langle\cdot,\cdot\rangle` of rate vectors (:math:`\epsilon`-guarded),
for image ``i`` (nodes :math:`n \in i`) and caption ``j`` (content tokens :math:`t \in j`):

Token–node (fine-grained, FILIP-style late interaction, Yao et al. 2022):

.. math::
    s^{t2i}_{ij} = \frac{1}{|j|}\sum_{t \in j} \max_{n\in i} \langle y_t, x_n\rangle, \qquad
    s^{i2t}_{ij} = \frac{1}{|i|}\sum_{n \in i} \max_{t\in j} \langle x_n, y_t\rangle

Image level: :math:`s^{img}_{ij} = \langle \bar x_i, \bar y_j \rangle` with the mean node code
:math:`\bar x_i` and mean token code :math:`\bar y_j`.

Each similarity enters a symmetric InfoNCE over the images of the batch with a learned inverse
temperature ``s`` (multi-positive: captions identical to image ``i``'s count as positives):

.. math::
    \mathcal{L}_{STL} = w\,\tfrac12\big[\mathrm{CE}(s\,S^{i2t}) + \mathrm{CE}(s\,S^{t2i\top})\big]
      + (1-w)\,\tfrac12\big[\mathrm{CE}(s\,S^{img}) + \mathrm{CE}(s\,S^{img\top})\big]

Why: the spiking branch alone only sees segment features; STL asks its discrete code of each
segment to be the code of the words that describe it (a red circle's node should fire like the
tokens "red" and "circle"), so the SNN's latent carries text-aligned semantics — the paper's
"text features improve how the spiking branch encodes discrete semantics". The token–node term
gives the fine-grained alignment; the image-level term the global one. The gradient reaches
the visual SNN (through the surrogate) and the projector.
"""

from __future__ import annotations

import torch
from torch import Tensor

from neurogshn.losses.itc import soft_cross_entropy


def _cos(x: Tensor, eps: float = 1e-6) -> Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


def stl_loss(
    node_codes: Tensor,
    node_mask: Tensor,
    token_codes: Tensor,
    token_mask: Tensor,
    scale: Tensor,
    token_weight: float = 0.5,
    targets: Tensor | None = None,
) -> Tensor:
    """STL loss (module docstring).

    Args:
        node_codes: visual rate codes, dense ``B×N×H``.
        node_mask: ``B×N`` bool, real nodes.
        token_codes: token rate codes ``B×L×H`` (caption ``i`` of image ``i``).
        token_mask: ``B×L`` bool, content tokens.
        scale: inverse temperature.
        token_weight: ``w`` (weight of the token–node term).
        targets: ``B×B`` bool positives (default identity).

    Returns:
        scalar loss.
    """
    b = node_codes.shape[0]
    if targets is None:
        targets = torch.eye(b, dtype=torch.bool, device=node_codes.device)
    x = _cos(node_codes)
    y = _cos(token_codes)
    nm = node_mask.to(x.dtype)
    tm = token_mask.to(x.dtype)
    terms = []
    if token_weight > 0:
        # sim[i, j, n, t] = <x_in, y_jt>
        sim = torch.einsum("inh,jth->ijnt", x, y)
        neg = -2.0  # below any cosine
        masked_t = sim.masked_fill(~token_mask[None, :, None, :], neg)
        masked_n = sim.masked_fill(~node_mask[:, None, :, None], neg)
        best_t = masked_t.amax(-1)  # B×B×N: each node's best token of caption j
        best_n = masked_n.amax(-2)  # B×B×L: each token's best node of image i
        s_i2t = (best_t * nm[:, None, :]).sum(-1) / nm.sum(-1).clamp_min(1)[:, None]
        s_t2i = (best_n * tm[None, :, :]).sum(-1) / tm.sum(-1).clamp_min(1)[None, :]
        fine = 0.5 * (
            soft_cross_entropy(scale * s_i2t, targets)
            + soft_cross_entropy(scale * s_t2i.T, targets.T)
        )
        terms.append(token_weight * fine)
    if token_weight < 1:
        xbar = _cos((x * nm[..., None]).sum(1) / nm.sum(1).clamp_min(1)[:, None])
        ybar = _cos((y * tm[..., None]).sum(1) / tm.sum(1).clamp_min(1)[:, None])
        s_img = scale * xbar @ ybar.T
        image = 0.5 * (soft_cross_entropy(s_img, targets) + soft_cross_entropy(s_img.T, targets.T))
        terms.append((1 - token_weight) * image)
    return torch.stack(terms).sum()
