"""optune: efficient online preference tuning (OPTune) of language models.

The Python API (optune.api) is loaded on first use, so `import optune` stays light (no torch):

    import optune
    result = optune.run("configs/tiny.yaml", selection={"rho": 0.25})   # or optune.dpo(...)
    optune.export(result.run_dir, "prefs/")
"""

from optune.errors import RunFailed, UserError
from optune.version import __version__

__all__ = ["run", "dpo", "export", "RunResult", "RunFailed", "UserError", "__version__"]

_API = ("run", "dpo", "export", "RunResult")


def __getattr__(name: str):
    if name in _API:
        from optune import api

        return getattr(api, name)
    raise AttributeError(f"module 'optune' has no attribute {name!r}")
