"""`optune export`: a run's preference data in TRL's preference format, and a model card for its final policy.

One row per trained pair of every finished iteration, in the conversational shape that TRL's DPOTrainer
(`trl dpo`), open-instruct and hub preference sets use, as Parquet and JSONL:

  prompt                        [{"role", "content"}, ...]: the earlier turns, then the user's prompt
  chosen, rejected              [{"role": "assistant", "content": ...}]
  score_chosen, score_rejected  the two responses' rewards
  iteration                     the iteration that trained on the pair
  prompt_id                     the prompt's id in the run
  score_chosen_<name>,          with a composite reward (reward.backend mix): each component's raw score of
  score_rejected_<name>         the two responses (null where a response has none, e.g. from before a resume)

A prompt whose responses OPTune reused is trained on again in the next iteration, so its pair appears once per
iteration that trained on it (the same texts with a higher `iteration`); `dedupe` keeps one row per distinct
(prompt, chosen, rejected), the first iteration's, so that a data set made from the export does not weigh
reused pairs by how long they were kept. Prompt texts come from RUN/prompts.jsonl,
written when the run starts; for a run made before that file existed they are re-read from its config's
data.train (the same reader and limit the run used), as they are when prompts.jsonl is damaged (said in one line).
A damaged responses.jsonl, pairs.jsonl or metrics.json of a finished iteration stops the export with one line
naming it (exit 2). Every file is written through optune.store's atomic writer.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from optune.config.run import RunConfig, load_run_config
from optune.data import tables
from optune.errors import UserError
from optune.prompt import Prompt
from optune.store import RunStore, atomic_write, atomic_write_text, damage, read_jsonl, write_jsonl

COLUMNS = ("prompt", "chosen", "rejected", "score_chosen", "score_rejected", "iteration", "prompt_id")
PARQUET, JSONL = "preferences.parquet", "preferences.jsonl"


@dataclass
class ExportResult:
    out: Path
    """The folder written (preferences.parquet and preferences.jsonl)."""
    parquet: Path
    jsonl: Path
    model_card: Path
    """README.md in the final checkpoint's folder."""
    pairs_per_iteration: dict[int, int] = field(default_factory=dict)
    prompts_from: str = ""
    """Where the prompt texts came from: RUN/prompts.jsonl, or data.train re-read for an older run."""
    repeats_dropped: int = 0
    """With dedupe: the rows left out as repeats of an earlier iteration's pair (not in pairs_per_iteration)."""

    @property
    def rows(self) -> int:
        return sum(self.pairs_per_iteration.values())


def _stored_prompts(store: RunStore) -> dict[str, list[dict]]:
    return {p.id: p.messages() for p in map(Prompt.from_record, read_jsonl(store.prompts))}


def _checked_rows(path: Path, keys: tuple[str, ...], inner: str | None = None,
                  inner_keys: tuple[str, ...] = ()) -> list[dict]:
    """read_jsonl(path), every row an object with `keys` (and, under `inner`, a list of objects with
    `inner_keys`); a row that is not raises ValueError naming its line (the file is damaged)."""
    rows = read_jsonl(path)
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict) or any(k not in row for k in keys):
            raise ValueError(f"line {i} is not a record of this file")
        if inner is not None and not (isinstance(row[inner], list) and all(
                isinstance(r, dict) and all(k in r for k in inner_keys) for r in row[inner])):
            raise ValueError(f"line {i} is not a record of this file")
    return rows


def _responses(store: RunStore, t: int) -> list[dict]:
    return store.read_finished(t, store.responses(t), lambda p: _checked_rows(
        p, ("prompt_id", "responses"), "responses", ("text", "reward", "generated_at")))


def _pairs(store: RunStore, t: int) -> list[dict]:
    return store.read_finished(t, store.pairs(t), lambda p: _checked_rows(
        p, ("prompt_id", "trained", "chosen_reward")))


def _prompts(store: RunStore, cfg: RunConfig) -> tuple[dict[str, list[dict]], str]:
    """The prompt texts and where they came from: RUN/prompts.jsonl, else (an older run, or a damaged file,
    said in one line) data.train read again, as the run read it."""
    if store.prompts.is_file():
        try:
            return _stored_prompts(store), str(store.prompts)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            print(f"{store.prompts} is damaged ({damage(err)}): reading the prompts from data.train "
                  f"({cfg.data.train}) instead", file=sys.stderr, flush=True)
    return _reread_prompts(store, cfg), f"data.train ({cfg.data.train}), re-read"


def _reread_prompts(store: RunStore, cfg: RunConfig) -> dict[str, list[dict]]:
    """The run's prompt records read again from data.train, as the run read them (older runs)."""
    first = _responses(store, store.finished_iterations()[0])
    offline = all(r["generated_at"] == -1 for row in first for r in row["responses"])
    if offline:
        from optune.data.preferences import read_preferences
        from optune.pairs.offline import pair_prompts, sample_pairs

        data = read_preferences([s.strip() for s in cfg.data.train.split(",") if s.strip()])
        prompts = pair_prompts(sample_pairs(data, cfg.data.max_prompts, cfg.seed))
    else:
        from optune.data.prompts import load_prompts

        prompts = load_prompts(cfg.data.train, cfg.data.max_prompts, field=cfg.data.prompt_field)
    return {p.id: p.messages() for p in prompts}


