"""`optune reward train` and `optune reward eval`.

    optune reward train --config configs/reward-hh.yaml output_dir=/work/rm-minilm lr=3e-5
    optune reward train --resume /work/rm-minilm
    optune reward train --help-config
    optune reward eval --model /work/rm-minilm --data ../shared/data/hh-rlhf/helpful-base/test.jsonl.gz
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from optune.errors import UserError


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="reward_command", metavar="ACTION", required=True)
    train = sub.add_parser("train", help="train a Bradley-Terry reward model on preference pairs")
    train.add_argument("--config", help="YAML file with RewardTrainConfig keys (configs/reward-hh.yaml)")
    train.add_argument("--resume", metavar="OUTPUT_DIR", help="continue an interrupted run from its directory")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. epochs=2")
    train.add_argument("--help-config", action="store_true", help="list every config key with its meaning")
    ev = sub.add_parser("eval", help="pairwise accuracy, mean margin and accuracy by margin bucket")
    ev.add_argument("--model", required=True, help="trained reward model directory")
    ev.add_argument("--data", required=True, nargs="+", help="held-out preference files (or hf:NAME[:SPLIT])")
    ev.add_argument("--batch-size", type=int, default=16)
    ev.add_argument("--max-pairs", type=int, default=None, help="evaluate only the first N pairs")
    ev.add_argument("--output", help="also write the metrics as JSON to this file")


def main(args: argparse.Namespace) -> int:
    if args.reward_command == "train":
        return _train(args)
    return _eval(args)


def _train(args: argparse.Namespace) -> int:
    from optune.config import describe
    from optune.reward.config import RewardTrainConfig, load_reward_config

    if args.help_config:
        print("\n".join(describe(RewardTrainConfig)))
        return 0
    from optune.reward.training import config_for_resume, train_reward_model

    if args.resume:
        if args.config or args.overrides:
            raise UserError("--resume takes the config saved in the run directory; drop --config and overrides")
        cfg = config_for_resume(args.resume)
    else:
        cfg = load_reward_config(args.config, args.overrides)
    result = train_reward_model(cfg, resume=bool(args.resume), log=lambda msg: print(msg, file=sys.stderr))
    print(json.dumps(result, indent=2))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from optune.reward.evaluation import evaluate_reward_model, format_report

    if args.batch_size <= 0:
        raise UserError("--batch-size must be positive")
    if args.max_pairs is not None and args.max_pairs <= 0:
        raise UserError("--max-pairs must be positive")
    out_dir = os.path.dirname(os.path.abspath(args.output)) if args.output else None
    if out_dir and not os.path.isdir(out_dir):  # checked before the evaluation, not after it
        raise UserError(f"output directory does not exist: {out_dir}")
    result = evaluate_reward_model(args.model, args.data, args.batch_size, args.max_pairs)
    print(format_report(result))
    if args.output:
        from optune.store import write_json

        write_json(args.output, result)
    return 0
