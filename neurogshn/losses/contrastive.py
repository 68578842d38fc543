r"""Spatio-temporal contrastive learning (CL) on the spiking branch's output over time.

The spike train of the last spiking layer, :math:`Z \in \{0,1\}^{T\times N\times H}` (time
first), is split into ``W`` contiguous time windows :math:`\mathcal{T}_1, …, \mathcal{T}_W`
(``torch.tensor_split`` of ``0..T-1``: sizes differ by at most one). The rate code of node
``n`` in window ``w`` is :math:`r^w_n = \frac{1}{|\mathcal{T}_w|}\sum_{t\in\mathcal{T}_w} Z_{t,n}`
and the rate code of image ``b`` in window ``w`` is the mean over its nodes,
:math:`g^w_b = \frac{1}{|b|}\sum_{n\in b} r^w_n`. A projection head
:math:`h(\cdot)` (Linear–ReLU–Linear, SimCLR-style) maps both to unit vectors
:math:`z = h(r)/\lVert h(r)\rVert`.

Pairs: for every ordered pair of windows :math:`(a, b)`, :math:`a < b`,

- node level: positive = the same node in windows ``a`` and ``b``; negatives = every other node
  of the batch (other nodes of the same image and nodes of other images) in window ``b``;
- image level: positive = the same image in windows ``a`` and ``b``; negatives = the other
  images of the batch.

.. math::
    \ell(a,b) = \tfrac12\big[\mathrm{CE}(z^a z^{b\top}/\tau, I)
        + \mathrm{CE}(z^b z^{a\top}/\tau, I)\big],
    \qquad
    \mathcal{L}_{CL} = \tfrac12\big(\overline{\ell_{node}} + \overline{\ell_{image}}\big)

averaged over window pairs, with a fixed temperature :math:`\tau` (``cl_temperature``). Why:
the two windows are two "views" the network produces by itself over time (no data
augmentation needed); asking them to identify the same node/image among all others makes the
discrete code of a segment stable over time and distinct from other segments, which is what a
rate read-out with few steps needs. At most ``max_nodes`` nodes (a random subset drawn from
torch's global RNG, so seeded runs are deterministic) enter the node-level term, bounding its
cost at ``O(max_nodes²)``. The gradient reaches the spiking weights through Norse's surrogate.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.utils import scatter


def info_nce(a: Tensor, b: Tensor, temperature: float) -> Tensor:
    """Symmetric InfoNCE with row ``i`` of ``a`` and ``b`` the positive pair (``M×P`` each)."""
    logits = a @ b.T / temperature
    labels = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def window_rates(spikes: Tensor, windows: int) -> list[Tensor]:
    """Split ``T×N×H`` spikes into ``windows`` contiguous windows; rate code ``N×H`` of each."""
    steps = torch.arange(spikes.shape[0], device=spikes.device)
    return [spikes[idx].mean(0) for idx in torch.tensor_split(steps, windows)]


def spatiotemporal_cl_loss(
    spikes: Tensor,
    node_batch: Tensor,
    num_graphs: int,
    head: Callable[[Tensor], Tensor],
    windows: int = 2,
    temperature: float = 0.2,
    max_nodes: int = 512,
) -> Tensor:
    """Spatio-temporal CL loss (module docstring).

    Args:
        spikes: last spiking layer's output ``T×N×H``.
        node_batch: graph index of each node, ``N``.
        num_graphs: ``B``.
        head: projection head.
        windows: ``W`` (``2 ≤ W ≤ T``).
        temperature: InfoNCE temperature.
        max_nodes: most nodes in the node-level term.

    Returns:
        scalar loss.
    """
    t, n = spikes.shape[0], spikes.shape[1]
    if not 2 <= windows <= t:
        raise ValueError(f"windows must lie in [2, T={t}], got {windows}")
    rates = window_rates(spikes, windows)
    sel = torch.randperm(n, device=spikes.device)[:max_nodes] if n > max_nodes else None
    node_z = [head(r if sel is None else r[sel]) for r in rates]
    terms_node, terms_image = [], []
    image_z = []
    if num_graphs >= 2:
        image_z = [
            head(scatter(r, node_batch, 0, dim_size=num_graphs, reduce="mean")) for r in rates
        ]
    for a in range(windows):
        for b in range(a + 1, windows):
            if node_z[a].shape[0] >= 2:
                terms_node.append(info_nce(node_z[a], node_z[b], temperature))
            if image_z:
                terms_image.append(info_nce(image_z[a], image_z[b], temperature))
    parts = [torch.stack(x).mean() for x in (terms_node, terms_image) if x]
    if not parts:
        return spikes.sum() * 0.0
    return torch.stack(parts).mean()
