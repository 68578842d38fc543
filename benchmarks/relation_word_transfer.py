"""Does the text model's sense of relation words carry from the training wording to unseen
wording? A linear probe of its frozen token states.

For each of the embedded benchmark's phrasing families (``neurogshn.data.relational.phrasing``)
captions "the <colour> <shape> <frame with a relation phrase> the <colour> <shape>" are built
from the family's own clause frames and relation phrases (frames in which the subject comes
first; possessive and fronted frames are left out), and the text model's state of the relation
phrase (the mean over its tokens) is read at each layer. A 4-way linear classifier (left /
right / above / below) is trained on the training families' phrases and scored on the
validation and test families', whose relation phrases the training captions never use
("beneath", "atop", "further left than" …). High held-out accuracy at a layer means that a
read-out of that layer learnt on the training wording transfers to the held-out wording: the
route :class:`~neurogshn.model.grounded_relation.GroundedRelationScore` relies on (it reads
the frozen lower layers).

    python benchmarks/relation_word_transfer.py --layers 0 2 4 6 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from neurogshn.data.relational.phrasing import (  # noqa: E402
    TEST_FAMILIES,
    TRAIN_FAMILIES,
    VAL_FAMILIES,
    PhrasingFamily,
)
from neurogshn.data.relational.vocabulary import COLORS, RELATIONS, SHAPES  # noqa: E402
from neurogshn.model.text import default_text_model_path  # noqa: E402

Example = tuple[str, int, int, int]  # text, relation phrase [start, end), relation index


def examples(families: Sequence[PhrasingFamily], n: int, rng: random.Random) -> list[Example]:
    """``n`` captions of random relations and noun phrases in the given families."""
    out: list[Example] = []
    while len(out) < n:
        family = rng.choice(families)
        frames = [f for f in family.frames if "{P}" not in f and not f.startswith("{R}")]
        if not frames:
            continue
        frame = rng.choice(frames)
        rel = rng.randrange(len(RELATIONS))
        phrase = rng.choice(family.relations[RELATIONS[rel]])
        a = f"{rng.choice(COLORS)} {rng.choice(SHAPES)}"
        b = f"{rng.choice(COLORS)} {rng.choice(SHAPES)}"
        head, tail = frame.split("{R}")
        head = head.replace("{the_A}", f"the {a}").replace("{a_A}", f"a {a}")
        tail = tail.replace("{the_B}", f"the {b}").replace("{a_B}", f"a {b}")
        out.append((head + phrase + tail, len(head), len(head) + len(phrase), rel))
    return out


@torch.no_grad()
def phrase_states(tokenizer, model, data: Sequence[Example], layer: int) -> Tensor:
    """Mean state of each example's relation-phrase tokens at ``layer`` (0 = embeddings)."""
    rows = []
    for text, start, end, _ in data:
        enc = tokenizer(text, return_offsets_mapping=True, return_tensors="pt")
        offsets = enc.pop("offset_mapping")[0].tolist()
        hidden = model(**enc, output_hidden_states=True).hidden_states[layer][0]
        inside = torch.tensor([b > a and a >= start and b <= end for a, b in offsets])
        rows.append(hidden[inside].mean(0))
    return torch.stack(rows)


def linear_probe(x: Tensor, y: Tensor, steps: int = 300) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """A standardised 4-way logistic regression (weights, bias, mean, std)."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    w = torch.zeros(x.shape[1], len(RELATIONS), requires_grad=True)
    b = torch.zeros(len(RELATIONS), requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=1e-2)
    for _ in range(steps):
        loss = F.cross_entropy(((x - mean) / std) @ w + b, y) + 1e-3 * w.pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return w.detach(), b.detach(), mean, std


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[0, 2, 4, 6])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--train", type=int, default=800, help="training captions (800)")
    parser.add_argument("--heldout", type=int, default=300, help="captions per split (300)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from transformers import AutoModel, AutoTokenizer

    path = default_text_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True, use_safetensors=True).eval()
    print(f"{'layer':>5} {'seed':>4} {'train':>7} {'val':>7} {'test':>7}")
    for seed in args.seeds:
        rng = random.Random(seed)
        splits = {
            "train": examples(TRAIN_FAMILIES, args.train, rng),
            "val": examples(VAL_FAMILIES, args.heldout, rng),
            "test": examples(TEST_FAMILIES, args.heldout, rng),
        }
        labels = {k: torch.tensor([e[3] for e in v]) for k, v in splits.items()}
        for layer in args.layers:
            states = {k: phrase_states(tokenizer, model, v, layer) for k, v in splits.items()}
            torch.manual_seed(seed)
            w, b, mean, std = linear_probe(states["train"], labels["train"])
            acc = {
                k: ((((x - mean) / std) @ w + b).argmax(1) == labels[k]).float().mean().item()
                for k, x in states.items()
            }
            print(
                f"{layer:>5} {seed:>4} {100 * acc['train']:>6.1f}% {100 * acc['val']:>6.1f}% "
                f"{100 * acc['test']:>6.1f}%",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
