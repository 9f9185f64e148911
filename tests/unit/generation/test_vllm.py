"""The vllm generator's engine life cycle, with a stand-in engine: restart starts one engine per checkpoint and
shuts it down before training; inplace starts one and loads each new checkpoint into it (asleep during training
on GPUs); auto is inplace on the CPU and restart on GPUs."""

from __future__ import annotations

import types

import pytest

from optune.choices import VllmUpdate
from optune.config.run import GenerationConfig, PolicyConfig
from optune.generation import vllm as backend
from optune.generation.vllm import VLLMGenerator, resolve_update


class Engine:
    def __init__(self, log, path, **kw):
        self.log, self.kw = log, kw
        self.llm_engine = types.SimpleNamespace(engine_core=types.SimpleNamespace(shutdown=lambda: log.append("stop")))
        log.append(("start", path, kw.get("seed"), kw.get("worker_extension_cls") is not None,
                    kw.get("enable_sleep_mode", False)))

    def collective_rpc(self, method, args=()):
        self.log.append((method, *args))

    def sleep(self, level):
        self.log.append(("sleep", level))

    def wake_up(self, tags):
        self.log.append(("wake", *tags))

    def reset_prefix_cache(self):
        self.log.append("reset")


@pytest.fixture
def make(monkeypatch):
    log: list = []
    fake = types.SimpleNamespace(LLM=lambda model, **kw: Engine(log, model, **kw))
    monkeypatch.setattr(backend, "_import_vllm", lambda: fake)
    monkeypatch.setattr(backend, "_stop_ids", lambda path, tokenizer: [2])

    def build(update: str, on_cpu: bool) -> VLLMGenerator:
        monkeypatch.setattr(backend, "_on_cpu", lambda: on_cpu)
        return VLLMGenerator(GenerationConfig(backend="vllm", vllm_update=update), None, PolicyConfig())

    return build, log


def iterations(gen: VLLMGenerator):
    """What the loop does over two iterations: generate pi_0, train, held-out of pi_1, generate pi_1, train."""
    gen._engine("p0", 11)
    gen.pause()
    gen._engine("p1", 5)  # held-out evaluation of pi_1
    gen._engine("p1", 12)  # iteration 1's generation: the same engine, not reseeded
    gen.pause()
    gen.release()


def test_auto_is_inplace_on_the_cpu_and_restart_on_gpus():
    assert resolve_update(VllmUpdate.AUTO, on_cpu=True) == VllmUpdate.INPLACE
    assert resolve_update(VllmUpdate.AUTO, on_cpu=False) == VllmUpdate.RESTART
    assert resolve_update(VllmUpdate.INPLACE, on_cpu=False) == VllmUpdate.INPLACE
    assert resolve_update(VllmUpdate.RESTART, on_cpu=True) == VllmUpdate.RESTART


def test_restart_starts_an_engine_per_checkpoint_and_stops_it_before_training(make):
    build, log = make
    iterations(build("restart", on_cpu=True))
    assert log == [("start", "p0", 11, False, False), "stop", ("start", "p1", 5, False, False), "stop"]


def test_inplace_on_the_cpu_starts_once_and_loads_each_checkpoint_reseeded(make):
    build, log = make
    iterations(build("auto", on_cpu=True))
    assert log == [("start", "p0", 11, True, False), ("optune_load_checkpoint", "p1", 5), "reset", "stop"]


def test_inplace_on_a_gpu_sleeps_during_training_and_wakes_to_load(make):
    build, log = make
    gen = build("inplace", on_cpu=False)
    gen._engine("p0", 11)
    gen.pause()
    gen.pause()  # asleep already: not put to sleep twice
    gen._engine("p0", 11)  # after training the weights memory was discarded: loaded again even on the same path
    gen.release()
    assert log == [("start", "p0", 11, True, True), ("sleep", 2), ("wake", "weights"),
                   ("optune_load_checkpoint", "p0", 11), ("wake", "kv_cache"), "reset", "stop"]
