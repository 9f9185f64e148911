"""The OPTune loop (Algorithm 1 of the paper; rho = 1 is Algorithm 2, fully online iterative DPO).

1. Iteration 0: sample two responses for every prompt from pi_0, score them, train pi_0 -> pi_1.
   It is the same for every variant, so a run may start from another run's finished iteration 0.
2. Iteration t >= 1: rank prompts by the reward of their current chosen response (lowest first) and pick
   ceil(rho * |P|) of them ("optune"), the same count around the median ("middle") or at random ("random"),
   or all ("full").
3. Regenerate two responses with pi_t for the picked prompts only; every other prompt keeps its stored
   responses and rewards. Score only the new responses.
4. Build pairs for all prompts: chosen = higher reward, rejected = lower; pairs with equal rewards carry no
   preference and are dropped (by default) and counted.
5. Train pi_t -> pi_{t+1} with DPO (Eq. 5) or wDPO (Eq. 6), pi_t frozen as the reference (or pi_0).
6. Score one greedy response per held-out prompt from pi_{t+1}: the curve every benchmark compares, with
   the policy's health on the same responses (length, EOS, repetition, KL; optune.runner.heldout) so that a
   reward won by answering less shows in the log. eval.early_stop ends the run when the held-out reward
   has fallen for that many iterations; the best iteration is named at the end.

Steps 2-3 are the context's pair source (optune.pairs.online); offline DPO swaps in a fixed set of pairs
(optune.pairs.offline) and the rest is the same. Step 5 is the context's trainer (optune.training.iteration),
with the loss the run built once and the reference log-probs of optune.training.reference. Every step writes
its results atomically to the run directory (optune.store) before the next one starts, so a run killed at any
moment resumes where it stopped without redoing finished batches.
"""

from __future__ import annotations

import dataclasses
import gc

from optune.clock import Clock
from optune.errors import UserError
from optune.formatting import num, plural
from optune.generation.base import pause, release
from optune.models.policy import load_model
from optune.pairs import Pair, State, build_pairs, chosen_reward, state_from_rows, state_rows
from optune.runner import health
from optune.runner.context import Context
from optune.runner.heldout import evaluate_heldout, health_warnings
from optune.runner.metrics import PHASES, IterationMetrics, heldout_curve, start_reward, work_seconds
from optune.store import WriteError, damage, read_json, read_jsonl
from optune.training.iteration import load_checkpoint


def pairs_for(ctx: Context, t: int, state: State) -> tuple[list[Pair], int]:
    """Step 4: this iteration's pairs (and the number of ties), recorded in iter_t/pairs.jsonl."""
    pairs, rows, ties = build_pairs(ctx.pool.at(t), state, ctx.loss.weights, labelled=ctx.source.labelled,
                                    drop_ties=ctx.cfg.loss.drop_ties)
    ctx.store.write_jsonl(ctx.store.pairs(t), rows)
    return pairs, ties


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def iteration_metrics(ctx: Context, t: int, state: State, pairs: list[Pair], ties: int, n_picked: int,
                      train: dict, clock: Clock) -> IterationMetrics:
    """The iteration's record without its held-out metrics: what it trained on, and its time split (elapsed
    counts every earlier iteration's work, read from its metrics.json)."""
    prompts = ctx.pool.at(t)
    chosen = [chosen_reward(state[p.id]) for p in prompts]
    rejected = [min(r.reward for r in state[p.id]) for p in prompts]
    seconds = {k: clock.seconds.get(k, 0.0) for k in PHASES}
    before = ctx.store.read_finished(t - 1, ctx.store.metrics(t - 1), read_json) if t else {}
    previous = before.get("time/elapsed_s", 0.0)
    return IterationMetrics(
        iteration=t, train=train, scores_chosen=_mean(chosen),
        scores_margin=_mean(c - r for c, r in zip(chosen, rejected)), scores_all=_mean(chosen + rejected),
        contain_eos=_mean(r.eos for p in prompts for r in state[p.id]),
        pairs_trained=len(pairs), ties=ties, dropped_ties=ties if ctx.cfg.loss.drop_ties else 0,
        n_regenerated=n_picked, frac_regenerated=n_picked / len(prompts), seconds=seconds,
        elapsed_s=previous + work_seconds(seconds))


def start_policy(ctx: Context, t: int):
    """pi_t, the policy iteration t starts from: pi_0, or the checkpoint iteration t - 1 saved."""
    if t == 0:
        return load_model(str(ctx.initial_model_path), ctx.cfg.policy.dtype, ctx.cfg.policy.device)
    path = ctx.store.checkpoint(t - 1)
    return ctx.store.read_finished(t - 1, path, lambda p: load_checkpoint(p, ctx.cfg.policy))


def saved_times(ctx: Context, t: int) -> dict | None:
    """The seconds iteration t spent before a resume; a damaged times.json is dropped (only the time metrics
    lose what it held)."""
    path = ctx.store.times(t)
    try:
        saved = read_json(path)
        if not isinstance(saved, dict) or not all(isinstance(v, int | float) for v in saved.values()):
            raise ValueError("not seconds per phase")
        return saved
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        ctx.store.discard(path, damage(err), "timing this iteration from now (its time metrics count less)")
        return None


