#!/usr/bin/env bash
# Install what the human-study browser test (tests/e2e/test_study_browser.py) needs:
# Debian's chromium and Playwright's Python package. Playwright is pointed at /usr/bin/chromium,
# so no browser is ever downloaded by Playwright. Safe to run more than once.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if ! command -v chromium >/dev/null 2>&1; then
    $SUDO apt-get update
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
fi

if ! python -c "import playwright" >/dev/null 2>&1; then
    # Only the Python package; never `playwright install` (that downloads browsers).
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 python -m pip install "playwright>=1.40"
fi

chromium --version 2>/dev/null  # the Debian launcher may warn about /dev/shm here
python -c "import importlib.metadata as m; print('playwright', m.version('playwright'))"
