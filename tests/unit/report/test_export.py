"""`optune export` on run directories written here through the run's own writers (store, build_pairs, state_rows).

The end-to-end version (a real tiny run, exported, then trained on by `optune dpo`) is in tests/e2e/test_api.py.
"""

import json

import pytest
import yaml

from optune.cli import main as cli_main
from optune.config.run import RunConfig, load_dataclass, to_dict
from optune.data.preferences import read_preferences
from optune.errors import UserError
from optune.losses import make_loss
from optune.pairs import Response, build_pairs, state_rows
from optune.prompt import Prompt
from optune.report.export import export_run
from optune.store import RunStore, write_jsonl

PROMPTS = [{"id": "p0", "prompt": "Name a colour.", "history": []},
           {"id": "p1", "prompt": "And now?", "history": [{"role": "user", "content": "Hi"},
                                                          {"role": "assistant", "content": "Hello"}]}]


def response(text, reward, t):
    return Response(text=text, ids=[1, 2], eos=True, reward=reward, generated_at=t)


def metrics(t, n_pairs):
    return {"iteration": t, "pairs/trained": n_pairs, "selection/n_regenerated": 2 if t == 0 else 1,
            "objective/scores": 0.5 + t, "eval/heldout_reward": 0.25 + t, "time/generation_s": 3.0,
            "time/rewarding_s": 1.0, "time/training_s": 4.0, "time/bookkeeping_s": 0.0, "time/eval_s": 2.0,
            "time/elapsed_s": 8.0 * (t + 1), **({"eval/heldout_reward_start": 0.125} if t == 0 else {})}


def make_run(root, states, labelled=False, store_prompts=True, **cfg_keys):
    """A run directory whose iteration t has the responses states[t] (prompt id -> two Responses)."""
    cfg = load_dataclass(RunConfig, None, [f"{k.replace('__', '.')}={v}" for k, v in cfg_keys.items()])
    store = RunStore.create(root, yaml.safe_dump(to_dict(cfg), sort_keys=False), {"optune": "test"})
    if store_prompts:
        write_jsonl(store.prompts, PROMPTS)
    records = [Prompt.from_record({**p, "ids": [1]}) for p in PROMPTS]
    for t, state in enumerate(states):
        pairs, rows, _ = build_pairs(records, state, make_loss("wdpo", 0.1, 10.0).weights, labelled=labelled)
        store.write_jsonl(store.responses(t), state_rows(records, state))
        store.write_jsonl(store.pairs(t), rows)
        store.write_metrics(t, metrics(t, len(pairs)))
    store.close()  # as a finished run leaves it: unlocked
    return store


def online_states():
    first = {"p0": [response("worse", 0.2, 0), response("better", 0.8, 0)],
             "p1": [response("tie a", 0.5, 0), response("tie b", 0.5, 0)]}  # a tie: dropped, not exported
    second = {"p0": first["p0"], "p1": [response("good", 0.9, 1), response("poor", 0.1, 1)]}
    return [first, second]


def assistant(text):
    return [{"role": "assistant", "content": text}]


def test_rows_in_trl_format_every_iteration(tmp_path):
    store = make_run(tmp_path / "run", online_states())
    result = export_run(store.root, tmp_path / "out")
    assert result.pairs_per_iteration == {0: 1, 1: 2} and result.rows == 3
    assert result.prompts_from == str(store.prompts)
    rows = [json.loads(line) for line in result.jsonl.read_text().splitlines()]
    user = [{"role": "user", "content": "Name a colour."}]
    assert rows[0] == {"prompt": user, "chosen": assistant("better"), "rejected": assistant("worse"),
                       "score_chosen": 0.8, "score_rejected": 0.2, "iteration": 0, "prompt_id": "p0"}
    assert rows[1] == {**rows[0], "iteration": 1}  # reused responses: trained on again at iteration 1
    assert rows[2]["prompt"] == PROMPTS[1]["history"] + [{"role": "user", "content": "And now?"}]
    assert (rows[2]["chosen"], rows[2]["rejected"], rows[2]["iteration"]) == (assistant("good"), assistant("poor"), 1)


def test_labelled_pairs_keep_their_label(tmp_path):
    """Offline data: the first answer is the chosen one even where its reward is lower."""
    state = {"p0": [response("labelled good", 0.1, -1), response("labelled bad", 0.5, -1)],
             "p1": [response("same reward 1", 0.3, -1), response("same reward 2", 0.3, -1)]}
    store = make_run(tmp_path / "run", [state], labelled=True)
    rows = [json.loads(line) for line in export_run(store.root, tmp_path / "out").jsonl.read_text().splitlines()]
    assert [(r["chosen"][0]["content"], r["score_chosen"], r["score_rejected"]) for r in rows] == [
        ("labelled good", 0.1, 0.5), ("same reward 1", 0.3, 0.3)]