def _assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def pair_rows(store: RunStore, t: int, prompts: dict[str, list[dict]]) -> list[dict]:
    """The rows of iteration t's trained pairs: pairs.jsonl names them, responses.jsonl holds their texts.

    The chosen response is the one with the pair's chosen reward (the first of two equal ones, as
    optune.pairs.order picks it), so labelled offline pairs whose reward disagrees with the label stay as labelled.
    """
    responses = {row["prompt_id"]: row["responses"] for row in _responses(store, t)}
    rows = []
    for pair in _pairs(store, t):
        if not pair["trained"]:
            continue
        pid = pair["prompt_id"]
        if pid not in prompts:
            raise UserError(f"prompt {pid!r} of iteration {t} is not in the run's prompt set")
        both = responses.get(pid, [])
        picks = [i for i, r in enumerate(both) if r["reward"] == pair["chosen_reward"]
                 and r["generated_at"] == pair.get("chosen_generated_at", r["generated_at"])]
        if len(both) != 2 or not picks:
            raise UserError(f"{store.pairs(t)} and {store.responses(t)} disagree about prompt {pid!r}")
        chosen, rejected = both[picks[0]], both[1 - picks[0]]
        rows.append({"prompt": prompts[pid], "chosen": _assistant(chosen["text"]),
                     "rejected": _assistant(rejected["text"]), "score_chosen": float(chosen["reward"]),
                     "score_rejected": float(rejected["reward"]), "iteration": t, "prompt_id": pid,
                     **_part_columns(chosen, "chosen"), **_part_columns(rejected, "rejected")})
    return rows


def _part_columns(response: dict, side: str) -> dict:
    """score_<side>_<name> for each reward component's score the response has (none without components)."""
    return {f"score_{side}_{name}": float(score) for name, score in (response.get("parts") or {}).items()}


def part_columns(rows: list[dict]) -> list[str]:
    """The component score columns among `rows`: score_chosen_<name>, score_rejected_<name> per component, in
    order of first appearance. Every row gets all of them (None where missing), in that order, so the JSONL
    and Parquet files have one set of columns."""
    names: dict[str, None] = {}
    for row in rows:
        names.update((key.split("_", 2)[2], None) for key in row if key not in COLUMNS)
    columns = [f"score_{side}_{name}" for name in names for side in ("chosen", "rejected")]
    for row in rows:
        parts = {key: row.pop(key, None) for key in columns}
        row.update(parts)
    return columns


def dedupe_rows(rows: list[dict]) -> list[dict]:
    """The first row of each distinct (prompt, chosen, rejected), in order (rows come by iteration)."""
    seen, out = set(), []
    for row in rows:
        key = json.dumps([row["prompt"], row["chosen"], row["rejected"]], sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


def write_parquet(path: Path, rows: list[dict], extra: Sequence[str] = ()) -> None:
    """The rows as Parquet with a fixed schema (an export with no pairs still has its columns), plus the float
    columns `extra` (the reward components' scores)."""
    import pyarrow as pa  # optional dependency
    import pyarrow.parquet as pq

    messages = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    schema = pa.schema([("prompt", messages), ("chosen", messages), ("rejected", messages),
                        ("score_chosen", pa.float64()), ("score_rejected", pa.float64()),
                        ("iteration", pa.int64()), ("prompt_id", pa.string()),
                        *((name, pa.float64()) for name in extra)])
    table = pa.Table.from_pylist(rows, schema=schema)
    atomic_write(path, lambda f: pq.write_table(table, f))


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, dedupe: bool = False
               ) -> ExportResult:
    """Write RUN's trained pairs to OUT (default RUN/export) and a model card beside its final checkpoint;
    `dedupe`: one row per distinct (prompt, chosen, rejected)."""
    store = RunStore(Path(run_dir), writer=False)  # only read: a run still going on keeps its temporary files
    if not (store.marker.is_file() and store.config.is_file()):
        raise UserError(f"{run_dir} is not an optune run directory (no {store.marker.name} or config.yaml)")
    finished = store.finished_iterations()
    if not finished:
        raise UserError(f"{run_dir} has no finished iteration yet")
    # the one optional package this needs, checked before anything is written
    tables.require_pyarrow("optune export (Parquet)")
    cfg = load_run_config(str(store.config))
    prompts, source = _prompts(store, cfg)
    all_rows = [row for t in finished for row in pair_rows(store, t, prompts)]
    rows = dedupe_rows(all_rows) if dedupe else all_rows
    out = Path(out) if out is not None else store.export_dir
    write_parquet(out / PARQUET, rows, part_columns(rows))
    write_jsonl(out / JSONL, rows)
    from optune.report.card import model_card, read_versions

    metrics = [store.read_finished(t, store.metrics(t)) for t in finished]
    versions = read_versions(store)
    result = ExportResult(out=out, parquet=out / PARQUET, jsonl=out / JSONL,
                          model_card=store.model_card(finished[-1]),
                          pairs_per_iteration={t: sum(r["iteration"] == t for r in rows) for t in finished},
                          prompts_from=source, repeats_dropped=len(all_rows) - len(rows))
    text = model_card(cfg, store.config.read_text(encoding="utf-8"), metrics, versions, n_prompts=len(prompts),
                      export_dir=out)
    atomic_write_text(result.model_card, text)
    return result