def run_iteration(ctx: Context, t: int, state: State, model) -> tuple[State, object, IterationMetrics]:
    """Steps 2-6 of iteration t on pi_t (`model`): the new state, pi_{t+1} and the iteration's metrics.

    Its metrics.json, written last, marks the iteration finished.
    """
    clock = Clock(saved_times(ctx, t))
    state, n_picked = ctx.source.responses(t, state, model, clock)
    prompts = ctx.pool.at(t)
    # only this iteration's prompts carry over: what a resumed run reads back from responses.jsonl
    state = {p.id: state[p.id] for p in prompts}
    with clock.phase("bookkeeping"):
        for path in (ctx.store.responses(t), ctx.store.pairs(t)):
            ctx.store.check_rewritten(path)
        ctx.store.write_jsonl(ctx.store.responses(t), state_rows(prompts, state))
        pairs, ties = pairs_for(ctx, t, state)
        ctx.store.write_json(ctx.store.times(t), clock.seconds)
    start = evaluate_heldout(ctx, t, model, clock, start=True) if t == 0 else None
    pause(ctx.generator)  # sampling and training never hold memory at once (a vllm engine kept on a CPU aside)
    model, train = ctx.trainer(t, pairs, model, clock)
    ctx.store.write_json(ctx.store.times(t), clock.seconds)
    heldout = evaluate_heldout(ctx, t, model, clock)
    metrics = dataclasses.replace(iteration_metrics(ctx, t, state, pairs, ties, n_picked, train, clock),
                                  heldout=heldout, start=start)
    ctx.store.write_metrics(t, metrics.to_log())
    return state, model, metrics


def tie_warning(ctx: Context, m: IterationMetrics) -> str:
    return (f"every pair tied (all {m.ties} dropped: nothing trained); does the "
            f"reward ({ctx.cfg.reward.backend}) give every response the same score? A second such iteration in a "
            "row stops the run")


def summary_line(m: IterationMetrics, generated: bool = True) -> str:
    """The iteration's log line; `generated`: False for fixed pairs (optune dpo), which regenerate nothing."""
    heldout = f" heldout {num(m.heldout.reward)}" if m.heldout is not None else ""
    if m.heldout is not None and "length_words" in m.heldout.stats:
        heldout += f" ({plural(round(m.heldout.stats['length_words']), 'word')}"
        heldout += f", kl {num(m.heldout.kl['kl_reference'], 2)})" if "kl_reference" in m.heldout.kl else ")"
    # an iteration whose pairs were all ties trains nothing, so it has no loss
    loss = (f" | loss {num(m.train['loss'])} acc {m.train['rewards/accuracies']:.2f}" if m.pairs_trained
            else " | no training")
    regenerated = f" regenerated {m.n_regenerated} ({m.frac_regenerated:.0%}) |" if generated else ""
    gen = f" gen {m.seconds.get('generation', 0.0):.0f}s" if generated else ""
    return (f"iter {m.iteration}:{regenerated} reward chosen {num(m.scores_chosen)} | pairs "
            f"{m.pairs_trained} (ties dropped {m.dropped_ties}){loss}{heldout} |{gen} reward "
            f"{m.seconds.get('rewarding', 0.0):.1f}s train {m.seconds.get('training', 0.0):.0f}s ({m.work_s:.0f}s)")


def curve_with_start(results: list[IterationMetrics]) -> list[float]:
    """pi_0's held-out reward (where measured) and each finished iteration's: what early stop watches."""
    start = start_reward(results)
    return ([start] if start is not None else []) + [reward for _, reward in heldout_curve(results)]


def run(ctx: Context, log=print) -> list[IterationMetrics]:
    """Run (or resume) every unfinished iteration; returns all iterations' metrics.

    A write the file system refuses (disk full, read-only) stops the run with one line: every file written
    so far is complete, so it resumes once the cause is fixed.
    """
    try:
        return _run(ctx, log)
    except WriteError as err:
        raise WriteError(f"{err}; the run stopped with every file complete: resume it with --resume "
                         f"{ctx.store.root} once that is fixed") from err


def _run(ctx: Context, log) -> list[IterationMetrics]:
    ctx.store.rebuild_metrics_log()  # a kill after an iteration's metrics.json may have cut this short
    state: State = {}
    results: list[IterationMetrics] = []
    model = None
    for t in range(ctx.cfg.iterations):
        # a function of finished iterations, so a resumed run stops where the uninterrupted one did
        if health.stop_early(curve_with_start(results), ctx.cfg.eval.early_stop):
            if ctx.dist.is_main:
                log(f"early stop: the held-out reward fell at each of the last "
                    f"{plural(ctx.cfg.eval.early_stop, 'iteration')} (eval.early_stop); "
                    f"{plural(ctx.cfg.iterations - t, 'iteration')} not run")
            break
        if ctx.store.finished(t):
            state = ctx.store.read_finished(t, ctx.store.responses(t), lambda p: state_from_rows(read_jsonl(p)))
            results.append(IterationMetrics.from_log(ctx.store.read_finished(t, ctx.store.metrics(t), read_json)))
            continue
        if model is None:  # the first unfinished iteration: later ones continue from what it trained
            model = start_policy(ctx, t)
        state, model, metrics = run_iteration(ctx, t, state, model)
        previous = results[-1] if results else None
        if ctx.dist.is_main:
            log(summary_line(metrics, ctx.source.generates))
            for warning in health_warnings(metrics, previous):
                log(f"iter {t} warning: {warning}")
            if metrics.all_tied:
                log(f"iter {t} warning: {tie_warning(ctx, metrics)}")
        results.append(metrics)
        if ctx.tracker is not None:
            ctx.tracker.log(metrics.to_log(), step=t)
        if previous is not None and previous.all_tied and metrics.all_tied:
            release(ctx.generator)
            raise UserError(f"stopped after iteration {t}: every pair tied in iterations {t - 1} and {t}, so "
                            "nothing was trained; the reward gives both responses of a prompt the same score "
                            "(fix the reward, then resume the run)")
        gc.collect()
    release(ctx.generator)
    return results
