#!/usr/bin/env bash
# Does the GPU lock resolve? Resolution only: pip's resolver reads every pinned
# package's metadata from PyPI (wheels of Linux x86-64 CPython 3.11, the platform of the
# GPU environment; CUDA wheels are ordinary manylinux wheels) and installs nothing, so
# no GPU is needed. Checks:
#   1. requirements-gpu.lock resolves as a whole (pip install --dry-run);
#   2. it is closed: what pip would install is exactly the lock, version for version;
#   3. the flash-attn pin of requirements-gpu-build.lock exists on the index (it is an
#      sdist, built against the lock's torch on the GPU machine: not resolved here).
# Needs Python 3.11 and PyPI. Usage: ci/check_gpu_lock.sh [python]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-python3}"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else
          "ci/check_gpu_lock.sh: the GPU lock is for Python 3.11, not " + sys.version.split()[0])'
report="$(mktemp)"
trap 'rm -f "$report"' EXIT
"$PY" -m pip install --dry-run --ignore-installed --prefer-binary --quiet \
    --report "$report" -r requirements-gpu.lock
"$PY" - "$report" <<'PYEOF'
import json, re, sys
from pathlib import Path
def key(name): return re.sub(r"[-_.]+", "-", name).lower()
lock = {key(n): v for n, v in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$",
                                          Path("requirements-gpu.lock").read_text(), re.M)}
got = {key(i["metadata"]["name"]): i["metadata"]["version"]
       for i in json.loads(Path(sys.argv[1]).read_text())["install"]}
extra = sorted(f"{n}=={v}" for n, v in got.items() if lock.get(n) != v)
missing = sorted(n for n in lock if n not in got)
if extra or missing:
    sys.exit(f"requirements-gpu.lock is not closed: pip would also install {extra}; "
             f"not installed {missing}")
print(f"requirements-gpu.lock resolves: {len(lock)} packages")
PYEOF
flash="$(sed -n 's/^flash-attn==//p' requirements-gpu-build.lock)"
if ! "$PY" -m pip index versions flash-attn 2>/dev/null | grep -q -E "[ ,]${flash//./\\.}(,|$)"; then
    echo "requirements-gpu-build.lock: flash-attn==$flash is not on the index" >&2
    exit 1
fi
echo "flash-attn==$flash is on the index (sdist; built on the GPU machine)"
