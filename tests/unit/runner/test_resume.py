"""Resuming without a model: deployment-only overrides, the config digest, config.yaml rewritten, and the
one line (exit 3, the resume command) of a run that stops midway. Real runs: tests/e2e/test_resume.py."""

from __future__ import annotations

import types

import pytest
import yaml

from optune.cli import main
from optune.config.run import DEPLOYMENT_KEYS, RunConfig, load_config, to_dict
from optune.config.schema import leaf_keys
from optune.endpoint import EndpointError
from optune.errors import RunFailed, UserError
from optune.runner.resume import computing_keys, digest, record_deployment, resumed_config, write_digest
from optune.store import RunStore, WriteError, read_json
from tests.conftest import REPO

TINY = str(REPO / "configs" / "tiny.yaml")


def make_run(root, *overrides: str, with_digest: bool = True) -> RunStore:
    """A run directory as `optune run` creates it (no iteration finished), lock released."""
    cfg = load_config(TINY, [f"output_dir={root}", *overrides])
    store = RunStore.create(root, yaml.safe_dump(to_dict(cfg), sort_keys=False), {},
                            (lambda s: write_digest(s, cfg)) if with_digest else None)
    store.close()
    return store


def edit_config(store: RunStore, section: str, key: str, value) -> None:
    data = yaml.safe_load(store.config.read_text())
    data[section][key] = value
    store.config.write_text(yaml.safe_dump(data, sort_keys=False))


def test_every_deployment_key_is_a_config_key():
    assert set(DEPLOYMENT_KEYS) <= set(leaf_keys(RunConfig()))
    assert "reward.batch_size" not in DEPLOYMENT_KEYS and "generation.batch_size" not in DEPLOYMENT_KEYS


def test_resume_takes_deployment_overrides_and_refuses_the_rest(tmp_path):
    store = make_run(tmp_path / "run", "reward.backend=remote", "reward.url=http://127.0.0.1:9")
    cfg = resumed_config(store, {"reward.url": "http://10.0.0.2:8000", "reward": {"timeout_s": 5},
                                 "report_to": [], "train.save_steps": 3, "policy.device": "cpu"})
    assert (cfg.reward.url, cfg.reward.timeout_s, cfg.train.save_steps) == ("http://10.0.0.2:8000", 5.0, 3)
    assert resumed_config(store, {"reward.batch_size": 16}).reward.batch_size == 16  # its own value: no change
    for key, value in [("reward.batch_size", 4), ("generation.batch_size", 2), ("selection.rho", 1.0),
                       ("beta", 0.3), ("generation.vllm_enforce_eager", False)]:
        name = "loss.beta1" if key == "beta" else key
        with pytest.raises(UserError, match=rf"resume takes the run's own config: {name} would change what the run "
                                            r"computes; only deployment-only keys may change on resume \(reward.url"):
            resumed_config(store, {key: value})


def test_a_mix_components_url_is_deployment_only(tmp_path):
    store = make_run(tmp_path / "run", "reward.backend=mix", "reward.components=[{name: rm, backend: remote, "
                     "url: 'http://127.0.0.1:9'}, {name: len, backend: length}]")
    cfg = resumed_config(store, {"reward.components[0].url": "http://10.0.0.2:8000"})
    assert cfg.reward.components[0].url == "http://10.0.0.2:8000"
    with pytest.raises(UserError, match=r"reward.components\[1\].weight would change what the run computes"):
        resumed_config(store, {"reward.components[1].weight": 2.0})


def test_record_deployment_rewrites_config_yaml_with_the_new_values_only(tmp_path):
    store = make_run(tmp_path / "run", "reward.backend=remote", "reward.url=http://127.0.0.1:9")
    before = store.config.read_text()
    assert record_deployment(RunStore(store.root), resumed_config(store, {})) == []
    assert store.config.read_text() == before  # nothing changed: not rewritten
    cfg = resumed_config(store, {"reward.url": "http://10.0.0.2:8000"})
    assert record_deployment(RunStore(store.root, writer=False), cfg) == []  # readers never write
    assert record_deployment(RunStore(store.root), cfg) == ["reward.url"]
    after = yaml.safe_load(store.config.read_text())
    assert after["reward"]["url"] == "http://10.0.0.2:8000"
    assert {**after, "reward": {**after["reward"], "url": "http://127.0.0.1:9"}} == yaml.safe_load(before)
    assert resumed_config(store, {}).reward.url == "http://10.0.0.2:8000"  # the digest still matches


