"""Regenerate the example figures of docs/visualization.md.

    OMP_NUM_THREADS=1 .venv/bin/python docs/img/make_visualization_figures.py

Everything is computed, nothing is drawn by hand: scikit-image's "astronaut" photo →
SLIC superpixels → scene graph (EfficientNet-Lite0 features) → an *untrained* spiking encoder
(Norse LIF) and an *untrained* PyG GATv2 layer. The energy example runs the hardware module's
estimator (45 nm CMOS and Loihi 1 profiles) on the spikes measured here: an estimate, like
every energy report.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from skimage import data
from skimage.transform import resize
from torch_geometric.nn import GATv2Conv

from neurogshn.features.backbone import get_backbone
from neurogshn.graph import SceneGraphBuilder
from neurogshn.hardware.energy import activity_from_spikes, estimate_energy, gatv2_macs
from neurogshn.hardware.profiles import load_profile
from neurogshn.model.spiking import SpikingEncoder
from neurogshn.segmentation import get_segmenter
from neurogshn.viz import (
    plot_attention,
    plot_energy,
    plot_image_raster,
    plot_image_summary,
    plot_membrane_traces,
    plot_node_raster,
    plot_rate_heatmap,
    plot_rate_histogram,
    plot_segment_rates,
    save_figure,
    segment_rates,
)

OUT = Path(__file__).resolve().parent
DPI = 80


def main() -> None:
    torch.manual_seed(0)
    image = (resize(data.astronaut(), (160, 160), anti_aliasing=True) * 255).astype(np.uint8)
    seg = get_segmenter("superpixel", n_segments=14)(image)
    graph = SceneGraphBuilder(get_backbone("efficientnet_lite0", device="cpu"))(image, seg)
    x = graph.x
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    enc = SpikingEncoder(x.shape[1], (48, 32), time_steps=8)
    with torch.no_grad():
        out = enc(x, record_voltages=True)
    n = graph.num_nodes
    ids = graph.segment_id[1:].tolist()
    names = ["global"] + [f"segment {s}" for s in ids]

    save_figure(
        plot_node_raster(out.spikes[0], 3, layer_name="layer0", highlight=[4, 9]),
        OUT / "viz_node_raster.png",
        dpi=DPI,
    )
    save_figure(
        plot_image_raster(
            out.spikes[1], image_name="astronaut", node_names=names, layer_name="layer1"
        ),
        OUT / "viz_image_raster.png",
        dpi=DPI,
    )
    save_figure(
        plot_rate_heatmap(out.spikes[1], node_names=names, layer_name="layer1"),
        OUT / "viz_rate_heatmap.png",
        dpi=DPI,
    )
    save_figure(
        plot_rate_histogram(out.spikes, layer_names=["layer0", "layer1"]),
        OUT / "viz_rate_histogram.png",
        dpi=DPI,
    )
    # Neurons that fire sometimes, but not at every step, show integrate → fire → reset best.
    rates = out.spikes[0].mean(0)
    picks = torch.nonzero((rates > 0.2) & (rates < 0.7))[:2].tolist()
    silent = torch.nonzero(rates == 0)[:1].tolist()
    neurons = [tuple(p) for p in picks + silent]
    save_figure(
        plot_membrane_traces(
            out.voltages[0],
            out.spikes[0],
            neurons,
            threshold=enc.neuron.v_th,
            layer_name="layer0",
        ),
        OUT / "viz_membrane.png",
        dpi=DPI,
    )
    save_figure(
        plot_segment_rates(
            image,
            seg.segment_map,
            segment_rates(out.spikes[1]),
            segment_ids=ids,
            title="astronaut: segments coloured by firing rate\n(layer1; global node "
            "not shown)",
        ),
        OUT / "viz_segment_rates.png",
        dpi=DPI,
    )
    gat = GATv2Conv(x.shape[1], 16, heads=4)
    with torch.no_grad():
        _, (ei, alpha) = gat(x, graph.edge_index, return_attention_weights=True)
    save_figure(
        plot_attention(image, graph.pos, ei, alpha, top_k=40),
        OUT / "viz_attention.png",
        dpi=DPI,
    )
    # Energy per image from the spikes above, with the hardware module's estimator and
    # profiles (45 nm CMOS, Loihi 1), exactly what `neurogshn energy` writes.
    act = activity_from_spikes(
        [s.numpy() for s in out.spikes],
        x.shape[1],
        nodes_per_image=n,
        edges_per_image=graph.edge_index.shape[1],
    )
    gat = gatv2_macs(n, graph.edge_index.shape[1], 32, 32, 2, graph.edge_attr.shape[1])
    report = estimate_energy(act, load_profile("cmos45nm"), load_profile("loihi1"), gat)
    save_figure(plot_energy(report), OUT / "viz_energy.png", dpi=DPI)
    save_figure(
        plot_image_summary(
            image, seg.segment_map, ids, out.spikes, image_name="astronaut (superpixels)"
        ),
        OUT / "viz_raster_cli.png",
        dpi=70,
    )


if __name__ == "__main__":
    main()
