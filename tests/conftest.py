import os
import signal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def interruptible() -> None:
    """Popen's preexec_fn for a server a test stops with SIGINT (Ctrl-C). A shell starts a background job
    (`bash .ci/run &`) with SIGINT ignored; its children inherit that, and Python then keeps it ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Tests build their own tiny models; the user's converted-model cache is left alone."""
    os.environ.setdefault("OPTUNE_CACHE", str(tmp_path_factory.mktemp("optune-cache")))
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    # datasets.load_dataset on the tests' own folders caches them; not in the user's ~/.cache
    os.environ.setdefault("HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf-datasets-cache")))
    yield


@pytest.fixture(scope="session")
def tiny_policy(tmp_path_factory) -> str:
    from optune.models.tiny import build_tiny_policy

    return str(build_tiny_policy(tmp_path_factory.mktemp("tiny") / "policy"))
