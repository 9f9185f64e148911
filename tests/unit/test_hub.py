"""optune.hub: where the Hugging Face hub cannot be reached, a hub name fails in one line at once (issue 25,
item 5). Nothing here touches the network: the probe's socket is replaced, or HF_HUB_OFFLINE says offline."""

from __future__ import annotations

import socket
import time

import pytest

from optune import hub
from optune.errors import UserError


@pytest.fixture
def fresh(monkeypatch):
    """A process that has not probed yet; the switches online() flips are put back afterwards."""
    import datasets.config
    import huggingface_hub.constants

    hub._probe.cache_clear()
    for var in (*hub.OFFLINE_VARS, *hub.PROXY_VARS, "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", False)
    yield
    hub._probe.cache_clear()


def unreachable(monkeypatch) -> list:
    """Every connection fails (as with no DNS); returns the addresses tried."""
    tried = []

    def refuse(address, timeout=None):
        tried.append((address, timeout))
        raise OSError("Name or service not known")

    monkeypatch.setattr(socket, "create_connection", refuse)
    return tried


def test_a_failed_probe_switches_the_hub_libraries_offline(fresh, monkeypatch):
    import datasets.config
    import huggingface_hub.constants

    tried = unreachable(monkeypatch)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example.test:8443")
    assert hub.online() is False
    assert tried == [(("hub.example.test", 8443), hub.PROBE_S)]
    assert huggingface_hub.constants.HF_HUB_OFFLINE and datasets.config.HF_HUB_OFFLINE
    assert hub.online() is False and len(tried) == 1  # probed once per process


def test_offline_by_environment_needs_no_probe(fresh, monkeypatch):
    tried = unreachable(monkeypatch)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert hub.reachable() is False and tried == []


def test_a_proxy_is_trusted_not_probed(fresh, monkeypatch):
    tried = unreachable(monkeypatch)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.test:3128")
    assert hub.online() is True and tried == []


def test_a_hub_model_not_in_the_cache_is_one_line(fresh, monkeypatch):
    unreachable(monkeypatch)
    with pytest.raises(UserError, match=r"^policy.model someuser/somemodel: not a local folder, and the Hugging "
                                        r"Face hub cannot be reached from here"):
        hub.check_model("someuser/somemodel", "policy.model")


def test_a_hub_data_set_fails_at_once_without_retries(fresh, monkeypatch, capsys):
    from optune.data.tables import read_rows

    unreachable(monkeypatch)
    start = time.monotonic()
    with pytest.raises(UserError, match=r"^cannot load prompt set someuser/somedata split test: not a local folder, "
                                        r"and the Hugging Face hub cannot be reached"):
        next(read_rows("hf:someuser/somedata:test", "prompt set"))
    assert time.monotonic() - start < 10  # the libraries' own retries take about 25 s
    assert "Retry" not in capsys.readouterr().err