def test_round_trip_through_datasets_and_optune_dpo_reader(tmp_path):
    import datasets

    store = make_run(tmp_path / "run", online_states())
    result = export_run(store.root, tmp_path / "out")
    from_parquet = datasets.load_dataset("parquet", data_files=str(result.parquet), split="train")
    from_json = datasets.load_dataset("json", data_files=str(result.jsonl), split="train")
    expected = [json.loads(line) for line in result.jsonl.read_text().splitlines()]
    as_folder = datasets.load_dataset(str(result.out), split="train")  # the folder, as a hub name is loaded
    assert list(from_parquet) == expected and list(from_json) == expected and list(as_folder) == expected
    assert from_parquet.column_names == ["prompt", "chosen", "rejected", "score_chosen", "score_rejected",
                                         "iteration", "prompt_id"]
    for source in (str(result.parquet), str(result.jsonl), str(result.out)):
        pairs = read_preferences(source).pairs
        assert [(p["prompt"], p["history"], p["chosen"], p["rejected"], p["chosen_reward"], p["rejected_reward"])
                for p in pairs] == [("Name a colour.", [], "better", "worse", 0.8, 0.2)] * 2 + [
                   ("And now?", PROMPTS[1]["history"], "good", "poor", 0.9, 0.1)]


def test_older_run_rereads_data_train(tmp_path):
    data = tmp_path / "prompts.jsonl"
    write_jsonl(data, PROMPTS)
    store = make_run(tmp_path / "run", online_states(), store_prompts=False, data__train=str(data))
    result = export_run(store.root, tmp_path / "out")
    assert result.rows == 3 and result.prompts_from.startswith(f"data.train ({data})")
    data.write_text(json.dumps({"id": "other", "prompt": "x"}) + "\n")  # the set changed since the run
    with pytest.raises(UserError, match="prompt 'p0' of iteration 0 is not in the run's prompt set"):
        export_run(store.root, tmp_path / "out2")


def test_model_card_beside_the_final_checkpoint(tmp_path):
    store = make_run(tmp_path / "run", online_states(), policy__model="HuggingFaceTB/SmolLM2-135M-Instruct",
                     data__train="hf:trl-lib/ultrafeedback-prompt")
    result = export_run(store.root, tmp_path / "out")
    assert result.model_card == store.checkpoint(1) / "README.md"
    text = result.model_card.read_text()
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert front["datasets"] == ["trl-lib/ultrafeedback-prompt"] and "online-dpo" in front["tags"]
    assert "| start (pi_0) | 0.1250 |" in text and "| after iteration 1 (pi_2) | 1.2500 | 1.5000 | 2 | 1 |" in text
    assert "| all | 6.0 s (38%) | 2.0 s (12%) | 8.0 s (50%) | 0.0 s (0%) | 16.0 | |" in text
    assert "```yaml\n" + store.config.read_text() in text  # the whole config


def test_nothing_to_export(tmp_path):
    with pytest.raises(UserError, match=r"is not an optune run directory"):
        export_run(tmp_path)
    store = make_run(tmp_path / "run", [])
    with pytest.raises(UserError, match="has no finished iteration yet"):
        export_run(store.root)
    assert not (store.root / "export").exists()


