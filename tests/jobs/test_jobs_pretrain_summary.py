"""The pretraining job's summary table and hard-negative selection know no kind by name."""

from __future__ import annotations

from neurogshn.data.tasks import HardNegativeItem
from neurogshn.jobs.pretrain import SUMMARY_ROWS, _keep_kinds, summary_rows, summary_table

RECALLS = {f"{d}_R@{k}": 0.5 for d in ("i2t", "t2i") for k in (1, 5, 10)} | {"rsum": 300.0}


def test_summary_rows_follow_the_kinds_in_the_results() -> None:
    trained = RECALLS | {
        "relation_swap_acc": 0.75,
        "relation_swap_n": 8.0,
        "negation_acc": 0.5,  # a kind of the user's own file
        "negation_n": 4.0,
        "relation_swap_acc_blind": 0.5,  # a control, not a kind
        "hard_negative_acc": 0.6,
    }
    rows = summary_rows(trained)
    keys = [key for key, _ in rows]
    assert keys[: len(SUMMARY_ROWS)] == [key for key, _ in SUMMARY_ROWS]
    assert keys[len(SUMMARY_ROWS) :] == ["relation_swap_acc", "negation_acc", "rsum"]
    table = summary_table(RECALLS | {"relation_swap_acc": 0.5, "relation_swap_n": 8.0}, trained)
    lines = table.splitlines()
    assert any(line.startswith("relation swap hard-neg. acc. (ITC)") for line in lines)
    negation = next(line for line in lines if line.startswith("negation hard-neg."))
    assert "—" in negation and negation.endswith("50.0 %")  # untrained run had no such kind
    assert lines[-2].startswith("rsum") and lines[-1].startswith("(ITC")
    assert "blind" not in table
    # no hard negatives: retrieval rows and rsum only, no note about the scorer
    plain = summary_table(None, RECALLS)
    assert "hard-neg." not in plain and "ITC" not in plain


def test_keep_kinds_is_generic() -> None:
    item = HardNegativeItem(
        image_id=1,
        caption_index=0,
        caption="c",
        kinds={"relation_swap": "r", "size_flip": None, "negation": "n"},
    )
    head = {"image_id": 1, "caption_index": 0, "caption": "c"}
    assert _keep_kinds(item, None) == head | {"relation_swap": "r", "negation": "n"}
    assert _keep_kinds(item, {"negation"}) == head | {"negation": "n"}
    as_dict = head | {"relation_swap": "r", "size_flip": None, "negation": "n"}
    assert _keep_kinds(as_dict, {"relation_swap", "size_flip"}) == head | {"relation_swap": "r"}
