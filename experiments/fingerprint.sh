#!/usr/bin/env bash
# Behaviour fingerprint of a checkout: the shipped model's KITTI dev predictions, the invariance suite, a
# fixed-seed generated set and a tiny fixed-seed training. Run it on two commits and compare the printed lines
# (a refactor must leave them byte-identical).
#   experiments/fingerprint.sh OUT_DIR [GENERATE_MODULE]
#   GENERATE_MODULE: depth_pose.cli.generate (default; generation.cli before commit f30e387)
# Needs ../shared/data/real beside the checkout (or $DEPTH_POSE_REAL_DATA) and the project venv (.venv of this checkout, or $VENV).
set -euo pipefail
OUT=$(realpath -m "$1"); GEN=${2:-depth_pose.cli.generate}
CODE=$(cd "$(dirname "$0")/.." && pwd); PY=${VENV:-$CODE/.venv}/bin/python
REAL=${DEPTH_POSE_REAL_DATA:-$CODE/../shared/data/real}
mkdir -p "$OUT"; cd "$CODE"
export PYTHONPATH=$CODE ANNY_CACHE_DIR=${ANNY_CACHE_DIR:-$CODE/.cache/anny} DEPTH_POSE_ROOT=$OUT/root
$PY -m depth_pose.cli.eval keypoints="$REAL/kitti_pedestrians_dev.jsonl" out="$OUT/kitti/pred.jsonl" \
  progress=false plots=false > "$OUT/kitti.log" 2>&1
$PY -m depth_pose.cli.eval suite=invariance out="$OUT/suite/samples.jsonl" progress=false plots=false \
  > "$OUT/suite.log" 2>&1
$PY -m "$GEN" num_samples=30000 shard_size=10000 seed=5 out_dir="$OUT/gen" progress=false > "$OUT/gen.log" 2>&1
$PY -m depth_pose.cli.train data.num_samples=20000 data.gen_seed=3 trainer.max_epochs=2 model=mlp_small \
  logger=csv progress=false hydra.run.dir="$OUT/train" > "$OUT/train.log" 2>&1
{
  echo "kitti predictions $(sha256sum < "$OUT/kitti/pred.jsonl" | cut -c1-64)"
  echo "suite samples     $(sha256sum < "$OUT/suite/samples.jsonl" | cut -c1-64)"
  $PY -c "import json,sys; m=json.load(open(sys.argv[1])); print('generated set    ', m['dataset_id'],
    ' '.join(s['sha256'][:16] for s in m['shards']))" "$OUT/gen/manifest.json"
  $PY -c "import csv,sys; r=[x for x in csv.DictReader(open(sys.argv[1])) if x.get('val/ale')];
print('tiny training     val/ale', ' '.join(x['val/ale'] for x in r))" "$(find "$OUT/train" -name metrics.csv | head -1)"
} | tee "$OUT/fingerprint.txt"
