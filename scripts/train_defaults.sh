#!/usr/bin/env bash
# Reproduce the shipped defaults (v2) on a 2-core CPU and copy them into src/vistok/weights/<name>/:
#
#   1. vistok-f8  (configs/vistok-f8.yaml): conv2d f8 + FSQ, ~60 min on one thread;
#   2. vistok-1d  (configs/vistok-1d.yaml): latent1d-grid over the new vistok-f8 (it reads the
#      shipped name, so step 1 must be copied in first), PCA warm start, ~60 min on two threads;
#   3. the pca baseline (vistok fit-pca) used by docs/shipped_models.md, into RUNS_DIR/pca.
#
#   scripts/train_defaults.sh [RUNS_DIR]        # default RUNS_DIR: runs/
#
# Data: the photo corpus (docs/data.md), installed with `vistok corpus` 's apt-get line, plus
# the built-in samples. Each recipe stops at schedule.max_minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-runs}"
mkdir -p "$RUNS"
ship() {
  mkdir -p "src/vistok/weights/$1"
  cp "$RUNS/$1/model/config.json" "$RUNS/$1/model/model.safetensors" "src/vistok/weights/$1/"
  echo "shipped $1 -> src/vistok/weights/$1"
}
OMP_NUM_THREADS=1 python -m vistok train configs/vistok-f8.yaml --out "$RUNS/vistok-f8" \
  --set log.progress=false > "$RUNS/vistok-f8.log" 2>&1
ship vistok-f8
OMP_NUM_THREADS=2 python -m vistok train configs/vistok-1d.yaml --out "$RUNS/vistok-1d" \
  --set log.progress=false > "$RUNS/vistok-1d.log" 2>&1
ship vistok-1d
for spec in pca:tokens=128,coeffs_per_token=2,bits=8 pca:tokens=128,coeffs_per_token=4,bits=4; do
  python -m vistok fit-pca --spec "$spec" --data corpus:train --data samples:photos+text+faces \
    --crops 4096 --size 128 -o "$RUNS/pca/${spec//[:,=]/_}"
done
