import pytest


def pytest_collection_modifyitems(items):
    """Every end-to-end test is slow: whole runs, servers, browsers, kill sweeps. CI runs them all;
    `pytest -m "not slow"` (the quick check) leaves them out."""
    for item in items:
        if "/tests/e2e/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.slow)
