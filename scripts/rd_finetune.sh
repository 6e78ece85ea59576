#!/usr/bin/env bash
# Rate-distortion fine-tuning of a trained plain model, then the held-out comparison with JPEG-2000 (issue 7):
#   bash scripts/rd_finetune.sh runs/default_residual/best.pth 8
#   ENTROPY_MODEL=hyperprior bash scripts/rd_finetune.sh runs/default_residual/best.pth 8
# Trains RUNS/<variant>_l<lambda> (RUNS/<variant>_hyper_l<lambda> with the hyperprior) from the checkpoint's
# weights with loss lambda * D + R, exports it (integer quantisation step 1; a factorized model gets entropy
# tables counted on its training scenes, a hyperprior model brings its own integer tables and hyper-decoder) and
# runs the rate-distortion benchmark at quality 1 on the held-out GRD scenes (BENCH=0 skips it, e.g. when several
# lambdas are benchmarked together with scripts/rd_curve.sh). STEPS (default 240) is the CPU budget; BATCH x PATCH
# (default 8 x 128 px) the patches per step. A hyperprior needs patches as large as the codec's tiles (PATCH=512,
# BATCH=1): on 128-px patches its side information z is 2 x 2, every z sees the zero padding, and h_s learns
# scales that fail on the interior of a 512-px tile (docs/results.md). RUNS and OUT keep such runs apart.
set -euo pipefail
cd "$(dirname "$0")/.."
init=${1:?usage: rd_finetune.sh CHECKPOINT LAMBDA}
lmbda=${2:?usage: rd_finetune.sh CHECKPOINT LAMBDA}
variant=${VARIANT:-residual}
steps=${STEPS:-240}
batch=${BATCH:-8}
patch=${PATCH:-128}
runs=${RUNS:-runs/rd}
entropy_model=${ENTROPY_MODEL:-factorized}
case $entropy_model in
  factorized) tag="${variant}_l$lmbda"; name="$variant-rd-l$lmbda"; export_opts=() ;;
  hyperprior) tag="${variant}_hyper_l$lmbda"; name="$variant-rd-hyper-l$lmbda"; export_opts=(--no-entropy-tables) ;;
  *) echo "ENTROPY_MODEL must be factorized or hyperprior" >&2; exit 2 ;;
esac
run="$runs/$tag"
.venv/bin/sar-train --variant "$variant" --init "$init" --lmbda "$lmbda" --entropy-model "$entropy_model" \
  --out "$run" --epochs $((steps / 40)) --steps-per-epoch 40 --batch-size "$batch" --patch-size "$patch" --lr "${LR:-1e-4}" \
  --patience 1000 --device "${DEVICE:-cpu}" --no-progress --resume
[[ -f $runs/bundles/$tag/manifest.json ]] || \
  .venv/bin/sar-export "$run/best.pth" "$runs/bundles/$tag" --name "$name" "${export_opts[@]}"
[[ ${BENCH:-1} == 0 ]] || .venv/bin/python benchmarks/rate_distortion.py --model "$runs/bundles/$tag" \
  --scenes frankfurt panama --qualities 1 --device cpu --out "${OUT:-benchmarks/results/rd_heldout_grd_$tag}"
