"""`optune report` on synthetic run directories written in the `optune run` format."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="optune report needs matplotlib: pip install 'optune[report]'")

from optune.cli import main as cli_main
from optune.report import plots
from optune.report.runs import chosen_rewards, gain_split, gain_splits, heldout_curve, load_run
from optune.report.summary import markdown


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_run(root: Path, rho: float, n_prompts: int = 40, iterations: int = 3, seed: int = 0) -> Path:
    """A plausible run: rewards rise, the lowest ceil(rho * n) prompts are regenerated each iteration."""
    rng = random.Random(seed)
    rewards = {f"p{i}": [rng.gauss(0, 1), rng.gauss(0, 1)] for i in range(n_prompts)}
    elapsed, metrics, made = 0.0, [], {}
    heldout = 0.1
    for t in range(iterations):
        ranked = sorted(rewards, key=lambda k: max(rewards[k]))
        regen = ranked if t == 0 else ranked[: math.ceil(rho * n_prompts)]
        for k in regen:
            rewards[k] = [rng.gauss(0.4 * t, 1), rng.gauss(0.4 * t, 1)]
            made[k] = t
        rows = [{"prompt_id": k, "responses": [{"text": "a", "reward": r[0], "eos": True, "generated_at": made[k]},
                                               {"text": "b", "reward": r[1], "eos": True, "generated_at": made[k]}]}
                for k, r in rewards.items()]
        _write_jsonl(root / f"iter_{t:03d}" / "responses.jsonl", rows)
        gen, rew, train, ev = 30.0 * len(regen) / n_prompts, 0.5, 12.0, 4.0
        elapsed += gen + rew + train + ev
        heldout += 0.2 + 0.05 * rng.random()
        chosen = [max(r) for r in rewards.values()]
        m = {"iteration": t, "loss": 0.69 - 0.05 * t, "objective/scores": sum(chosen) / len(chosen),
             "eval/heldout_reward": heldout, "time/generation_s": gen, "time/rewarding_s": rew,
             "time/training_s": train, "time/eval_s": ev, "time/iteration_s": gen + rew + train + ev,
             "time/elapsed_s": elapsed, "selection/n_regenerated": len(regen),
             "selection/frac_regenerated": len(regen) / n_prompts}
        if t == 0:
            m["eval/heldout_reward_start"] = 0.1
            _write_jsonl(root / "iter_000" / "heldout_start.jsonl",
                         [{"prompt_id": "h0", "prompt": "q", "response": "r", "reward": 0.1}])
        metrics.append(m)
    _write_jsonl(root / "metrics.jsonl", metrics)
    (root / "config.yaml").write_text(f"selection:\n  rho: {rho}\n")
    return root


def test_gain_split_hand_worked():
    prev = {"a": 0.0, "b": 1.0, "c": 2.0, "d": 3.0}
    cur = {"a": 2.0, "b": 2.0, "c": 2.5, "d": 3.0}
    s = gain_split(prev, cur)
    # bottom half {a, b}: gains 2 + 1 = 3; top half {c, d}: 0.5 + 0 = 0.5; share 3 / 3.5
    assert s["gain_bottom"] == pytest.approx(3.0) and s["gain_top"] == pytest.approx(0.5)
    assert s["share_bottom"] == pytest.approx(6 / 7) and s["share_top"] == pytest.approx(1 / 7)
    # a loss overall: gains reported, shares not
    assert gain_split(cur, prev)["share_bottom"] is None
    # ties in the ranking are broken by id: the split is reproducible
    tie = gain_split({"x": 1.0, "y": 1.0}, {"x": 3.0, "y": 1.0})
    assert tie["gain_bottom"] == pytest.approx(2.0) and tie["gain_top"] == 0.0


def test_chosen_rewards_skips_rows_without_rewards():
    rows = [{"prompt_id": "a", "responses": [{"reward": 0.2}, {"reward": 0.7}]},
            {"prompt_id": "b", "responses": [{"reward": None}, {"text": "x"}]}]
    assert chosen_rewards(rows) == {"a": 0.7}


def test_heldout_curve_excludes_eval_time(tmp_path):
    run = load_run(write_run(tmp_path / "r", rho=1.0))
    xs, ys = heldout_curve(run)
    assert xs[0] == 0.0 and ys[0] == pytest.approx(0.1)
    # elapsed after iteration 0 = 30 + 0.5 + 12 + 4; minus 4 s of evaluation
    assert xs[1] == pytest.approx(42.5)
    assert len(xs) == 4 and xs == sorted(xs)


def test_report_one_run(tmp_path, capsys):
    run_dir = write_run(tmp_path / "rho0.5", rho=0.5)
    assert cli_main(["report", str(run_dir)]) == 0
    out = run_dir / "report"
    for name in ("reward_per_iteration.png", "time_per_iteration.png", "heldout_vs_time.png", "gain_share.png",
                 "histograms_rho0.5.png"):
        assert (out / name).stat().st_size > 5000, name
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    assert "![Reward per iteration](reward_per_iteration.png)" in md
    splits = gain_splits(load_run(run_dir))
    assert sorted(splits) == [1, 2]
    assert f"| rho0.5 | 1 | 40 | 20 / 0 | {splits[1]['gain_bottom']:.3f} |" in md
    # rho = 0.5 regenerated only the bottom half: the 100% / 0% split is said to be by construction
    assert "gains 0 by construction" in md and "not where training helped" in md
    assert "report written to" in capsys.readouterr().out


def test_report_several_runs_on_one_chart(tmp_path):
    dirs = [write_run(tmp_path / f"r{i}", rho=rho, seed=i) for i, rho in enumerate((0.5, 1.0))]
    out = tmp_path / "cmp"
    assert cli_main(["report", *map(str, dirs), "--out", str(out), "--names", "optune-0.5,full"]) == 0
    md = (out / "report.md").read_text()
    assert "| optune-0.5 |" in md and "| full |" in md
    # rho=0.5 regenerates 40 + 20 + 20 prompts, full 120; generation time scales with it
    assert "| optune-0.5 | 3 |" in md and " | 80 | " in md and " | 120 | " in md
    elapsed = [load_run(d).metrics[-1]["time/elapsed_s"] for d in dirs]
    assert f"| {elapsed[1] / elapsed[0]:.2f}x |" in md
    assert (out / "histograms_full.png").is_file() and (out / "heldout_vs_time.png").is_file()


def _drawn(monkeypatch) -> list:
    """Keep the figures plots._save would close, to read their axes."""
    figs = []
    real = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: (figs.append(fig), real(fig, path))[1])
    return figs


def test_gain_share_draws_an_iteration_where_both_halves_lost(tmp_path, monkeypatch):
    run_dir = tmp_path / "lost"
    for t in (0, 1):  # every prompt regenerated at t = 1, each chosen reward 1 lower
        _write_jsonl(run_dir / f"iter_{t:03d}" / "responses.jsonl",
                     [{"prompt_id": f"p{i}", "responses": [{"text": "a", "reward": i - t, "generated_at": t}]}
                      for i in range(4)])
    _write_jsonl(run_dir / "metrics.jsonl", [{"iteration": 0}, {"iteration": 1}])
    figs = _drawn(monkeypatch)
    assert plots.gain_share([load_run(run_dir)], tmp_path / "g.png") is not None
    ax = figs[0].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["lost\nt=1\nboth halves lost reward"]
    assert sorted(p.get_height() for p in ax.patches) == [-2.0, -2.0]  # signed gains, not dropped
    assert "by construction" not in ax.get_title()  # every prompt was regenerated
    md = markdown([load_run(run_dir)], {}, tmp_path)
    assert "| lost | 1 | 4 | 2 / 2 | -2.000 | -2.000 | – | – | both halves lost reward |" in md


def test_gain_share_title_says_when_the_split_is_by_construction(tmp_path, monkeypatch):
    figs = _drawn(monkeypatch)
    plots.gain_share([load_run(write_run(tmp_path / "half", rho=0.5))], tmp_path / "a.png")
    plots.gain_share([load_run(write_run(tmp_path / "full", rho=1.0))], tmp_path / "b.png")
    assert "0 by construction" in figs[0].axes[0].get_title()
    assert "(reused)" in " ".join(t.get_text() for t in figs[0].axes[0].texts)
    assert "construction" not in figs[1].axes[0].get_title()


def test_gain_share_title_fits_in_the_figure(tmp_path, monkeypatch):
    """One iteration of one run is the narrowest chart: the by-construction note ran past both edges."""
    figs = _drawn(monkeypatch)
    plots.gain_share([load_run(write_run(tmp_path / "one", rho=0.5, iterations=2))], tmp_path / "a.png")
    fig = figs[0]
    fig.canvas.draw()
    box, title = fig.bbox, fig.axes[0].title.get_window_extent()
    assert box.x0 <= title.x0 and title.x1 <= box.x1


def test_report_numbers_never_read_minus_zero(tmp_path):
    run_dir = write_run(tmp_path / "r", rho=1.0, iterations=2)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows[-1]["eval/heldout_reward"] = -1e-6  # a tiny loss, not a sign worth printing
    _write_jsonl(run_dir / "metrics.jsonl", rows)
    md = markdown([load_run(run_dir)], {}, tmp_path)
    assert "-0.000" not in md and "→ 0.000 |" in md


def test_heldout_vs_time_has_no_offset_and_a_padded_range(tmp_path, monkeypatch):
    run_dir = write_run(tmp_path / "r", rho=1.0)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for m in rows:  # noise in the 4th digit of a large reward: an offset axis would show it as a cliff
        m["eval/heldout_reward"] = 12.3456 + 1e-4 * m["iteration"]
    rows[0]["eval/heldout_reward_start"] = 12.3456
    _write_jsonl(run_dir / "metrics.jsonl", rows)
    figs = _drawn(monkeypatch)
    plots.heldout_vs_time([load_run(run_dir)], tmp_path / "h.png")
    ax = figs[0].axes[0]
    figs[0].canvas.draw()
    assert ax.yaxis.get_major_formatter().get_offset() == ""
    lo, hi = ax.get_ylim()
    assert hi - lo >= 0.1 and lo < 12.3456 < hi
    assert ax.get_xlim()[0] == 0 and "minutes from the start" in ax.get_xlabel()


def test_report_tolerates_missing_optional_keys(tmp_path):
    run_dir = tmp_path / "bare"
    _write_jsonl(run_dir / "metrics.jsonl", [{"iteration": 0, "loss": 0.7}, {"iteration": 1, "loss": 0.6}])
    (run_dir / "metrics.jsonl").open("a").write('{"iteration": 2, "lo')  # torn last line
    assert cli_main(["report", str(run_dir)]) == 0
    md = (run_dir / "report" / "report.md").read_text()
    assert "Reward per iteration: not drawn" in md and "| bare | 2 |" in md and "– → –" in md


@pytest.mark.parametrize("setup,args,message", [
    (lambda p: None, [], "run directory not found"),
    (lambda p: p.mkdir(), [], "no finished iteration"),
])
def test_report_bad_input_is_one_line(tmp_path, capsys, setup, args, message):
    setup(tmp_path / "x")
    assert cli_main(["report", str(tmp_path / "x"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("optune report: error:") and message in err


def test_report_several_runs_need_distinct_names(tmp_path, capsys):
    a = write_run(tmp_path / "a" / "run", rho=0.5)
    b = write_run(tmp_path / "b" / "run", rho=1.0)
    assert cli_main(["report", str(a), str(b), "--out", str(tmp_path / "o")]) == 2
    assert "same name" in capsys.readouterr().err
    assert cli_main(["report", str(a), str(b)]) == 2  # nothing made for a report that failed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_report_of_several_runs_goes_beside_them_by_default(tmp_path, capsys, monkeypatch):
    """`optune report runs/A runs/B` as the README shows it: no --out, a new report-<timestamp> folder in runs/."""
    runs = tmp_path / "runs"
    write_run(runs / "A", rho=0.5)
    write_run(runs / "B", rho=1.0, seed=1)
    monkeypatch.chdir(tmp_path)
    assert cli_main(["report", "runs/A", "runs/B"]) == 0
    first = [p for p in runs.iterdir() if p.name.startswith("report-")]
    assert len(first) == 1 and (first[0] / "report.md").is_file()
    assert f"report written to {first[0] / 'report.md'}" in capsys.readouterr().out
    assert cli_main(["report", "runs/A", "runs/B"]) == 0  # a second one, the same second: its own folder
    assert len([p for p in runs.iterdir() if p.name.startswith("report-")]) == 2


def test_model_card_curve_never_reads_minus_zero():
    from optune.report.card import _curve

    rows = _curve([{"iteration": 0, "eval/heldout_reward_start": 0.0, "eval/heldout_reward": -1e-6,
                    "objective/scores": 0.1}])
    assert "-0.0000" not in "\n".join(rows) and "| after iteration 0 (pi_1) | 0.0000 |" in "\n".join(rows)


def test_a_damaged_responses_file_is_named_and_its_readable_lines_used(tmp_path, capsys):
    root = write_run(tmp_path / "run", 0.5)
    path = root / "iter_001" / "responses.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:5]) + b"\xff\xfe garbage\n" + b"".join(lines[6:]))
    capsys.readouterr()
    run = load_run(root)
    assert capsys.readouterr().err.splitlines() == [
        f"{path} is damaged (line 6 is not a JSON record): the report leaves those lines out"]
    assert len(run.responses[1]) == len(lines) - 1


def test_a_damaged_metrics_log_is_read_from_the_iterations_metrics(tmp_path, capsys):
    root = write_run(tmp_path / "run", 0.5)
    rows = [json.loads(line) for line in (root / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        (root / f"iter_{row['iteration']:03d}" / "metrics.json").write_text(json.dumps(row))
    (root / "metrics.jsonl").write_bytes((root / "metrics.jsonl").read_bytes()[:50])
    capsys.readouterr()
    run = load_run(root)
    assert capsys.readouterr().err.splitlines() == [f"{root / 'metrics.jsonl'} is damaged (line 1 is not a JSON "
                                                    "record): reading each iteration's metrics.json instead"]
    assert run.metrics == rows
    (root / "iter_001" / "metrics.json").write_text("{")
    assert cli_main(["report", str(root)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith(f"optune report: error: {root / 'iter_001' / 'metrics.json'} is damaged (")
