"""`optune reward train`, `optune reward eval` and `optune reward serve`.

    optune reward train --config configs/reward-hh.yaml output_dir=/work/rm-minilm lr=3e-5
    optune reward train --resume /work/rm-minilm
    optune reward train --help-config
    optune reward eval --model /work/rm-minilm --data ../shared/data/hh-rlhf/helpful-base/test.jsonl.gz
    optune reward serve --model /work/rm-minilm --port 8000   # for reward.backend=remote reward.route=optune
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from optune.errors import UserError
from optune.store import atomic_write_text


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="reward_command", metavar="ACTION", required=True)
    train = sub.add_parser("train", help="train a Bradley-Terry reward model on preference pairs")
    train.add_argument("--config", "-c", help="YAML file with RewardTrainConfig keys (configs/reward-hh.yaml)")
    train.add_argument("--resume", metavar="OUTPUT_DIR", help="continue an interrupted run from its directory")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. epochs=2")
    train.add_argument("--help-config", action="store_true", help="list every config key with its meaning")
    ev = sub.add_parser("eval", help="pairwise accuracy, mean margin and accuracy by margin bucket")
    ev.add_argument("--model", required=True, help="trained reward model directory")
    ev.add_argument("--data", required=True, nargs="+", help="held-out preference files (or hf:NAME[:SPLIT])")
    ev.add_argument("--batch-size", type=int, default=16)
    ev.add_argument("--max-pairs", type=int, default=None, help="evaluate only the first N pairs")
    ev.add_argument("--output", help="also write the metrics as JSON to this file")
    srv = sub.add_parser("serve", help="serve a reward model over HTTP (the minimal protocol of docs/rewards.md)")
    srv.add_argument("--model", required=True, help="reward model directory (scored as reward.backend=hf does)")
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    srv.add_argument("--port", type=int, default=8000, help="port (0: any free one; the URL is printed)")
    srv.add_argument("--batch-size", type=int, default=16, help="responses per forward batch")
    srv.add_argument("--api-key-env", help="environment variable holding a key that clients must send")


def main(args: argparse.Namespace) -> int:
    if args.reward_command == "train":
        return _train(args)
    if args.reward_command == "serve":
        return _serve(args)
    return _eval(args)


def _train(args: argparse.Namespace) -> int:
    from optune.config.run import describe
    from optune.rewardmodel.config import RewardTrainConfig, load_reward_config

    if args.help_config:
        print("\n".join(describe(RewardTrainConfig)))
        return 0
    from optune.rewardmodel.train import config_for_resume, train_reward_model

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
    from optune.rewardmodel.evaluation import evaluate_reward_model, format_report

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
        atomic_write_text(args.output, json.dumps(result, indent=2))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from optune.choices import RewardBackendName
    from optune.reward.backends import HFReward
    from optune.reward.config import RewardConfig
    from optune.rewardmodel.serve import RewardServer

    if args.batch_size <= 0:
        raise UserError("--batch-size must be positive")
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be in 0..65535; got {args.port}")
    if args.api_key_env and not os.environ.get(args.api_key_env):
        raise UserError(f"--api-key-env names {args.api_key_env}, which is not set in the environment")
    backend = HFReward(RewardConfig(backend=RewardBackendName.HF, model=args.model, batch_size=args.batch_size))
    server = RewardServer(backend, args.host, args.port, args.api_key_env)
    print(f"serving {args.model} at {server.url} (POST /rewards, GET /health); Ctrl-C stops", flush=True)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
    return 0
