"""The Hugging Face hub, for the names that are not local paths (`hf:NAME` data sets, hub model ids): where it
cannot be reached, fail in one line at once instead of after half a minute of retries.

Unreached, `huggingface_hub` retries each request five times with backoff (about 25 s and a dozen log lines
per file) before `datasets` or `transformers` gives up. So before the first hub name is loaded, `online()`
asks whether the hub can be reached: not where HF_HUB_OFFLINE (or HF_DATASETS_OFFLINE, TRANSFORMERS_OFFLINE)
says so, else by opening one TCP connection to its host (HF_ENDPOINT's; at most PROBE_S seconds, once per
process; skipped where a proxy is set, which a direct probe cannot speak for). Where it cannot, the process
switches the libraries to their offline mode, as HF_HUB_OFFLINE=1 would have: what the local hub cache holds
still loads, anything else fails at once, and the caller says so in one line (`UNREACHABLE`).
"""

from __future__ import annotations

import functools
import os
import socket
import sys
from urllib.parse import urlsplit

OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
PROBE_S = 3.0
UNREACHABLE = "the Hugging Face hub cannot be reached from here and the local hub cache does not hold it"


def offline_by_env() -> bool:
    return any(os.environ.get(v, "").strip().upper() in ("1", "ON", "YES", "TRUE") for v in OFFLINE_VARS)


@functools.cache
def _probe(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=PROBE_S).close()
        return True
    except OSError:  # no DNS, refused, unreachable, timed out
        return False


def reachable() -> bool:
    """Whether the hub answers here: False where the environment says offline or a probe fails."""
    if offline_by_env():
        return False
    if any(os.environ.get(v) for v in PROXY_VARS):
        return True
    url = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    return _probe(url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443))


def online() -> bool:
    """Whether hub names can be fetched; where not, the hub libraries are put in their offline mode first (the
    local cache only, no retries), in this process: they read HF_HUB_OFFLINE only as they are imported."""
    if reachable():
        return True
    os.environ["HF_HUB_OFFLINE"] = "1"
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None:
        setattr(hub, "HF_HUB_OFFLINE", True)  # noqa: B010 - a module attribute its stubs do not declare
    datasets = sys.modules.get("datasets.config")
    if datasets is not None:
        for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
            setattr(datasets, name, True)
    return False


def check_model(name: str, what: str) -> None:
    """A hub model id can be loaded: the hub is reachable, or the local hub cache holds its config.json."""
    from optune.errors import UserError

    if online():
        return
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(name, "config.json")
    except ValueError:  # not a valid repository id
        cached = None
    if not isinstance(cached, str):
        raise UserError(f"{what} {name}: not a local folder, and {UNREACHABLE}; give a local folder, or download "
                        "it where the hub is reachable")
