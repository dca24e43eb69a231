#!/usr/bin/env bash
# The GPU check (experiments/gpu_check.py) on a lent GPU machine: the wheels it lacks (hydra-core, omegaconf,
# antlr4; made here by `.venv/bin/python experiments/gpu_check.py --prepare` into the ignored .gpu/) go into a
# site folder, then every stage runs; results in $OUT (gpu_check.json, gpu_check.md, gpu_check.log).
# The device call: command "bash experiments/gpu_check.sh", carry [".gpu"] (README.md, "GPU check").
# Extra arguments go to gpu_check.py (e.g. --stages generation,throughput).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-outputs/gpu_check}
mkdir -p "$OUT"
PY=${PY:-python3}
# The carried wheels go first on the path (where hydra is installed too, as here, they shadow it: a rehearsal).
if ls .gpu/wheels/*.whl >/dev/null 2>&1; then
    SITE=${GPU_CHECK_SITE:-/tmp/gpu_check_site}
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        .gpu/wheels/*.whl || exit 2
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
elif ! "$PY" -c "import hydra, omegaconf" 2>/dev/null; then
    echo "gpu_check.sh: no hydra/omegaconf and no .gpu/wheels (run gpu_check.py --prepare here, carry .gpu)"
    exit 2
fi
export PYTHONUNBUFFERED=1
"$PY" experiments/gpu_check.py --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_check.log"
