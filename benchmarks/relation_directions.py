"""Which direction in the image plane each word of a caption carries, as a trained grounded
relation term reads it (:class:`~neurogshn.model.grounded_relation.GroundedRelationScore`).

For every token the script prints ``U x_t`` (x: +right, y: +down in image coordinates; a
positive x means "the thing named after me lies right of the thing named before me") and the
referent gate ``r_t`` (does the token name something). Any caption in any wording can be
given; words the training captions never used show whether the frozen text states carry what
was learnt for other words.

    python benchmarks/relation_directions.py --checkpoint runs/pretrain_stl/latest/final \\
        "the red circle is beneath the blue square" "a red circle stands atop a blue square"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("captions", nargs="+")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from neurogshn.model import GSHN

    model = GSHN.from_pretrained(args.checkpoint).eval()
    head = model.itm_head
    if head is None or head.relation is None:
        print(f"{args.checkpoint}: the model has no grounded relation term", file=sys.stderr)
        return 2
    text = model.text_encoder
    with torch.no_grad():
        enc = text(args.captions)
        for i, caption in enumerate(args.captions):
            states = enc.word_states[i][enc.attention_mask[i]]
            direction = head.relation.direction(states)
            gate = torch.sigmoid(head.relation.referent_logits(states))
            ids = text.tokenizer(caption, truncation=True, max_length=text.max_length)
            tokens = text.tokenizer.convert_ids_to_tokens(ids["input_ids"])
            print(caption)
            for t, token in enumerate(tokens):
                print(
                    f"  {token:>14}  U·x = ({direction[t, 0]:+5.2f}, {direction[t, 1]:+5.2f})"
                    f"  referent {gate[t]:.2f}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
