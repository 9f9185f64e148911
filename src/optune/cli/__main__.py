"""`python -m optune.cli ...`, the same as `python -m optune`."""

import sys

from optune.cli import main

if __name__ == "__main__":  # the guard vLLM's worker processes need
    sys.exit(main())
