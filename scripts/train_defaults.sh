#!/usr/bin/env bash
# Reproduce the shipped defaults (v2) on a 2-core CPU and copy them into src/vistok/weights/<name>/:
#
#   1. vistok-f8  (configs/vistok-f8.yaml): conv2d f8 + FSQ, ~65 min on one thread;
#   2. vistok-1d  (configs/vistok-1d.yaml): latent1d-grid over the new vistok-f8 (it reads the
#      shipped name, so step 1 must be copied in first), PCA warm start, ~60 min on two threads;
#   3. vistok-f8 phase 2 (configs/vistok-f8-flat.yaml): 30 min fine-tune with generated flat colours;
#      phase 3 (configs/vistok-f8-p3.yaml, v2.1): 95 more minutes at a lower learning rate;
#   4. vistok-pca, the equal-bits baseline (vistok fit-pca on 4096 crops, about 7 minutes).
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
# phase 2 of vistok-f8 (flat colours keep their level); vistok-1d keeps the phase-1 backbone it was trained on
OMP_NUM_THREADS=1 python -m vistok train configs/vistok-f8-flat.yaml --out "$RUNS/vistok-f8-flat" \
  --set model.init_from="$RUNS/vistok-f8/model" --set log.progress=false > "$RUNS/vistok-f8-flat.log" 2>&1
# phase 3 (v2.1): the same data, lower learning rate, longer cosine
OMP_NUM_THREADS=1 python -m vistok train configs/vistok-f8-p3.yaml --out "$RUNS/vistok-f8-p3" \
  --set model.init_from="$RUNS/vistok-f8-flat/model" --set log.progress=false > "$RUNS/vistok-f8-p3.log" 2>&1
mkdir -p src/vistok/weights/vistok-f8
cp "$RUNS/vistok-f8-p3/model/config.json" "$RUNS/vistok-f8-p3/model/model.safetensors" src/vistok/weights/vistok-f8/
echo "shipped vistok-f8 (phase 3) -> src/vistok/weights/vistok-f8"
python -m vistok fit-pca --spec pca:tokens=128,coeffs_per_token=2,bits=8 --data corpus:train \
  --data samples:photos+text+faces --crops 4096 --size 128 -o "$RUNS/vistok-pca/model"
ship vistok-pca
