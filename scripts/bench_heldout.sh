#!/usr/bin/env bash
# The held-out benchmark behind docs/shipped_models.md: the shipped models, JPEG/WebP sweeps, and a WebP
# thumbnail and WebP at each learned point's own bytes per image, on the held-out photo corpus
# (docs/data.md; install it with the apt-get line `vistok corpus` prints). ~15 min on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
vistok bench --data corpus:heldout -t vistok-f8 -t vistok-1d -t vistok-pca -t jpeg -t webp \
  --suites recon,codebook --equal-bytes thumbnail --equal-bytes webp -o "${1:-results}" --name heldout-v2
