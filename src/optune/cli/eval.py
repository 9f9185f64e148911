"""`optune eval`: pairwise evaluation of a checkpoint (or stored outputs) against a baseline.

Writes into --out: the generated responses (reused on rerun), the judge cache, judgments.jsonl
(one line per prompt), summary.json (Win Score, counts, 95% interval, settings) and optionally
AlpacaEval's model_outputs.json. The judge API key is read from the named environment variable.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from optune.data.prompts import FORMATS, read_prompts
from optune.errors import UserError
from optune.eval.export import export_alpaca_eval, write_json_atomic
from optune.eval.generate import GenerationSettings
from optune.eval.generate import validate as validate_settings
from optune.eval.pairwise import combine_orders, summarize
from optune.prompt import Prompt
from optune.store import write_jsonl


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompts", required=True, help=f"prompt set file (formats: {', '.join(FORMATS)})")
    parser.add_argument("--format", default="auto", help="prompt file format (default: detect)")
    parser.add_argument("--limit", type=int, help="evaluate only the first N prompts")
    parser.add_argument("--out", required=True, help="output folder (rerun with the same folder to resume)")
    a = parser.add_mutually_exclusive_group(required=True)
    a.add_argument("--model", help="checkpoint of the evaluated system (responses generated here)")
    a.add_argument("--outputs", help="stored outputs of the evaluated system (AlpacaEval json or JSONL)")
    b = parser.add_mutually_exclusive_group(required=True)
    b.add_argument("--baseline-model", help="checkpoint of the baseline system")
    b.add_argument("--baseline-outputs", help="stored baseline outputs, e.g. alpaca_eval/*/model_outputs.json")
    parser.add_argument("--name", help="generator name for the export (default: the model folder name)")
    g = parser.add_argument_group("generation")
    g.add_argument("--max-new-tokens", type=int, default=256)
    g.add_argument("--temperature", type=float, default=0.7)
    g.add_argument("--top-p", type=float, default=0.9)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--batch-size", type=int, default=8)
    g.add_argument("--device", default="cpu")
    j = parser.add_argument_group("judge")
    j.add_argument("--judge", choices=("llm", "reward"), default="llm")
    j.add_argument("--judge-base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    j.add_argument("--judge-model", help="judge model name as the server knows it")
    j.add_argument("--judge-api-key-env", default="OPENAI_API_KEY", help="environment variable holding the key")
    j.add_argument("--judge-concurrency", type=int, default=4)
    j.add_argument("--judge-retries", type=int, default=5)
    j.add_argument("--judge-max-tokens", type=int, default=256)
    j.add_argument("--judge-timeout", type=float, default=120.0)
    j.add_argument("--judge-constrained", choices=("none", "structured_outputs", "guided_regex"), default="none",
                   help="force the score line by constrained decoding (vLLM servers)")
    j.add_argument("--judge-cache", help="judge cache file (default: OUT/judge_cache.jsonl)")
    j.add_argument("--reward", help="reward judge: verifiable, hf:PATH (reward model), MODULE:FUNCTION or "
                   "FILE.py:FUNCTION called as fn(prompts, responses) -> list[float], or FILE.yaml: a run config's "
                   "reward section (any backend, e.g. remote or llm with their settings)")
    j.add_argument("--reward-margin", type=float, default=0.0, help="reward gap counted as a tie")
    parser.add_argument("--export-alpaca-eval", action="store_true",
                        help="also write OUT/model_outputs.json for the alpaca_eval tool")


def reward_config(spec: str):
    """--reward as a RewardConfig: "verifiable", "hf:PATH" (a reward model), "MODULE:FUNCTION" /
    "FILE.py:FUNCTION", or "FILE.yaml" / "FILE.yml" holding the fields of a run config's `reward:` section."""
    from optune.choices import RewardBackendName
    from optune.config.run import load_dataclass
    from optune.reward.config import RewardConfig, validate_reward

    if spec.endswith((".yaml", ".yml")):
        cfg = load_dataclass(RewardConfig, spec)
        validate_reward(cfg)
        return cfg
    if spec == "verifiable":
        return RewardConfig(backend=RewardBackendName.VERIFIABLE)
    if spec.startswith("hf:"):
        return RewardConfig(backend=RewardBackendName.HF, model=spec[3:])
    return RewardConfig(backend=RewardBackendName.CALLABLE, function=spec)


