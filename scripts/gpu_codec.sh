#!/usr/bin/env bash
# The second device call of the GPU standing order (issue 17): the codec's networks on the GPU, the CPU entropy
# coding beside them, the end-to-end bound, and decoding across devices (benchmarks/gpu_codec.py says what and how).
#
# Here, before the call (once; both folders are git-ignored and travel with `carry`). The device has neither
# constriction nor zstandard, and the checkout, the small pack and both wheels must fit in 64 MiB
# (tests/unit/test_gpu_script.py checks the sum):
#   .venv/bin/python -m trainer.pack --data ../shared/data/sar/MANIFEST.json --max-planes 16 --min-side 512 \
#     --out .gpu_codec_data/planes.npz
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 -d .whl constriction==0.5.0 zstandard
# The call (device tool):  run(command="bash scripts/gpu_codec.sh", carry=[".gpu_codec_data", ".whl"], timeout_s=300)
# Afterwards, here:        .venv/bin/python benchmarks/gpu_codec.py --verify-chunks <files_at>/gpu_chunks.npz
# Rehearsal on this CPU:   bash scripts/gpu_codec.sh --dry-run
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ${1:-} == --dry-run ]]; then
  exec .venv/bin/python benchmarks/gpu_codec.py --device cpu --quick --data "${DATA:-.gpu_codec_data/planes.npz}" \
    --out "${OUT:-runs/gpu_codec_dry}"
fi
for wheel in constriction-0.5.0 zstandard-; do
  if ! ls .whl/${wheel}*-cp312-*.whl >/dev/null 2>&1; then
    echo "error: .whl/ has no ${wheel%-} wheel for Python 3.12: download it here (see above) and carry .whl" >&2
    exit 2
  fi
done
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
out=${OUT:?OUT is set by the device tool}
PYTHONUNBUFFERED=1 python3 benchmarks/gpu_codec.py --device cuda --data "${DATA:-.gpu_codec_data/planes.npz}" --out "$out" \
  2>&1 | tee "$out/stdout.log"
