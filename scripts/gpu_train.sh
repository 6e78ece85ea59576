#!/usr/bin/env bash
# One device call that turns the GPU's minutes into a trained default model (issue: GPU standing order).
#
# Here, before the call:   .venv/bin/python -m trainer.pack --data ../shared/data/sar/MANIFEST.json --out .gpu_data/planes.npz
# The call (device tool):  run(command="bash scripts/gpu_train.sh", carry=[".gpu_data"], timeout_s=600)
# Rehearsal on this CPU:   bash scripts/gpu_train.sh --dry-run          (a 20-second run, same code path)
#
# It resumes the committed warm start (checkpoints/warm_start_<variant>.pth: step count and history go on,
# the optimiser starts fresh) on the packed data, on CUDA, for MINUTES (default 8) and writes to $OUT:
#   warm_start.pth  fp16 weights + history, refreshed every minute (a run cut at the call's limit still
#                   returns its last minute), the file to commit or to `sar-export`
#   train.log, history.jsonl, gpu.txt (nvidia-smi and versions), stdout.log
# Environment: VARIANT (the bundled default model's, from its manifest), WARM (the warm start above), MINUTES (8), MAX_STEPS
# (none: MINUTES alone ends the run; a rehearsal that must reach a step whatever the machine's load sets it), BATCH (32), LR (1.5e-5), PATCH (256), DATA (.gpu_data/planes.npz),
# AMP (1: bf16 autocast, `sar-train --amp`; on the CPU it matched float32 step for step, within +-0.13% BD-rate over
# 2,000 steps, benchmarks/results/branch_runs/bf16/; 0: float32 with TF32 convolutions).
# LR: the warm start was last trained at 3.125e-6 with batch 4 (sessions 14-15); for 8x the batch, 1.5e-5 lies
# between square-root (8.8e-6) and linear (2.5e-5) scaling, so minutes of GPU training go on from it instead of
# shaking it up first. LR_DROP_AFTER (9000) steps after the warm start's step, the rate drops by LR_DROP_FACTOR
# (0.25): session 17's call ended at validation loss 1.7424, and 500 CPU steps at about a fifth of its rate took
# it to 1.7407 (session 18; 2,500 steps: 1.7402 and +0.2 points of held-out BD-rate), so the call's last quarter
# (about 12,000 steps in 8 minutes) anneals instead of leaving that to the CPU. LR_DROP_AFTER= (empty): no drop.
set -euo pipefail
cd "$(dirname "$0")/.."
dry=0
[[ ${1:-} == --dry-run ]] && dry=1
py=python3
[[ -x .venv/bin/python ]] && py=.venv/bin/python
variant=${VARIANT:-$($py -c "import json; print(json.load(open('sar_compress_plugin/models/default/manifest.json'))['variant'])")}
data=${DATA:-.gpu_data/planes.npz}
warm=${WARM-checkpoints/warm_start_${variant}.pth}
if [[ $dry == 1 ]]; then
  device=cpu minutes=${MINUTES:-0.3} batch=${BATCH:-2} patch=${PATCH:-128} out=${OUT:-runs/gpu_dry_run/out}
  extra=(--channels 8 --latent-channels 16 --hyper-channels 8 --threads 1)
  warm=${WARM:-}  # the rehearsal trains a small model from scratch (or a small WARM): the code path is under test
else
  device=cuda minutes=${MINUTES:-8} batch=${BATCH:-32} patch=${PATCH:-256} out=${OUT:?OUT is set by the device tool}
  extra=()
fi
if [[ ! -f $data ]]; then
  echo "error: $data is missing: pack the data here first (python -m trainer.pack ...) and carry .gpu_data" >&2
  exit 2
fi
if ! command -v flock >/dev/null; then  # publish() takes its lock with it: without, no checkpoint would come back
  echo "error: flock (util-linux) is missing" >&2
  exit 2
fi
run=$(mktemp -d "${TMPDIR:-/tmp}/gpu_run.XXXXXX")  # the run folder; its state is published to $OUT, then removed
mkdir -p "$out"
{ date -u; nvidia-smi 2>&1 || echo "no nvidia-smi"; $py -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } > "$out/gpu.txt" 2>&1

publish() {  # the run's state into $OUT, each file replaced atomically; 1 when its last.pth could not be
  # One publish at a time, under a lock on the run folder's publish.lock: the exit's publish and a minute's
  # publish cut by the exit both wrote $OUT's one .tmp, so a half-written warm start could be renamed into
  # place. The lock is held by fd 9, which every command below inherits: a publisher killed mid-publish keeps it
  # until its warm_start step has exited.
  flock 9 || return 1
  local ok=0
  if [[ -f $run/last.pth ]]; then
    $py -m trainer.warm_start "$run/last.pth" "$out/warm_start.pth.tmp" >/dev/null \
      && mv "$out/warm_start.pth.tmp" "$out/warm_start.pth" || ok=1
  fi
  for f in train.log history.jsonl; do [[ -f $run/$f ]] && cp "$run/$f" "$out/$f.tmp" && mv "$out/$f.tmp" "$out/$f"; done
  return $ok
} 9>"$run/publish.lock"
( while sleep 60; do publish || true; done ) &
publisher=$!
# no publish starts after the loop is killed, and the exit's waits for the lock: it publishes the last checkpoint.
# The run folder is removed only once that checkpoint is in $OUT: otherwise it holds the only copy, and the call
# fails (exit 1), for on the device machine the kept folder never comes back.
trap 'kill $publisher 2>/dev/null || true
  if publish; then rm -rf "$run"; else echo "error: the last checkpoint could not be published: $run is kept" >&2; exit 1; fi' EXIT

[[ ${AMP:-1} == 1 ]] && extra+=(--amp)
resume=()  # sar-train --resume goes on with the warm start's own model shape (e.g. its channel context)
drop=()
if [[ -n $warm && -f $warm ]]; then
  resume=(--resume "$warm")
  if [[ -n ${LR_DROP_AFTER-9000} ]]; then
    start=$($py -c "import sys; from trainer.checkpoint import load_checkpoint; print(load_checkpoint(sys.argv[1])['step'])" "$warm")
    drop=(--lr-drop-step $((start + ${LR_DROP_AFTER-9000})) --lr-drop-factor "${LR_DROP_FACTOR:-0.25}")
  else  # no drop, said explicitly, whatever schedule the warm start's config names
    drop=(--lr-drop-factor 1)
  fi
fi
PYTHONUNBUFFERED=1 $py -m trainer --variant "$variant" --data "$data" --out "$run" --device "$device" \
  --batch-size "$batch" --patch-size "$patch" --lr "${LR:-1.5e-5}" --max-minutes "$minutes" \
  --steps-per-epoch "${STEPS_PER_EPOCH:-500}" --checkpoint-minutes 1 --no-progress ${MAX_STEPS:+--max-steps "$MAX_STEPS"} \
  "${resume[@]}" "${drop[@]}" "${extra[@]}" \
  2>&1 | tee "$out/stdout.log"
