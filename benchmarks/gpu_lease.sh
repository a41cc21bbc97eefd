#!/usr/bin/env bash
# One GPU lease in one command (docs/models.md, session 28): the inference speed rows on CUDA (with the
# engine's default tiles and with whole frames, and one profiled stack of each generator), then #32's
# runs trained side by side (the encode-once arm the CPU legs carry on, resumed from its committed
# checkpoint, and the shipped U-Net's weights trained on: session 30 found the U-Net's curve still rising
# where the encode-once generator's had flattened), then that arm's inference speed beside the shipped
# U-Net's, then the writing rows of #33 on the machine's cores (about 40 s).
#
#   bash benchmarks/gpu_lease.sh OUT SECONDS [DEVICE SCALE]
#
# OUT receives results.tgz (the inference tables, model files, gpu_train.json, logs) and the runs'
# training checkpoints (to go on with on the CPU); SECONDS bounds the training command (data, probes
# and the main phase). DEVICE and SCALE (cuda full, by default) are "cpu toy" for a dry run here.
# ARM and ARM_CHECKPOINT name the carried run (benchmarks.gpu_train.RUNS) and its checkpoint.
# Wheels in $WHEELS (default .whl/: pydantic, zarr, ome-types and the other packages the GPU machine
# lacks, built for its Python 3.12) are installed first when present.
set -uo pipefail
out=${1:?OUT}
total=${2:?SECONDS}
device=${3:-cuda}
scale=${4:-full}
work=${WORK:-runs/lease}
arm=${ARM:-2plane_eo_b6_bf16_balanced_ft}
checkpoint=${ARM_CHECKPOINT:-benchmarks/checkpoints/encode_once_d16_k4_bf16_balanced_ft.ckpt}
runs=$arm,2plane_d3_b6_shipped_ft
mkdir -p "$out" "$work"
wheels=${WHEELS:-.whl}
if compgen -G "$wheels/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$wheels"/*.whl || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
quick=() toy=()
[ "$scale" = toy ] && quick=(--quick) toy=(--patch 80 --probe-steps 6)
t0=$SECONDS
# the training data on every core while the GPU measures inference
python3 -c "from pathlib import Path; from benchmarks.gpu_train import simulate; simulate(Path('$work/data'), '$scale')" &
simulating=$!
timeout 150 python3 -m benchmarks.inference --device "$device" "${quick[@]}" --out "$work/inference" ||
    echo "inference rows failed (exit $?)"
# the same rows with whole 2048² frames in one tile: how much of the engine's time its tiles cost
timeout 150 python3 -m benchmarks.inference --device "$device" "${quick[@]}" --tile-size 2048 \
    --out "$work/inference_whole_frames" || echo "whole-frame rows failed (exit $?)"
# where a 2048² stack's time goes (each engine phase, the operators): the engine against the eager loop
timeout 90 python3 -m benchmarks.inference --device "$device" "${quick[@]}" --profile --out "$work/profile" ||
    echo "profile failed (exit $?)"
wait $simulating || exit 1
echo "data and inference rows after $((SECONDS - t0)) s"
timeout $((total + 60)) python3 -m benchmarks.gpu_train --device "$device" --scale "$scale" \
    --data "$work/data" --work "$work/gpu" --out "$work/train" --total "$total" --runs "$runs" "${toy[@]}" \
    --resume "$arm=$checkpoint" --keep-checkpoints "$runs" || {
    echo "training failed (exit $?); the runs' last lines:"
    tail -n 15 "$work"/gpu/train_*.log
}
echo "trained after $((SECONDS - t0)) s"
if [ -f "$work/train/$arm.pt" ]; then
    timeout 120 python3 -m benchmarks.inference --device "$device" "${quick[@]}" --side-by-side \
        --model mm_deepz/models/deepz_2plane.pt --model "$work/train/$arm.pt" --out "$work/side_by_side" ||
        echo "side-by-side rows failed (exit $?)"
fi
# #33 on a machine with more cores than CI's two: the recorders against raw page-cache writes
mkdir -p "$work/writing" && cp docs/benchmarks.json "$work/writing/" &&
    timeout 120 python3 -m benchmarks "${quick[@]}" --out "$work/writing" --section writing ||
    echo "writing rows failed (exit $?)"
echo "writing rows after $((SECONDS - t0)) s"
for ckpt in "$work"/train/*.ckpt; do
    [ -f "$ckpt" ] && mv "$ckpt" "$out/"
done
tar czf "$out/results.tgz" -C "$work" --exclude data --exclude gpu . && echo "done after $((SECONDS - t0)) s"
