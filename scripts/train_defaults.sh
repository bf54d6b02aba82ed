#!/usr/bin/env bash
# Train the two shipped defaults (vistok-f8, vistok-1d) concurrently on a CPU, one thread each,
# and copy the exported models into src/vistok/weights/<name>/ (config.json + model.safetensors).
#
#   scripts/train_defaults.sh [RUNS_DIR]        # default RUNS_DIR: runs/
#
# Data: the built-in sample sets, plus /usr/share/backgrounds/mate/nature when the Debian package
# mate-backgrounds is installed (`apt-get install -y mate-backgrounds`); without it the recipes
# train on the samples alone (data.optional_sources). Each recipe stops at schedule.max_minutes.
# Provenance and licences: docs/shipped_models.md.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-runs}"
mkdir -p "$RUNS"
pids=()
for name in vistok-f8 vistok-1d; do
  OMP_NUM_THREADS=1 python -m vistok train "configs/$name.yaml" --out "$RUNS/$name" \
    --set log.progress=false > "$RUNS/$name.log" 2>&1 &
  pids+=($!)
  echo "training $name (pid $!), log: $RUNS/$name.log"
done
for pid in "${pids[@]}"; do wait "$pid"; done
# vistok-1d was still improving at 500 steps: the shipped model continues the same run to 800
# steps (a warm restart of the cosine schedule from step 500 of 800).
OMP_NUM_THREADS=1 python -m vistok train configs/vistok-1d.yaml --out "$RUNS/vistok-1d" --resume \
  --set schedule.steps=800 --set schedule.max_minutes=22 --set log.progress=false >> "$RUNS/vistok-1d.log" 2>&1
for name in vistok-f8 vistok-1d; do
  mkdir -p "src/vistok/weights/$name"
  cp "$RUNS/$name/model/config.json" "$RUNS/$name/model/model.safetensors" "src/vistok/weights/$name/"
  echo "shipped $name -> src/vistok/weights/$name"
done
