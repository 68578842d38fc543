"""Benchmark: segmentation + features + scene graphs, cold and from the cache.

Generates the relational-scenes benchmark
(``neurogshn.data.relational.scenes.generate_scenes``), then in one process:

1. builds the graph cache of every split from scratch (cold: decode PNGs, ground-truth
   segmentation, EfficientNet-Lite0 on every image, pooling, edges, safetensors write);
2. loads it again from the cache (warm) and iterates every graph through a PyG DataLoader;
3. times each stage separately on a subset (load, segment, backbone, graph building);
4. reports cache size per 1,000 images and the process's peak resident memory.

Usage::

    OMP_NUM_THREADS=2 python benchmarks/bench_graphs.py --train 2000 --test 500 --image-size 128
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--nodes", default="panoptic")
    parser.add_argument("--edges", default="full")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--stage-images", type=int, default=256, help="images for stage timing")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the data set here")
    args = parser.parse_args(argv)

    import torch

    from neurogshn.data.coco import CocoPanopticDataset
    from neurogshn.data.relational.scenes import generate_scenes
    from neurogshn.features import get_backbone
    from neurogshn.graph.builder import GraphBuilderConfig, build_graph, torch_threads
    from neurogshn.graph.cache import build_graph_cache, dataset_category_names
    from neurogshn.segmentation import get_segmenter, segment_record

    tmp = None
    if args.workdir is None:
        tmp = tempfile.mkdtemp(prefix="bench_graphs_")
        work = Path(tmp)
    else:
        work = args.workdir
    print(
        f"torch threads {torch.get_num_threads()}, OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS')}, cpus {os.cpu_count()}, device {args.device}"
    )
    try:
        splits = {"train": args.train, "test": args.test}
        t = time.perf_counter()
        root = generate_scenes(
            work / "scenes",
            seed=args.seed,
            splits=splits,
            image_size=args.image_size,
            progress=False,
        )
        t_gen = time.perf_counter() - t
        n_total = sum(splits.values())
        print(f"generated {n_total} images ({args.image_size} px) in {t_gen:.1f} s")

        rows = []
        cold_total = warm_total = 0.0
        cache_bytes = 0
        for split in splits:
            res = build_graph_cache(
                root,
                split,
                nodes=args.nodes,
                edges=args.edges,
                progress=False,
                device=args.device,
                batch_size=args.batch_size,
                force=True,
            )
            cold = res.seconds
            t = time.perf_counter()
            warm_res = build_graph_cache(
                root, split, nodes=args.nodes, edges=args.edges, progress=False, device=args.device
            )
            warm = time.perf_counter() - t
            assert not warm_res.built
            from torch_geometric.loader import DataLoader

            t = time.perf_counter()
            n_graphs = sum(b.num_graphs for b in DataLoader(warm_res.dataset, batch_size=64))
            iterate = time.perf_counter() - t
            size = dir_size(res.path)
            st = res.dataset.stats()
            rows.append((split, len(res.dataset), cold, warm, iterate, size, st))
            cold_total += cold
            warm_total += warm
            cache_bytes += size
            assert n_graphs == len(res.dataset)

        print(
            "\n| split | images | cold build s | cold img/s | cache load s | load img/s | "
            "iterate (DataLoader, bs 64) s | nodes/graph | edges/graph | cache MiB |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for split, n, cold, warm, it, size, st in rows:
            print(
                f"| {split} | {n} | {cold:.1f} | {n / cold:.0f} | {warm:.2f} | {n / warm:.0f} | "
                f"{it:.2f} | {st['nodes_mean']:.1f} | {st['edges_mean']:.1f} | "
                f"{size / 2**20:.1f} |"
            )
        print(
            f"\ntotal cold {cold_total:.1f} s ({n_total / cold_total:.0f} img/s), "
            f"from cache {warm_total:.2f} s ({n_total / warm_total:.0f} img/s)"
        )
        print(f"cache size per 1,000 images: {cache_bytes / n_total * 1000 / 2**20:.1f} MiB")

        # Stage breakdown on a subset of train.
        ds = CocoPanopticDataset(root, "train")
        n = min(args.stage_images, len(ds))
        seg = get_segmenter("gt")
        bb = get_backbone("efficientnet_lite0", args.device)
        cfg = GraphBuilderConfig(nodes=args.nodes, edges=args.edges)
        from neurogshn.features.segment import FeatureLayout

        layout = FeatureLayout(
            bb.feature_dim, tuple(dataset_category_names(ds)), tuple(s.channels for s in bb.stages)
        )
        strides = [s.stride for s in bb.stages]
        t = time.perf_counter()
        recs = [ds[i] for i in range(n)]
        t_load = time.perf_counter() - t
        t = time.perf_counter()
        segs = [segment_record(seg, r) for r in recs]
        t_seg = time.perf_counter() - t
        t = time.perf_counter()
        maps = []
        for i in range(0, n, args.batch_size):
            maps.append(bb.encode_numpy([r.image for r in recs[i : i + args.batch_size]]))
        t_bb = time.perf_counter() - t
        t = time.perf_counter()
        with torch_threads(1):
            for i, r in enumerate(recs):
                m = maps[i // args.batch_size]
                b = i % args.batch_size
                build_graph(r.image, segs[i], [x[b] for x in m], strides, layout, cfg, r.image_id)
        t_graph = time.perf_counter() - t
        print(
            f"\nstage times on {n} train images (ms/image): load+decode {1e3 * t_load / n:.2f}, "
            f"segment (gt) {1e3 * t_seg / n:.2f}, backbone {1e3 * t_bb / n:.2f}, "
            f"pool+graph {1e3 * t_graph / n:.2f}"
        )
        print(f"peak RSS {peak_rss_mib():.0f} MiB")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
