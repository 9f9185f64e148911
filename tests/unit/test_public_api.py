"""The documented public names stay importable where users find them."""

import importlib

import pytest

PUBLIC = {
    "optune": ["run", "dpo", "export", "RunResult", "UserError"],
    "optune.losses": ["dpo_loss", "wdpo_loss", "pair_weights", "bradley_terry_loss", "make_loss"],
    "optune.selection": ["select_prompts"],
    "optune.eval": ["win_score", "combine_orders"],
    "optune.tasks.verifiable": ["load", "reward"],
    "optune.generation": ["Generator", "Sample", "BACKENDS", "make_generator"],
    "optune.pairs": ["Response", "Pair", "build_pairs", "merge"],
    "optune.store": ["RunStore", "atomic_write"],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names(module):
    mod = importlib.import_module(module)
    missing = [name for name in PUBLIC[module] if not callable(getattr(mod, name, None))
               and not isinstance(getattr(mod, name, None), dict)]
    assert not missing, f"{module} lacks {missing}"


def test_every_subpackage_explains_itself():
    import pkgutil

    import optune

    for info in pkgutil.iter_modules(optune.__path__):
        if info.ispkg:
            doc = importlib.import_module(f"optune.{info.name}").__doc__ or ""
            assert len(doc.split()) >= 15, f"optune.{info.name}/__init__.py needs a docstring paragraph"
