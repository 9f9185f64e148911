"""Who does what across processes, checked without starting any (the 2-process run is tests/e2e/test_distributed.py)."""

import json

from optune.distributed import Dist, batched
from optune.store import RunStore


class TwoRanks(Dist):
    """Rank `rank` of 2; gather returns this rank's object and what the other rank computed."""

    def __init__(self, rank, other):
        super().__init__()
        self.rank, self.world, self.other = rank, 2, other

    def gather(self, obj):
        return [obj, self.other] if self.rank == 0 else [self.other, obj]

    def barrier(self):
        pass


def test_inactive_dist_is_one_process():
    d = Dist()
    assert not d.active and d.is_main and d.gather(5) == [5] and d.broadcast("x") == "x"
    assert d.split([1, 2, 3]) == [1, 2, 3] and d.sum([1.0, 2.0]) == [1.0, 2.0]


def test_split_shares_concatenate_back():
    items = list(range(7))
    shares = [TwoRanks(r, None).split(items) for r in (0, 1)]
    assert shares == [[0, 1, 2, 3], [4, 5, 6]]


def test_batches_dealt_round_robin_and_written_once(tmp_path):
    items = list(range(10))  # batches of 3: [0,1,2] [3,4,5] [6,7,8] [9]
    calls = []

    def work(batch):
        calls.append(batch)
        return [{"x": i * 10} for i in batch]

    other = {1: [{"x": i * 10} for i in (3, 4, 5)], 3: [{"x": 90}]}  # what rank 1 computed
    rows = batched(TwoRanks(0, other), RunStore(tmp_path), tmp_path / "batches", items, 3, work)
    assert calls == [[0, 1, 2], [6, 7, 8]]  # rank 0 computed batches 0 and 2 only
    assert [r["x"] for r in rows] == [i * 10 for i in items]
    assert sorted(p.name for p in (tmp_path / "batches").iterdir()) == [f"batch_0000{k}.jsonl" for k in range(4)]
    # a resumed run finds the files and computes nothing
    calls.clear()
    again = batched(TwoRanks(1, {}), RunStore(tmp_path), tmp_path / "batches", items, 3, work)
    assert calls == [] and again == rows


def test_only_the_main_process_writes(tmp_path):
    RunStore(tmp_path, writer=False).write_json(tmp_path / "a.json", {"a": 1})
    assert not (tmp_path / "a.json").exists()
    RunStore(tmp_path).write_json(tmp_path / "a.json", {"a": 1})
    assert json.loads((tmp_path / "a.json").read_text()) == {"a": 1}


def test_a_failed_collective_becomes_one_line_naming_the_other_process():
    from optune.distributed import ProcessLost, lost_process

    gloo = RuntimeError("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error "
                        "[127.0.0.1]:24207: Connection reset by peer. This is typically caused by a remote worker "
                        "hanging or bugs in the application. GLHF!")
    lost = lost_process(TwoRanks(1, None), gloo)
    assert isinstance(lost, ProcessLost) and str(lost) == (
        "process 1 of 2: another process of this run died or stopped answering (Read error [127.0.0.1]:24207: "
        "Connection reset by peer)")
    assert lost_process(Dist(), gloo) is None  # one process: no other process to lose
    assert lost_process(TwoRanks(0, None), RuntimeError("shape mismatch")) is None  # a bug stays a traceback
    assert lost_process(TwoRanks(0, None), ValueError("gloo")) is None


def test_fsdp_refuses_an_accelerate_strategy_that_already_distributes():
    import types

    import pytest

    from optune.config.run import RunConfig
    from optune.distributed import check
    from optune.errors import UserError

    cfg = RunConfig()
    cfg.train.fsdp = True
    for kind, refused in (("MULTI_CPU", False), ("MULTI_GPU", False), ("FSDP", True), ("DEEPSPEED", True)):
        dist = TwoRanks(0, None)
        dist.accelerator = types.SimpleNamespace(distributed_type=types.SimpleNamespace(name=kind))
        if refused:
            with pytest.raises(UserError, match=f"with {kind}: launch with a DDP config"):
                check(dist, cfg)
        else:
            check(dist, cfg)
