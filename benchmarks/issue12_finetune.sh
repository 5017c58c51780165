#!/bin/bash
# Issue 12, "strong initialisation": fine-tune the free torchreid OSNet x0.25 MSMT17 model
# (4,101 identities, indoor and outdoor cameras) on the Market dev split with our recipe
# (CE + hinge on the L2-constrained pair classifier + RS@k on cosine), 256x128, one CPU
# thread, resumable:
#
#   DATA=../shared/data/market1501-dev INIT=../shared/weights/osnet_x0_25_msmt17.pth \
#     OUT=runs/m12b bash benchmarks/issue12_finetune.sh
set -euo pipefail
: "${DATA:?set DATA to the market1501-dev root}"
: "${INIT:?set INIT to osnet_x0_25_msmt17.pth}"
OUT=${OUT:-runs/m12b}; EPOCHS=${EPOCHS:-6}; RUN=${RUN:-msmt_ft}
export OMP_NUM_THREADS=${THREADS:-1} MKL_NUM_THREADS=${THREADS:-1} REID_NO_PROGRESS=1 PYTHONUNBUFFERED=1
mkdir -p "$OUT"
resume=(); [ -f "$OUT/$RUN/last.pt" ] && resume=(--resume "$OUT/$RUN/last.pt")
uv run reid train --data "$DATA" --epochs "$EPOCHS" --eval-every 3 --device cpu \
    --height 256 --width 128 --backbone osnet_x0_25 --init "$INIT" --lr 3e-4 \
    --val-ids 30 --seed 0 --lambda-triplet 0 \
    --set train.workers=0 --set train.warmup_epochs=1 --set train.amp=off \
    --set train.channels_last=false --set train.lambda_rsk=1 --set train.rsk_similarity=cosine \
    "${resume[@]}" --out "$OUT/$RUN" >> "$OUT/$RUN.log" 2>&1
grep "test " "$OUT/$RUN.log" | sed "s/^/$RUN: /"
