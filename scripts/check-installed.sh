#!/usr/bin/env bash
# The installed suite, run as a researcher runs it: from a folder outside any checkout, with PYTHON's environment
# (an installed nasiam-bench), `show moco_cifar10`, `bench moco --plan` and a smoke bench of one head to its
# record. `make install-offline` ends with it; `make check-installed` runs it on a fresh wheel install.
#   check-installed.sh PYTHON [DATA_ROOT]   (DATA_ROOT: a prepared data root to reuse; else one is prepared from
#                                            $NASIAM_SOURCES, about 3 minutes)
set -euo pipefail
python=${1:?usage: check-installed.sh PYTHON [DATA_ROOT]}
data=${2:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"  # nothing of a checkout here: the catalogue and everything else must come from the installed package
where=$("$python" -c 'import nasiam_bench, pathlib; print(pathlib.Path(nasiam_bench.__file__).parent)')
case "$where" in
    "$(git -C "$OLDPWD" rev-parse --show-toplevel 2>/dev/null || echo /nonexistent)"*)
        echo "check-installed: $python imports nasiam_bench from the checkout ($where), not an installed copy" >&2
        exit 1 ;;
esac
echo "check-installed: nasiam_bench from $where"
"$python" -m nasiam_bench show moco_cifar10 > show.txt
grep -q 'framework = "moco"' show.txt
root=${data:-$work/data}
"$python" -m nasiam_bench bench moco profile=smoke "data.root=$root" --runs runs --results results --plan
"$python" -m nasiam_bench bench moco profile=smoke "data.root=$root" data.loader=torch data.workers=0 \
    'experiment.bench_heads=["baseline"]' --runs runs --results results > bench.log
ls results/records/cifar10/moco/baseline-*-seed0.json
echo "check-installed: show, bench --plan and a smoke bench ran from $work with the installed suite"
