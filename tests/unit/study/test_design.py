from collections import Counter
from itertools import combinations

import pytest

from optune.errors import UserError
from optune.study import design


def test_draw_prompts_is_seeded_and_keeps_pool_order():
    pool = [f"p{i}" for i in range(100)]
    first = design.draw_prompts(pool, 10, seed=3)
    assert first == design.draw_prompts(pool, 10, seed=3)
    assert first != design.draw_prompts(pool, 10, seed=4)
    assert len(set(first)) == 10 and first == sorted(first, key=pool.index)
    with pytest.raises(UserError, match="more than the 100 prompts"):
        design.draw_prompts(pool, 101, seed=0)
    with pytest.raises(UserError):
        design.draw_prompts(pool, 0, seed=0)


def test_paper_shape_100_pairs_8_raters_4_each():
    """Appendix D: 2 comparisons x 50 prompts, 8 raters, 50 pairs each, 400 ratings, 4 per pair."""
    items = design.make_items(2, 50)
    assert len(items) == 100 and len(set(items)) == 100
    plan = design.assign(len(items), 8, 4, seed=0)
    assert len(plan) == 400
    per_item = Counter(a.item for a in plan)
    assert set(per_item.values()) == {4}
    assert set(Counter(a.rater for a in plan).values()) == {50}
    # a pair never goes twice to the same rater
    assert len({(a.item, a.rater) for a in plan}) == 400
    # positions are 0..49 for each rater
    for r in range(8):
        assert sorted(a.position for a in plan if a.rater == r) == list(range(50))
    # A/B order alternates within each pair: 2 of 4 raters see the first system as A
    assert set(Counter(a.item for a in plan if a.first_is_a).values()) == {2}
    # raters are mixed: every pair of raters shares some items (not a few fixed groups)
    shared = Counter()
    by_item = {}
    for a in plan:
        by_item.setdefault(a.item, []).append(a.rater)
    for raters in by_item.values():
        shared.update(combinations(sorted(raters), 2))
    assert len(shared) == 28


def test_uneven_loads_differ_by_at_most_one():
    plan = design.assign(7, 3, 2, seed=1)
    loads = Counter(a.rater for a in plan)
    assert sum(loads.values()) == 14 and max(loads.values()) - min(loads.values()) <= 1
    assert design.assign(7, 3, 2, seed=1) == plan
    assert design.assign(7, 3, 2, seed=2) != plan


def test_assign_rejects_more_ratings_than_raters():
    with pytest.raises(UserError, match="between 1 and the number of raters"):
        design.assign(5, 2, 3, seed=0)
    with pytest.raises(UserError):
        design.assign(5, 2, 0, seed=0)


def test_parse_comparisons():
    names = ["o07", "o10", "r07"]
    assert design.parse_comparisons(["o07:o10", "o07:r07"], names) == [("o07", "o10"), ("o07", "r07")]
    assert design.parse_comparisons(None, ["x", "y"]) == [("x", "y")]
    for bad, msg in [(None, "say what to compare"), (["o07"], "FIRST:SECOND"), (["o07:zz"], "unknown system"),
                     (["o07:o07"], "itself"), (["o07:o10", "o10:o07"], "twice")]:
        with pytest.raises(UserError, match=msg):
            design.parse_comparisons(bad, names)
