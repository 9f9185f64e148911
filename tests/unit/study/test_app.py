import re

import pytest

from optune.study import storage
from optune.study.app import create_app
from optune.study.create import create_study

from .conftest import SCRIPT

HIDDEN = ["ALPHA-7B", "BETA-13B", "alpha.json", "beta.jsonl"]


@pytest.fixture
def client(study):
    db, tokens = study
    app = create_app(db)
    app.testing = True
    return app.test_client(), tokens, db


def _assignment(html: str) -> int:
    return int(re.search(r'name="assignment" value="(\d+)"', html).group(1))


def test_guidelines_show_the_four_criteria_and_progress(client):
    c, tokens, _ = client
    page = c.get(f"/r/{tokens['r1']}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    for name in ["Alignment with the user", "Clarity and precision", "Directness and relevance",
                 "Efficiency and brevity"]:
        assert name in html
    assert "Rated so far: 0 of 4" in html
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize("path", ["/r/nope", "/r/nope/item", "/r/" + "x" * 500])
def test_invalid_token_is_refused(client, path):
    c, _, _ = client
    page = c.get(path)
    assert page.status_code == 404 and "This link is not valid" in page.get_data(as_text=True)
    assert c.post("/r/nope/rate", data={"assignment": "1", "choice": "A"}).status_code == 404


def test_items_are_escaped_and_blind(client):
    c, tokens, _ = client
    seen_script = False
    for token in tokens.values():
        for _ in range(4):
            html = c.get(f"/r/{token}/item").get_data(as_text=True)
            for hidden in HIDDEN:
                assert hidden not in html
            assert "<script>window" not in html
            if "Beta answer 0 " in html or "Beta answer 2 " in html or "Beta answer 4 " in html:
                assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html
                seen_script = True
            c.post(f"/r/{token}/rate", data={"assignment": _assignment(html), "choice": "tie"})
    assert seen_script, SCRIPT


def test_rating_redirects_and_double_submit_counts_once(client):
    c, tokens, db = client
    token = tokens["r2"]
    html = c.get(f"/r/{token}/item").get_data(as_text=True)
    assert "Pair 1 of 4" in html
    first = _assignment(html)
    resp = c.post(f"/r/{token}/rate", data={"assignment": first, "choice": "A"})
    assert resp.status_code == 303 and resp.headers["Location"].endswith(f"/r/{token}/item")
    again = c.post(f"/r/{token}/rate", data={"assignment": first, "choice": "B"})
    assert again.status_code == 303
    html = c.get(f"/r/{token}/item").get_data(as_text=True)
    assert "Pair 2 of 4" in html and _assignment(html) != first
    conn = storage.connect(db)
    assert [tuple(r) for r in conn.execute("SELECT assignment, choice FROM ratings")] == [(first, "A")]


def test_foreign_and_malformed_posts_are_rejected(client):
    c, tokens, db = client
    other = _assignment(c.get(f"/r/{tokens['r2']}/item").get_data(as_text=True))
    mine = _assignment(c.get(f"/r/{tokens['r1']}/item").get_data(as_text=True))
    assert c.post(f"/r/{tokens['r1']}/rate", data={"assignment": other, "choice": "A"}).status_code == 403
    assert c.post(f"/r/{tokens['r1']}/rate", data={"assignment": mine, "choice": "C"}).status_code == 400
    assert c.post(f"/r/{tokens['r1']}/rate", data={"assignment": "x", "choice": "A"}).status_code == 400
    assert c.post(f"/r/{tokens['r1']}/rate", data={"choice": "A"}).status_code == 400
    assert c.get(f"/r/{tokens['r1']}/rate").status_code == 405
    assert storage.connect(db).execute("SELECT COUNT(*) FROM ratings").fetchone()[0] == 0


def test_finishing_shows_thanks(client):
    c, tokens, _ = client
    token = tokens["r3"]
    for _ in range(4):
        html = c.get(f"/r/{token}/item").get_data(as_text=True)
        c.post(f"/r/{token}/rate", data={"assignment": _assignment(html), "choice": "B"})
    html = c.get(f"/r/{token}/item").get_data(as_text=True)
    assert "You have rated all 4 pairs" in html
    assert "Rated so far: 4 of 4" in c.get(f"/r/{token}").get_data(as_text=True)


def test_an_empty_answer_is_marked_not_blank(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text('{"prompt": "q", "response": "  "}\n')
    b.write_text('{"prompt": "q", "response": "fine"}\n')
    created = create_study(tmp_path / "s.db", [str(a), str(b)], None, n_prompts=1, raters=["r"],
                           ratings_per_item=1, seed=0)
    c = create_app(tmp_path / "s.db").test_client()
    html = c.get(f"/r/{created.tokens[0][1]}/item").get_data(as_text=True)
    assert "(empty answer)" in html and "fine" in html
