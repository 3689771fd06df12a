#!/usr/bin/env bash
# `make check-installed`: build the suite's wheel, install it with pip --no-index into a fresh virtual environment
# whose other packages (torch and the rest) come from the existing one (VENV), then check-installed.sh with it.
#   install-check.sh VENV [DATA_ROOT]
set -euo pipefail
venv=${1:?usage: install-check.sh VENV [DATA_ROOT]}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$venv/bin/python" -m pip wheel -q --no-deps --no-build-isolation -w "$work/wheels" .
"$venv/bin/python" -m venv --without-pip "$work/env" 2>/dev/null || python3 -m venv --without-pip "$work/env"
site=$("$work/env/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# the wheel, with no index and none of its dependencies from anywhere but what is already installed
"$venv/bin/python" -m pip --python "$work/env/bin/python" install -q --no-index --no-deps "$work"/wheels/nasiam_bench-*.whl
# its dependencies: the existing environment's (after the wheel, so that its own copy of the suite comes first)
"$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' > "$site/existing-environment.pth"
bash scripts/check-installed.sh "$work/env/bin/python" "${2:-}"