def test_cli(tmp_path, capsys):
    from optune.cli import main

    store = make_run(tmp_path / "run", online_states())
    assert main(["export", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert ("3 pairs (iteration 0: 1, iteration 1: 2)" in out
            and str(store.root / "export" / "preferences.parquet") in out)
    assert (store.checkpoint(1) / "README.md").is_file()
    assert main(["export", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"optune export: error: {tmp_path / 'nope'} is not an optune run directory (no .optune-run or " \
                  "config.yaml)"


def test_component_scores_become_columns(tmp_path):
    import pyarrow.parquet as pq

    def scored(text, reward, task, length=None):
        parts = {"task": task, **({"length": length} if length is not None else {})}
        return Response(text=text, ids=[1], eos=True, reward=reward, generated_at=0, parts=parts)

    state = {"p0": [scored("worse", 0.2, 0.4, -0.2), scored("better", 0.8, 0.8)],  # "better" lacks length
             "p1": [scored("good", 0.9, 1.0, -0.1), scored("poor", 0.1, 0.3, -0.2)]}
    result = export_run(make_run(tmp_path / "run", [state]).root, tmp_path / "out")
    rows = [json.loads(line) for line in result.jsonl.read_text().splitlines()]
    assert [(r["score_chosen_task"], r["score_rejected_task"], r["score_chosen_length"], r["score_rejected_length"])
            for r in rows] == [(0.8, 0.4, None, -0.2), (1.0, 0.3, -0.1, -0.2)]
    table = pq.read_table(result.parquet)
    assert table.column_names[7:] == list(rows[0])[7:] == ["score_chosen_task", "score_rejected_task",
                                                           "score_chosen_length", "score_rejected_length"]
    assert table.column("score_chosen_length").to_pylist() == [None, -0.1]


def test_no_component_columns_without_components(tmp_path):
    import pyarrow.parquet as pq

    result = export_run(make_run(tmp_path / "run", online_states()).root, tmp_path / "out")
    assert pq.read_table(result.parquet).column_names == ["prompt", "chosen", "rejected", "score_chosen",
                                                          "score_rejected", "iteration", "prompt_id"]


def test_run_card_written_as_a_run_ends_is_portable(tmp_path):
    from optune.config.run import load_run_config
    from optune.report.card import write_run_card

    # iteration 0 scores best on the held-out prompts, iteration 1 is the final policy
    store = make_run(tmp_path / "run", online_states(), output_dir=str(tmp_path / "run"))
    ms = [json.loads(store.metrics(t).read_text()) for t in (0, 1)]
    ms[1]["eval/heldout_reward"] = 0.0
    cfg = load_run_config(str(store.config))
    assert write_run_card(RunStore(store.root), cfg, ms) is None  # no final checkpoint folder: nothing to write
    store.checkpoint(1).mkdir(parents=True)
    path = write_run_card(RunStore(store.root), cfg, ms)
    assert path == store.checkpoint(1) / "README.md"
    text = path.read_text()
    assert 'model="iter_001/checkpoint")  # the final policy' in text and "From the run directory" in text
    assert 'the best held-out reward was after iteration 0: model="iter_000/checkpoint"' in text
    assert "Best held-out reward: after iteration 0" in text
    # the same bytes wherever the run lives and however long it took: no path, no timing, no output_dir
    assert str(tmp_path) not in text and "PATH/TO" not in text and "output_dir" not in text
    assert "timeout_s" not in text and "device:" not in text  # deployment-only: a resume may change them
    assert "rho: 0.5" in text and "impl: auto" in text  # what the run computed stays
    assert "| all |" not in text and "optune export RUN" in text
    path.write_text("exported card")
    assert write_run_card(RunStore(store.root), cfg, ms, if_missing=True) == path
    assert path.read_text() == "exported card"  # a resumed finished run keeps the card export wrote


def test_dedupe_keeps_one_row_per_distinct_pair(tmp_path, capsys):
    from optune.cli import main

    store = make_run(tmp_path / "run", online_states())  # p0's pair was reused: trained at iterations 0 and 1
    result = export_run(store.root, tmp_path / "out", dedupe=True)
    rows = [json.loads(line) for line in result.jsonl.read_text().splitlines()]
    assert [(r["prompt_id"], r["iteration"]) for r in rows] == [("p0", 0), ("p1", 1)]
    assert result.pairs_per_iteration == {0: 1, 1: 1} and result.rows == 2 and result.repeats_dropped == 1
    import pyarrow.parquet as pq

    assert pq.read_table(result.parquet).num_rows == 2
    assert main(["export", str(store.root), "--out", str(tmp_path / "cli"), "--dedupe"]) == 0
    assert "2 pairs (iteration 0: 1, iteration 1: 1; 1 repeat of an earlier pair left out)" in capsys.readouterr().out


@pytest.mark.parametrize("name, damage", [
    ("pairs.jsonl", b'{"prompt_id": "p0", "trai'), ("responses.jsonl", b"\xff\xfe"),
    ("pairs.jsonl", b'{"prompt_id": "p0"}\n'), ("responses.jsonl", b'{"prompt_id": "p0", "responses": [1]}\n'),
    ("metrics.json", b"[1, 2"),
])
def test_a_damaged_file_of_a_finished_iteration_is_one_line(tmp_path, capsys, name, damage):
    """Cut short, not UTF-8, JSON of the wrong shape: `optune export` names the file (exit 2), no traceback."""
    store = make_run(tmp_path / "run", online_states())
    store.iter_dir(1).joinpath(name).write_bytes(damage)
    assert cli_main(["export", str(store.root), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"optune export: error: {store.iter_dir(1) / name} is damaged ("), err
    assert err[0].endswith(f"remove {store.iter_dir(1)} and later iterations to redo them, or start a new run")


def test_a_damaged_prompts_file_is_named_and_data_train_read_instead(tmp_path, capsys):
    train = tmp_path / "prompts.jsonl"
    write_jsonl(train, PROMPTS)
    reference = export_run(make_run(tmp_path / "a", online_states(), data__train=train).root, tmp_path / "ref")
    store = make_run(tmp_path / "run", online_states(), data__train=train)
    store.prompts.write_bytes(store.prompts.read_bytes()[:30])
    capsys.readouterr()
    result = export_run(store.root, tmp_path / "out")
    assert capsys.readouterr().err.splitlines() == [
        f"{store.prompts} is damaged (not valid JSON at line 1): reading the prompts from data.train ({train}) instead"]
    assert result.jsonl.read_text() == reference.jsonl.read_text()


def test_a_damaged_versions_file_is_named_and_left_out_of_the_card(tmp_path, capsys):
    store = make_run(tmp_path / "run", online_states())
    store.versions.write_text("{not json")
    capsys.readouterr()
    result = export_run(store.root, tmp_path / "out")
    assert capsys.readouterr().err.splitlines() == [
        f"{store.versions} is damaged (not valid JSON at line 1): the model card lists no package versions"]
    assert result.model_card.is_file()
