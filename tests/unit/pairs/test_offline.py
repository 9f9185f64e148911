from optune.data.preferences import PreferenceData
from optune.pairs.offline import pair_prompts, response_ids, sample_pairs


def _data(n: int) -> PreferenceData:
    return PreferenceData(pairs=[{"prompt": f"p{i}", "history": [], "chosen": "a", "rejected": "b"} for i in range(n)])


def test_limit_takes_a_seeded_sample_in_file_order():
    data = _data(100)
    a, b = sample_pairs(data, 10, seed=0), sample_pairs(data, 10, seed=0)
    ids = list(a)
    assert ids == list(b) and len(set(ids)) == 10 and ids == sorted(ids)
    assert ids != [f"pair-{i:06d}" for i in range(10)]  # not simply the first ten
    assert ids != list(sample_pairs(data, 10, seed=1))
    assert all(pair["prompt"] == f"p{int(pid[5:])}" for pid, pair in a.items())
    prompts = pair_prompts(a)
    assert [p.id for p in prompts] == ids and all(p.text == a[p.id]["prompt"] for p in prompts)


def test_no_limit_or_large_limit_keeps_every_pair():
    data = _data(5)
    assert list(sample_pairs(data, None)) == [f"pair-{i:06d}" for i in range(5)]
    assert len(sample_pairs(data, 50)) == 5


class _Tok:
    eos_token_id = 0

    def encode(self, text, add_special_tokens=False):
        return [ord(c) for c in text]


def test_response_ids_append_eos_unless_cut():
    assert response_ids(_Tok(), "ab", 4) == ([97, 98, 0], True)
    assert response_ids(_Tok(), "abcd", 4) == ([97, 98, 99, 100], False)
