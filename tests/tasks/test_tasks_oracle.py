"""What the captions allow: the perfect-reader oracle and top-1 truth (tests/tasks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurogshn.tasks.metrics import retrieval_metrics, retrieval_oracle, top1_truth

# 3 images × 4 captions; caption c belongs to image OWNER[c]
OWNER = [0, 0, 1, 2]
TRUTH = torch.tensor(
    [
        [True, True, False, False],  # image 0: its own two captions
        [True, False, True, False],  # image 1: its own c2, and c0 (image 0's) is true of it too
        [False, False, True, True],  # image 2: its own c3, and c2 (image 1's)
    ]
)


def test_oracle_hand_computed():
    m = retrieval_oracle(TRUTH, OWNER, ks=(1, 2))
    # t2i: c0 true of 2 images, c1 of 1, c2 of 2, c3 of 1 -> mean(1/2, 1, 1/2, 1)
    assert m["t2i_R@1_oracle"] == pytest.approx(0.75)
    assert m["t2i_R@2_oracle"] == pytest.approx(1.0)
    # i2t: image 0 has only its own captions true (1); images 1 and 2 one own of two true (1/2)
    assert m["i2t_R@1_oracle"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert m["i2t_R@2_oracle"] == pytest.approx(1.0)
    assert m["rsum_oracle"] == pytest.approx(100 * (2 / 3 + 1 + 0.75 + 1))
    # preferring specific captions: image 2's own c3 (true of 1 image) now comes before c2
    # (true of 2); image 1's two true captions are both true of 2 images -> still 1/2
    assert m["i2t_R@1_oracle_specific"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert m["ambiguous_caption_frac"] == pytest.approx(0.5)
    assert m["images_per_caption"] == pytest.approx(1.5)
    assert m["own_false"] == 0


def test_oracle_counts_a_caption_false_of_its_own_image_as_true():
    bad = TRUTH.clone()
    bad[2, 3] = False  # the logic finds image 2's own caption false: a labelling error
    m = retrieval_oracle(bad, OWNER, ks=(1, 2))
    assert m["own_false"] == 1
    assert m["t2i_R@1_oracle"] == pytest.approx(0.75)  # same as with the pair true


def test_oracle_three_true_two_own():
    # one image, 2 own captions among 3 true ones (+ one other image owning the third):
    # P(top-1 is own) = 2/3 by hand; 1 - C(1,1)/C(3,1)
    truth = torch.tensor([[True, True, True], [False, False, True]])
    m = retrieval_oracle(truth, [0, 0, 1], ks=(1,))
    assert m["i2t_R@1_oracle"] == pytest.approx((2 / 3 + 1.0) / 2)


def test_oracle_is_the_mean_of_random_tie_breaking():
    """The closed form equals the recall of rankings that put true pairs first and order them
    at random, measured with the standard metric code."""
    gen = torch.Generator().manual_seed(0)
    n_img, per = 6, 3
    owner = torch.arange(n_img).repeat_interleave(per)
    truth = torch.rand(n_img, n_img * per, generator=gen) < 0.3
    truth[owner, torch.arange(owner.numel())] = True
    want = retrieval_oracle(truth, owner, ks=(1, 5))
    draws = [
        retrieval_metrics(truth.float() + 0.5 * torch.rand(truth.shape, generator=gen), owner)
        for _ in range(600)
    ]
    for key in ("i2t_R@1", "t2i_R@1", "i2t_R@5", "t2i_R@5"):
        got = float(np.mean([d[key] for d in draws]))
        assert got == pytest.approx(want[f"{key}_oracle"], abs=0.025), key
    # specific first: a caption true of fewer images scores higher (the steps of 0.1 / n_img
    # exceed the 0.01 noise, so the order within one k_c stays random)
    k_c = truth.sum(dim=0).float()
    draws = [
        retrieval_metrics(
            truth.float() - 0.1 * k_c / n_img + 0.01 * torch.rand(truth.shape, generator=gen),
            owner,
        )
        for _ in range(600)
    ]
    for k in (1, 5):
        got = float(np.mean([d[f"i2t_R@{k}"] for d in draws]))
        assert got == pytest.approx(want[f"i2t_R@{k}_oracle_specific"], abs=0.025), k
    assert want["i2t_R@1_oracle_specific"] > want["i2t_R@1_oracle"] + 0.05


def test_oracle_errors():
    with pytest.raises(ValueError, match="images×captions"):
        retrieval_oracle(TRUTH, [0, 1])
    with pytest.raises(ValueError, match="must lie in"):
        retrieval_oracle(TRUTH, [0, 0, 1, 3])


def test_top1_truth_hand_computed():
    sim = torch.tensor(
        [
            [0.9, 0.1, 0.8, 0.0],  # image 0: top c0, true -> hit
            [0.9, 0.1, 0.2, 0.0],  # image 1: top c0, not its own but true of it -> hit
            [0.1, 0.9, 0.9, 0.0],  # image 2: c1 (false) ties c2 (true) at the top -> miss
        ]
    )
    m = top1_truth(sim, TRUTH)
    assert m["i2t_true@1"] == pytest.approx(2 / 3)
    # t2i: c0 top image 0/1 tie (both true) -> hit; c1 top image 2 (false) -> miss;
    # c2 top image 2 (true) -> hit; c3 all 0.0 tie (images 0, 1 false) -> miss
    assert m["t2i_true@1"] == pytest.approx(0.5)
    # R@1 counts only the owner: every caption misses (c0's owner ties image 1, c2's owner
    # is third) although half of the top candidates are true
    assert retrieval_metrics(sim, OWNER)["t2i_R@1"] == 0.0
    assert top1_truth(sim, TRUTH, "t2i") == {"t2i_true@1": m["t2i_true@1"]}
    with pytest.raises(ValueError, match="images×captions"):
        top1_truth(sim[:, :3], TRUTH)
    with pytest.raises(ValueError, match="direction"):
        top1_truth(sim, TRUTH, "both ways")


def test_evaluate_notes_why_there_is_no_oracle(scenes_root, tmp_path):
    """A data set that declares the benchmark gets its diagnostics, or a note when they
    cannot judge the split (captions outside the language, images without attributes); a
    data set that declares nothing (like real COCO) gets neither diagnostics nor a note."""
    import json
    import shutil
    from types import SimpleNamespace

    from neurogshn.data.coco import CocoPanopticDataset
    from neurogshn.tasks.evaluate import retrieval_diagnostics

    root = tmp_path / "data"
    shutil.copytree(scenes_root, root)
    coco = CocoPanopticDataset(root, "test")
    graphs = SimpleNamespace(image_ids=sorted(coco.captions))
    notes: list[str] = []
    diag = retrieval_diagnostics(root, "test", coco, graphs, 3, notes)
    assert diag is not None and notes == []
    ids = graphs.image_ids[:3]
    assert diag.truth_matrix(coco.captions[ids[0]], ids)[:, 0].all()

    coco.captions[graphs.image_ids[1]] = ["two dogs play in the snow"]
    assert retrieval_diagnostics(root, "test", coco, graphs, None, notes) is None
    assert "caption oracle omitted" in notes[-1] and "two dogs" in notes[-1]

    path = root / "annotations" / "panoptic_test.json"
    doc = json.loads(path.read_text())
    for ann in doc["annotations"]:
        for seg in ann["segments_info"]:
            seg.pop("attributes", None)
    path.write_text(json.dumps(doc))
    coco = CocoPanopticDataset(root, "test")
    assert retrieval_diagnostics(root, "test", coco, graphs, None, notes) is None
    assert "no color/size attributes" in notes[-1]

    (root / "annotations" / "scenes.json").unlink()  # now an undeclared COCO data set
    quiet: list[str] = []
    assert retrieval_diagnostics(root, "test", coco, graphs, None, quiet) is None
    assert quiet == []


class _HandDiagnostics:
    """A diagnostics object over hand-built scenes (the duck type retrieval expects)."""

    def __init__(self, scenes):
        from neurogshn.data.relational.logic import FALSE_REASONS

        self.scenes = scenes
        self.reasons = FALSE_REASONS

    def truth_matrix(self, texts, image_ids):
        from neurogshn.data.relational.logic import truth_matrix

        return truth_matrix(texts, [self.scenes[i] for i in image_ids])

    def why_false(self, text, image_id):
        from neurogshn.data.relational.logic import why_false

        return why_false(text, self.scenes[image_id])


def test_top1_false_reasons_by_hand():
    from neurogshn.data.relational.logic import FALSE_REASONS, SceneFacts, SceneObject
    from neurogshn.tasks.retrieval import top1_false_reasons

    def scene(left: str, right: str) -> SceneFacts:
        return SceneFacts(
            (
                SceneObject(1, "circle", left, "small", 0.2, 0.5),
                SceneObject(2, "square", right, "small", 0.8, 0.5),
            )
        )

    diag = _HandDiagnostics({10: scene("red", "blue"), 11: scene("blue", "red")})
    ids = [10, 11]
    texts = [
        "the red circle is left of the blue square.",
        "the blue circle is left of the red square.",
    ]
    truth = torch.from_numpy(diag.truth_matrix(texts, ids).T)
    assert truth.tolist() == [[True, False], [False, True]]
    sim = torch.tensor(
        [[0.1, 0.7], [0.2, 0.8]]
    )  # both images prefer caption 1, both captions image 1
    i2t = top1_false_reasons(sim, truth, texts, ids, "i2t", diag)
    assert set(i2t) == {f"i2t_false@1_{r}" for r in FALSE_REASONS}
    assert i2t["i2t_false@1_binding"] == 0.5 and sum(i2t.values()) == 0.5
    t2i = top1_false_reasons(sim, truth, texts, ids, "t2i", diag)  # caption 0 -> image 1
    assert t2i["t2i_false@1_binding"] == 0.5 and sum(t2i.values()) == 0.5
    assert top1_truth(sim, truth)["t2i_true@1"] + sum(t2i.values()) == 1.0
    with pytest.raises(ValueError, match="direction"):
        top1_false_reasons(sim, truth, texts, ids, "both", diag)


def test_retrieval_with_a_duck_typed_oracle(tmp_path):
    """evaluate_retrieval takes any object with truth_matrix / why_false / reasons: the
    oracle figures follow it, with reasons of its own."""
    from types import SimpleNamespace

    from torch import nn
    from torch_geometric.data import Data

    from neurogshn.tasks.retrieval import evaluate_retrieval

    class Model(nn.Module):
        """Image embedding: one-hot of the image id; caption embedding: one-hot from a table."""

        def __init__(self, table):
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros(1))
            self.table = table

        def encode_image(self, batch):
            return SimpleNamespace(image_embeds=torch.eye(2)[batch.image_id.view(-1)])

        def encode_text(self, texts):
            return SimpleNamespace(text_embeds=torch.eye(2)[[self.table[t] for t in texts]])

    graphs = [
        Data(x=torch.zeros(1, 2), edge_index=torch.zeros(2, 0, dtype=torch.long), image_id=i)
        for i in (torch.tensor([0]), torch.tensor([1]))
    ]

    class Oracle:
        reasons = ("colour", "other")

        def truth_matrix(self, texts, image_ids):
            # a caption "img{i} ..." is true of image i, and "any" of every image
            return np.array(
                [[t.startswith(f"img{i} ") or t == "any" for i in image_ids] for t in texts]
            )

        def why_false(self, text, image_id):
            return "colour" if text.endswith("red") else "other"

    captions = {0: ["img0 red", "any"], 1: ["img1 blue"]}
    table = {"img0 red": 1, "any": 1, "img1 blue": 0}  # every caption points the wrong way
    coco = SimpleNamespace(captions=captions, root=tmp_path)
    m = evaluate_retrieval(Model(table), graphs, coco, diagnostics=Oracle())
    assert m["own_false"] == 0 and m["ambiguous_caption_frac"] == pytest.approx(1 / 3)
    assert set(k for k in m if "_false@1_" in k) == {
        f"{d}_false@1_{r}" for d in ("i2t", "t2i") for r in Oracle.reasons
    }
    # image 0 ranks "img1 blue" first (false: other), image 1 "img0 red" (false: colour)
    assert m["i2t_false@1_colour"] == 0.5 and m["i2t_false@1_other"] == 0.5
    plain = evaluate_retrieval(Model(table), graphs, coco)
    assert not any("oracle" in k or "true@1" in k or "false@1" in k for k in plain)