def _build_judge(args, out: Path):
    if args.judge == "reward":
        from optune.eval.reward_judge import RewardJudge
        from optune.reward.backends import make_reward

        if not args.reward:
            raise UserError("--judge reward needs --reward (verifiable, hf:PATH, MODULE:FUNCTION, FILE.py:FUNCTION "
                            "or FILE.yaml)")
        return RewardJudge(make_reward(reward_config(args.reward)), args.reward_margin), {
            "kind": "reward", "reward": args.reward, "margin": args.reward_margin}
    from optune.eval.llm_judge import LLMJudge, LLMJudgeConfig
    from optune.store.judge_cache import JudgmentCache

    if not args.judge_base_url or not args.judge_model:
        raise UserError("--judge llm needs --judge-base-url and --judge-model")
    config = LLMJudgeConfig(
        base_url=args.judge_base_url, model=args.judge_model, api_key_env=args.judge_api_key_env,
        max_tokens=args.judge_max_tokens, concurrency=args.judge_concurrency, max_retries=args.judge_retries,
        timeout_s=args.judge_timeout, constrained=args.judge_constrained)
    cache = JudgmentCache(args.judge_cache or out / "judge_cache.jsonl")
    return LLMJudge(config, cache), {"kind": "llm", **config.public()}


def _stored(args, side: str, prompts: list[Prompt]) -> tuple[list[str], dict] | None:
    """The stored outputs of a side (read and matched now, before --out exists), or None for a checkpoint."""
    from optune.eval.systems import read_outputs

    model = args.model if side == "a" else args.baseline_model
    outputs = args.outputs if side == "a" else args.baseline_outputs
    if outputs:
        return read_outputs(outputs, prompts), {"outputs": str(Path(outputs).resolve())}
    if not (Path(model) / "config.json").is_file():
        raise UserError(f"not a model checkpoint (no config.json): {model}")
    from optune.models.policy import check_model_dir

    check_model_dir(Path(model), f"{'--model' if side == 'a' else '--baseline-model'} {model}")
    return None


def _generated(args, side: str, prompts: list[Prompt], out: Path) -> tuple[list[str], dict]:
    from optune.eval.generate import CheckpointGenerator, GenerationSettings
    from optune.eval.systems import generated_outputs, weights_fingerprint

    model = args.model if side == "a" else args.baseline_model
    settings = GenerationSettings(args.max_new_tokens, args.temperature, args.top_p, args.seed, args.batch_size)
    source = {"model": str(Path(model).resolve()), "weights": weights_fingerprint(Path(model)),
              "generation": settings.public()}
    responses = generated_outputs(out / f"responses_{side}.json", source, prompts,
                                  lambda: CheckpointGenerator(model, settings, args.device))
    return responses, source


def _progress(done: int, total: int) -> None:
    print(f"\rjudged {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)


def main(args) -> int:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out must be a folder, and {out} is a file")
    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be >= 1")
    prompts = read_prompts(args.prompts, args.format, args.limit)
    judge, judge_info = _build_judge(args, out)  # checks judge settings before any generation
    validate_settings(GenerationSettings(args.max_new_tokens, args.temperature, args.top_p, args.seed, args.batch_size))
    stored = {side: _stored(args, side, prompts) for side in ("a", "b")}
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)  # only now: every input has been checked
    except OSError as err:
        raise UserError(f"--out {out}: cannot create it: {err.strerror}") from None
    try:
        return _evaluate(args, out, prompts, judge, judge_info, stored)
    except BaseException:
        if created and not any(out.iterdir()):
            out.rmdir()  # failed before anything worth keeping (e.g. the judge is unreachable)
        raise


def _evaluate(args, out: Path, prompts: list[Prompt], judge, judge_info: dict, stored: dict) -> int:
    """Generate what is not stored, judge, write judgments.jsonl and summary.json."""
    answers_a, source_a = stored["a"] or _generated(args, "a", prompts, out)
    answers_b, source_b = stored["b"] or _generated(args, "b", prompts, out)
    if args.export_alpaca_eval:
        name = args.name or Path(args.model or args.outputs).name
        export_alpaca_eval(out / "model_outputs.json", prompts, answers_a, name)
    judgments = judge.compare(prompts, answers_a, answers_b, progress=_progress)
    for j in judgments:
        j["combined"] = combine_orders(j["first"], j["second"]) if j["first"] and j["second"] else None
    write_jsonl(out / "judgments.jsonl", judgments)
    if judgments and not any(j["combined"] for j in judgments):
        sample = judgments[0].get("reply_first") or ""
        raise UserError(f"no judge reply could be parsed for any of {len(judgments)} prompts (first reply: "
                        f"{sample[:80]!r}); replies kept in {out / 'judgments.jsonl'}; "
                        "a small judge may need --judge-constrained")
    summary = summarize([j["combined"] for j in judgments], seed=args.seed)
    summary.update({"prompts": str(Path(args.prompts).resolve()), "n_prompts": len(prompts),
                    "evaluated": source_a, "baseline": source_b, "judge": judge_info})
    write_json_atomic(out / "summary.json", summary)
    low, high = summary["ci95"]
    print(f"win score {summary['win_score']:.1f} [95% CI {low:.1f}, {high:.1f}] "
          f"(win {summary['n_win']} / tie {summary['n_tie']} / lose {summary['n_lose']}, n={summary['n']}, "
          f"unparseable {summary['n_unjudged']}) -> {out / 'summary.json'}")
    return 0