def test_the_digest_names_the_keys_of_a_hand_edited_config_yaml(tmp_path, capsys):
    store = make_run(tmp_path / "run")
    recorded = read_json(store.config_digest)
    assert recorded == digest(load_config(TINY, [f"output_dir={store.root}"]))
    assert "output_dir" not in recorded["keys"] and "reward.url" not in recorded["keys"]
    assert recorded["keys"]["selection.rho"] == 0.5 and len(recorded["sha256"]) == 64
    edit_config(store, "policy", "device", "cpu")  # deployment-only: fine
    resumed_config(store, {})
    edit_config(store, "selection", "rho", 0.7)
    edit_config(store, "loss", "type", "dpo")
    with pytest.raises(UserError, match=r"cannot resume .*: its config.yaml no longer matches what the run computed: "
                                        r"selection.rho \(0.5 -> 0.7\), loss.type \('wdpo' -> 'dpo'\); restore them"):
        resumed_config(store, {})
    assert main(["run", "--resume", str(store.root)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "selection.rho (0.5 -> 0.7)" in err


def test_a_run_made_before_the_digest_resumes_as_before(tmp_path):
    store = make_run(tmp_path / "run", with_digest=False)
    assert not store.config_digest.exists()
    edit_config(store, "selection", "rho", 0.7)
    assert resumed_config(store, {}).selection.rho == 0.7


def test_keys_added_since_a_run_was_made_are_not_compared(tmp_path):
    store = make_run(tmp_path / "run")
    recorded = read_json(store.config_digest)
    del recorded["keys"]["loss.nll_weight"]  # a digest written before that key existed
    store.config_digest.write_text(__import__("json").dumps(recorded))
    resumed_config(store, {})
    assert "loss.nll_weight" in computing_keys(RunConfig())


def chained(error: Exception, cause: Exception) -> Exception:
    error.__cause__ = cause
    return error


@pytest.fixture
def fake_prepare(monkeypatch):
    """prepare() without a model: it creates the run directory as the real one does; the loop then fails with
    the error the test sets."""
    import optune.runner.loop
    import optune.runner.prepare
    from optune.distributed import Dist

    failure: dict = {}

    def prepare(cfg, store, dist=None, **kwargs):
        if store is None:
            store = optune.runner.prepare.create_store(cfg, Dist())
        return types.SimpleNamespace(cfg=cfg, store=store, dist=Dist(), pool=types.SimpleNamespace(prompts=[]),
                                     heldout=[], tracker=None)

    def run(ctx, log=print):
        raise failure["error"]

    monkeypatch.setattr(optune.runner.prepare, "prepare", prepare)
    monkeypatch.setattr(optune.runner.prepare, "versions", lambda: {})
    monkeypatch.setattr(optune.runner.loop, "run", run)
    return failure


@pytest.mark.parametrize("error,cause", [
    (EndpointError("cannot reach reward server at http://127.0.0.1:9/rewards: refused (gave up after 6 attempts)"),
     "cannot reach reward server at http://127.0.0.1:9/rewards: refused (gave up after 6 attempts); the run stopped "
     "midway with every file it wrote complete: once that is fixed, resume it with: optune run --resume {run} "
     "(adding reward.url=NEW_URL if the server moved)"),
    # the loop's own wrapping of a refused write: the cause is named once, with the exact command
    (chained(WriteError("cannot write X: No space left on device; the run stopped with every file complete: "
                        "resume it with --resume R once that is fixed"),
             WriteError("cannot write X: No space left on device")),
     "cannot write X: No space left on device; the run stopped midway with every file it wrote complete: once that "
     "is fixed, resume it with: optune run --resume {run}"),
])
def test_a_failure_midway_is_one_line_exit_3_with_the_resume_command(tmp_path, capsys, fake_prepare, error, cause):
    fake_prepare["error"] = error
    run = tmp_path / "run"
    assert main(["run", "-c", TINY, f"output_dir={run}"]) == 3
    err = capsys.readouterr().err.strip()
    assert err == f"optune run: error: {cause.format(run=run)}"
    assert (run / ".optune-run").is_file() and not (run / ".optune-lock").exists()
    with pytest.raises(RunFailed):  # the API raises it (a UserError)
        import optune

        optune.run(resume=run)


def test_exit_codes_differ(tmp_path, capsys, fake_prepare):
    assert main(["run", "-c", TINY, "selection.rho=7"]) == 2  # a usage error: nothing started
    assert not list(tmp_path.iterdir())
    assert issubclass(RunFailed, UserError) and (UserError.exit_code, RunFailed.exit_code) == (2, 3)


def test_a_run_made_when_bf16_was_a_bool_resumes(tmp_path):
    """train.bf16 was true/false before "auto": such a run's digest recorded a bool, and resuming it is no edit."""
    store = make_run(tmp_path / "run")
    recorded = read_json(store.config_digest)
    assert recorded["keys"]["train.bf16"] == "false"  # tiny.yaml sets false
    recorded["keys"]["train.bf16"] = False
    store.config_digest.write_text(__import__("json").dumps(recorded))
    assert resumed_config(store, {}).train.use_bf16 is False
    recorded["keys"]["train.bf16"] = True  # but a recorded true against a config.yaml's false is a change
    store.config_digest.write_text(__import__("json").dumps(recorded))
    with pytest.raises(UserError, match=r"train.bf16 \(True -> 'false'\)"):
        resumed_config(store, {})
