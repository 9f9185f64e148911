import csv

import pytest

from optune.study import results

# Fleiss (1971) worked example as given on Wikipedia ("Fleiss' kappa"): 10 subjects, 14 raters,
# 5 categories; P-bar = 0.378, P_e = 0.213, kappa = 0.210.
WIKIPEDIA = [
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
]


def test_fleiss_kappa_matches_the_published_example():
    pct, kappa, used = results.agreement(WIKIPEDIA)
    assert used == 10
    assert pct == pytest.approx(0.378, abs=5e-4)
    assert kappa == pytest.approx(0.210, abs=5e-4)


def test_agreement_edge_cases():
    # perfect agreement on one category: agreement 1, kappa undefined
    assert results.agreement([[3, 0, 0], [2, 0, 0]]) == (1.0, None, 2)
    # single ratings carry no agreement information
    assert results.agreement([[1, 0, 0], [0, 1, 0]]) == (None, None, 0)
    # two items, two raters: one agreeing pair, one disagreeing -> P-bar 0.5;
    # p = (3/4, 1/4, 0) -> P_e = 0.625 -> kappa = (0.5 - 0.625) / 0.375 = -1/3
    pct, kappa, used = results.agreement([[2, 0, 0], [1, 1, 0]])
    assert (pct, used) == (0.5, 2) and kappa == pytest.approx(-1 / 3)


@pytest.mark.parametrize("first_is_a, choice, expected", [
    (1, "A", "win"), (1, "B", "loss"), (0, "A", "loss"), (0, "B", "win"), (0, "tie", "tie"), (1, "tie", "tie"),
])
def test_outcome_undoes_the_hidden_order(first_is_a, choice, expected):
    assert results.outcome(first_is_a, choice) == expected


def _rating(item, first_is_a, choice, rater="r"):
    return {"comparison": 1, "first": "opt07", "second": "opt10", "item": item, "prompt_id": item,
            "prompt": f"p{item}", "rater": rater, "first_is_a": first_is_a, "choice": choice, "rated_at": "t"}


def test_table4_row_by_hand():
    comps = [{"id": 1, "first": "opt07", "second": "opt10", "items": 3, "assigned": 6},
             {"id": 2, "first": "opt07", "second": "rdm07", "items": 3, "assigned": 6}]
    ratings = [_rating(1, 1, "A"), _rating(1, 0, "B"), _rating(2, 1, "B"), _rating(2, 0, "tie"), _rating(3, 0, "A")]
    row, empty = results.summarise(comps, ratings)
    # win: item1 x2; loss: item2 (B with first as A), item3 (A with first as B); tie: item2
    assert (row["win_pct"], row["loss_pct"], row["tie_pct"]) == (40.0, 40.0, 20.0)
    assert (row["ratings"], row["assigned"], row["items_rated"]) == (5, 6, 3)
    assert row["ratings_per_item"] == pytest.approx(5 / 3)
    # items 1 [2,0,0] and 2 [0,1,1]: P-bar 0.5; p = (.5, .25, .25): P_e .375; kappa 0.2
    assert row["agreement_pct"] == pytest.approx(50.0) and row["fleiss_kappa"] == pytest.approx(0.2)
    assert empty["ratings"] == 0 and empty["win_pct"] is None
    text = results.format_table([row, empty])
    assert "opt07 vs opt10" in text and "40.00" in text and "5/6" in text and "n/a" in text


def test_export_reveals_order_for_the_organiser(tmp_path):
    rows = results.export_rows([_rating(1, 0, "A", rater="ann")])
    assert rows[0]["shown_as_a"] == "opt10" and rows[0]["preferred"] == "opt10"
    assert rows[0]["outcome_for_first"] == "loss"
    path = tmp_path / "r.csv"
    results.write_csv(path, rows, results.EXPORT_FIELDS)
    with path.open() as fh:
        back = list(csv.DictReader(fh))
    assert back[0]["rater"] == "ann" and list(back[0]) == results.EXPORT_FIELDS
