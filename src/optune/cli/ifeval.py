"""`optune ifeval`: IFEval accuracies of one or more checkpoints (or stored responses), and paired differences.

Each --model answers IFEval's prompts greedily through its chat template with optune's decode loop; each
--responses file is scored as it is (e.g. the GPT-4 responses published with IFEval). Writes into --out:
responses_<name>.json per model (reused on rerun with the same model and settings, saved after every batch),
scores_<name>.jsonl (per prompt: strict and loose results per instruction) and results.json (the four
accuracies per system, and each system minus the first with a paired bootstrap 95% interval over prompts).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from optune.errors import UserError
from optune.eval.ifeval import HUB_ID, METRIC_TITLES, METRICS, IFEvalItem, PromptScore

ROW = "{:<28}" + "{:>21}" * 4 + "{:>6}"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", default=[], metavar="CKPT",
                        help="checkpoint folder to evaluate, or a built-in policy (embedded:smollm2-135m-instruct, "
                        "the default run's pi_0); repeat for several; each is compared with the first")
    parser.add_argument("--responses", action="append", default=[], metavar="FILE",
                        help="stored responses to score (JSONL rows with prompt or key, and response; repeatable)")
    parser.add_argument("--data", default=HUB_ID,
                        help=f"IFEval's input_data.jsonl, or a hub dataset id where a hub is reachable "
                        f"(default {HUB_ID})")
    parser.add_argument("--out", required=True, help="output folder (rerun with the same folder to resume)")
    parser.add_argument("--limit", type=int, help="only the first N prompts")
    parser.add_argument("--max-new-tokens", type=int, default=1280,
                        help="token budget per response (default 1280, lm-eval's IFEval setting)")
    parser.add_argument("--batch-size", type=int, default=8, help="prompts per generation batch")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples of the prompts")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")


def _check_args(args) -> None:
    if not args.model and not args.responses:
        raise UserError("give at least one --model or --responses")
    for name, low in (("limit", 1), ("max_new_tokens", 1), ("batch_size", 1), ("resamples", 1), ("seed", 0)):
        value = getattr(args, name)
        if value is not None and value < low:
            raise UserError(f"--{name.replace('_', '-')} must be >= {low}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out must be a folder, and {out} is a file")
    # a built-in policy (the embedded SmolLM2, pi_0 of the default run) is its cached checkpoint, made once
    args.model = [_builtin(m) if m.startswith(("embedded:", "tiny:")) else m for m in args.model]
    for model in args.model:
        if not Path(model).is_dir():
            raise UserError(f"--model {model}: no such folder")
        from optune.models.policy import check_model_dir

        check_model_dir(Path(model), f"--model {model}")


def _builtin(spec: str) -> str:
    from optune.models.policy import check_cache, check_model_spec
    from optune.runner.prepare import resolve_policy

    check_model_spec(spec, "--model")
    check_cache(spec)  # a built-in model not yet built needs a writable cache, said before it is tried
    return resolve_policy(spec)


def system_names(paths: list[str]) -> list[str]:
    """A file-name-safe, unique name per system (its folder or file name)."""
    names: list[str] = []
    for path in paths:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).resolve().name.removesuffix(".jsonl")) or "system"
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return names


def main(args) -> int:
    from optune.eval.ifeval import check_instructions, load_items, read_responses

    _check_args(args)
    items = load_items(args.data, args.limit)
    check_instructions(items)  # also: the checkers are installed, before any model loads
    stored = {path: read_responses(path, items) for path in args.responses}
    device = _device(args.device) if args.model else "cpu"
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)  # only now: every input has been checked
    except OSError as err:
        raise UserError(f"--out {out}: cannot create it: {err.strerror}") from None
    systems = [*args.model, *args.responses]
    results = []
    for path, name in zip(systems, system_names(systems)):
        if path in stored:
            responses, source = stored[path], {"responses": str(Path(path).resolve())}
        else:
            responses, source = _generated(args, Path(path), name, items, out, device)
        results.append(_score(name, source, items, responses, out))
    summary = _summary(args, items, results)
    from optune.eval.export import write_json_atomic

    write_json_atomic(out / "results.json", summary)
    print(table(summary))
    print(f"-> {out / 'results.json'}")
    return 0


def _device(spec: str) -> str:
    from optune.models.policy import resolve_device

    return resolve_device(spec)


def _generated(args, path: Path, name: str, items: list[IFEvalItem], out: Path, device: str):
    from optune.eval.ifeval_generate import GreedyGenerator, GreedySettings, generate_responses, model_source

    settings = GreedySettings(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, device=device)
    source = model_source(path, settings)
    responses = generate_responses(out / f"responses_{name}.json", source, items,
                                   lambda: GreedyGenerator(path, settings), args.batch_size, label=f"{name}: ")
    return responses, source


def _score(name: str, source: dict, items: list[IFEvalItem], responses: list[str], out: Path) -> dict:
    from optune.eval.ifeval import accuracies, score
    from optune.store import atomic_write_text

    scores = score(items, responses)
    atomic_write_text(out / f"scores_{name}.jsonl",
                      "".join(json.dumps(s.public()) + "\n" for s in scores))
    return {"name": name, "source": source, "accuracies": accuracies(scores), "scores": scores}


def _summary(args, items: list[IFEvalItem], results: list[dict]) -> dict:
    from optune.eval.ifeval import compare

    first: list[PromptScore] = results[0]["scores"]
    comparisons = [{"a": r["name"], "b": results[0]["name"],
                    **{m: d.public() for m, d in compare(r["scores"], first, args.resamples, args.seed).items()}}
                   for r in results[1:]]
    data = str(Path(args.data).resolve()) if Path(args.data).exists() else args.data
    return {"benchmark": "IFEval", "data": data, "n_prompts": len(items),
            "n_instructions": sum(len(i.instruction_id_list) for i in items),
            "generation": {"max_new_tokens": args.max_new_tokens, "decoding": "greedy", "chat_template": True},
            "bootstrap": {"resamples": args.resamples, "seed": args.seed, "level": 0.95},
            "systems": [{k: v for k, v in r.items() if k != "scores"} for r in results],
            "comparisons": comparisons}


def table(summary: dict) -> str:
    """The accuracies (percent) of every system, then each difference from the first with its 95% interval."""
    lines = [f"IFEval: {summary['n_prompts']} prompts, {summary['n_instructions']} instructions",
             ROW.format("system", *(METRIC_TITLES[m] for m in METRICS), "n")]
    for s in summary["systems"]:
        lines.append(ROW.format(s["name"][:27], *(f"{s['accuracies'][m]:.2f}" for m in METRICS),
                                summary["n_prompts"]))
    if summary["comparisons"]:
        lines.append("difference, points [paired bootstrap 95% interval]")
        for c in summary["comparisons"]:
            cells = [f"{c[m]['diff']:+.2f} [{c[m]['ci95'][0]:+.2f}, {c[m]['ci95'][1]:+.2f}]" for m in METRICS]
            lines.append(ROW.format(f"{c['a']} - {c['b']}"[:27], *cells, ""))
    return "\n".join(line.rstrip() for line in lines)
