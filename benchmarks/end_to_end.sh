#!/usr/bin/env bash
# The embedded default run (`optune run`) of an older commit and of this checkout, back to back on one
# machine, each under /usr/bin/time -v; then the held-out gain of both (benchmarks/heldout_gain.py).
#
#   bash benchmarks/end_to_end.sh [OLD_COMMIT (default 17ec3a9: main when issue 13 was filed)] [OUT_DIR]
#        [key.sub=value ... for the new run only]
#
# The old commit runs from a temporary `git worktree` (removed afterwards). About 32 minutes on the idle
# 2-core EPYC of docs/benchmarks.md (Speed). Record the machine (lscpu) with the figures.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
old="${1:-17ec3a9}"; out="$(realpath -m "${2:-runs/end-to-end}")"; shift $(( $# < 2 ? $# : 2 ))
mkdir -p "$out"
tree="$(mktemp -d)/old"
git -C "$repo" worktree add --detach "$tree" "$old" >/dev/null
trap 'git -C "$repo" worktree remove --force "$tree"' EXIT
lscpu | grep -E "Model name" > "$out/machine.txt"; grep -o 'amx\w*' /proc/cpuinfo | sort -u >> "$out/machine.txt" || true
run() {  # name source-dir [overrides...]
    local name=$1 dir=$2; shift 2
    echo "== $name ($(git -C "$dir" rev-parse --short HEAD)) start $(date -Is), load $(cut -d' ' -f1 /proc/loadavg)"
    (cd "$dir" && PYTHONPATH="$dir/src" /usr/bin/time -v python -m optune run output_dir="$out/$name" "$@") \
        > "$out/$name.log" 2>&1 || { echo "$name failed: see $out/$name.log"; exit 1; }
    grep -E "Elapsed|Maximum resident" "$out/$name.log"
}
run old "$tree"
run new "$repo" "$@"
for name in old new; do PYTHONPATH="$repo/src" python "$repo/benchmarks/heldout_gain.py" "$out/$name" --examples 0; done
