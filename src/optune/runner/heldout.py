"""Step 6 of the loop: the held-out evaluation of a policy, and its health.

One greedy response per held-out prompt is scored by the run's reward (the curve every benchmark
compares), and, because a reward can be won without answering better, the same responses give the
health of optune.runner.health: length, EOS rate, repetition, the built-in task's pass rate per constraint kind,
and how far the policy moved from the reference and from pi_0 (mean log-ratio on these responses).
Responses and their token ids are stored (iter_t/heldout*.jsonl) in resumable batches.
"""

from __future__ import annotations

from optune.clock import Clock
from optune.distributed import batched
from optune.models.policy import load_model
from optune.pairs import parts_at
from optune.prompt import Prompt
from optune.reward.backends import scored_parts
from optune.runner import health
from optune.runner.context import Context
from optune.runner.metrics import Heldout, IterationMetrics
from optune.tasks import verifiable
from optune.training.logps import responses_logps


def evaluate_heldout(ctx: Context, t: int, model, clock: Clock, start: bool = False) -> Heldout | None:
    """The held-out metrics of `model` (pi_t when `start`, else pi_{t+1}): the reward of its greedy answers and
    their health; None without held-out prompts."""
    if not (ctx.cfg.eval.heldout and ctx.heldout):
        return None

    def work(prompts: list[Prompt]) -> list[dict]:
        out = ctx.generator.generate(model, [p.token_ids() for p in prompts], n=1,
                                     greedy=ctx.cfg.generation.eval_greedy, seed=ctx.cfg.seed,
                                     path=ctx.policy_path(t, trained=not start))
        texts = [s[0].text for s in out]
        scores, parts = scored_parts(ctx.reward, prompts, texts, [s[0].eos for s in out],
                                     ctx.cfg.reward.missing_eos_penalty)
        return [{"prompt_id": p.id, "prompt": p.text, "response": s[0].text, "eos": s[0].eos, "reward": sc,
                 "ids": s[0].ids, **({"logp": s[0].logp} if s[0].logp is not None else {}),
                 **({"parts": parts_at(parts, k)} if parts else {})}
                for k, (p, s, sc) in enumerate(zip(prompts, out, scores))]

    with clock.phase("eval"), ctx.progress(f"iter {t} held-out", len(ctx.heldout)) as bar:
        rows = batched(ctx.dist, ctx.store, ctx.store.heldout_dir(t, start), ctx.heldout,
                       ctx.cfg.generation.batch_size, work, bar)
        # logp (for the KL) stays in the batch files: its last digits follow the thread count, the answers do not
        ctx.store.write_jsonl(ctx.store.heldout(t, start), [{k: v for k, v in r.items() if k != "logp"} for r in rows])
        texts = [r["response"] for r in rows]
        stats = health.response_stats(texts, [len(r.get("ids", [])) for r in rows], [r["eos"] for r in rows])
        kl = {}
        if not start and ctx.cfg.eval.kl and all("ids" in r for r in rows) and not ctx.dist.active:
            kl = movement(ctx, t, model, rows)
    return Heldout(sum(r["reward"] for r in rows) / len(rows), stats, constraint_pass(ctx.heldout, rows), kl)


def constraint_pass(prompts: list[Prompt], rows: list[dict]) -> dict[str, float]:
    """On the built-in task, each constraint kind's pass rate on the answers of `rows`; {} elsewhere."""
    if not all("constraints" in p.fields for p in prompts):
        return {}
    records = {p.id: p.record() for p in prompts}
    return verifiable.pass_rates([records[r["prompt_id"]] for r in rows], [r["response"] for r in rows])


def movement(ctx: Context, t: int, model, rows: list[dict]) -> dict[str, float]:
    """Mean log-ratio of pi_{t+1} (`model`) to this iteration's reference and to pi_0, on its held-out responses
    (optune.runner.health.log_ratio); one forward pass per other policy, loading each from its checkpoint once.
    The policy's own log-probs come from generation where the generator gave them (the decode loop's raw
    log-probs of its greedy tokens: the same numbers a forward pass gives, to float rounding), saving that pass.
    The other policies' passes run in training's precision: under bf16 autocast they take half the time, and the
    estimate moved by 0.02 of 31.9 nats on the default run's final answers (docs/benchmarks.md)."""
    by_id = {p.id: p for p in ctx.heldout}
    prompts, responses = [by_id[r["prompt_id"]].token_ids() for r in rows], [r["ids"] for r in rows]
    pad, size, bf16 = ctx.tokenizer.pad_token_id, ctx.cfg.train.batch_size * 2, ctx.cfg.train.use_bf16

    def logps(m) -> list[float]:
        return responses_logps(m, prompts, responses, pad, size, bf16)

    mine = [r["logp"] for r in rows] if all("logp" in r for r in rows) else logps(model)
    reference = ctx.policy_path(t) if ctx.cfg.loss.reference.is_current(t) else ctx.initial_model_path
    paths = {"reference": reference, "initial": ctx.initial_model_path}
    theirs = {path: logps(load_model(path, ctx.cfg.policy.dtype, ctx.cfg.policy.device))
              for path in set(paths.values())}
    return {f"kl_{name}": health.log_ratio(mine, theirs[path]) for name, path in paths.items()}


def health_warnings(metrics: IterationMetrics, previous: IterationMetrics | None) -> list[str]:
    """optune.runner.health.warnings for an iteration's held-out metrics against the policy it started from: the
    previous iteration's, or (iteration 0) the starting policy's."""
    before = metrics.start if previous is None else previous.heldout
    if metrics.heldout is None:
        return []
    return health.warnings(before.health() if before is not None else {}, metrics.heldout.health())
