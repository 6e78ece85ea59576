#!/usr/bin/env bash
# The learned rate-distortion curve against JPEG-2000 (issues 6 and 7): every bundle under RUNS/bundles that
# scripts/rd_finetune.sh made (one per lambda), each at QUALITIES (default 0.5 1 2 4: the quantisation step the
# model was trained for, times 0.5 to 4); the BD-rate uses the lower envelope of all these points. JPEG-2000 runs
# in the same process on the same held-out GRD scenes, down to 0.03 bpp so its curve reaches the learned dB RMSE:
#   for l in 2 8 32 128; do BENCH=0 bash scripts/rd_finetune.sh runs/default_residual/best.pth $l; done
#   bash scripts/rd_curve.sh
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-runs/rd}
variant=${VARIANT:-residual}
mapfile -t bundles < <(for b in "$runs/bundles/${variant}"_l*; do [[ -d $b ]] && echo "${b##*_l} $b"; done \
  | sort -g | cut -d' ' -f2)
(( ${#bundles[@]} )) || { echo "no bundles in $runs/bundles (run scripts/rd_finetune.sh first)" >&2; exit 2; }
.venv/bin/python benchmarks/rate_distortion.py --model "${bundles[@]}" --scenes frankfurt panama \
  --qualities ${QUALITIES:-0.5 1 2 4} \
  --jp2-bpp 0.03 0.05 0.075 0.1 0.15 0.25 0.35 0.5 0.75 1 1.5 2 --device "${DEVICE:-cpu}" \
  --out "${OUT:-benchmarks/results/rd_curve_${variant}}"
