"""`python -m optune ...` and `accelerate launch -m optune run ...` (several processes; see optune.distributed)."""

import sys

from optune.cli import main

if __name__ == "__main__":  # the guard vLLM's worker processes need
    sys.exit(main())
