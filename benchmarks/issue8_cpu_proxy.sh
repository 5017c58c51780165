#!/bin/bash
# Issue 8 on the CPU, as a proxy for the GPU comparison (docs/benchmarks.md, "issue 8"):
# every recipe fine-tunes the same backbone (OSNet x0.25, backbone initialised from the
# MSMT17 torchreid checkpoint through model.pretrained), 128x64 input, P16 x K4, lr 1e-3,
# 8 epochs, one CPU thread per run; the Market-1501 dev test split is only used at the end.
#
#   DATA=../shared/data/market1501-dev ZOO=../shared/weights/osnet_x0_25_msmt17.pth \
#   OUT=runs/issue8 SEED=0 bash benchmarks/issue8_cpu_proxy.sh [run ...]
#
# runs: main rsk_cos rsk_dis rsk_dis_simix rsk_dis_big main_rsk rsk_cos_hinge (default: all)
set -euo pipefail
: "${DATA:?set DATA to the market1501-dev root}" "${ZOO:?set ZOO to osnet_x0_25_msmt17.pth}"
OUT=${OUT:-runs/issue8}; SEED=${SEED:-0}; EPOCHS=${EPOCHS:-8}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 REID_NO_PROGRESS=1 PYTHONUNBUFFERED=1
common=(--data "$DATA" --epochs "$EPOCHS" --eval-every 4 --device cpu --height 128 --width 64
        --backbone osnet_x0_25 --lr 1e-3 --val-ids 30 --seed "$SEED"
        --set "model.pretrained=$ZOO" --set train.workers=0 --set train.warmup_epochs=1
        --set train.amp=off --set train.channels_last=false)
rsk=(--lambda-triplet 0 --lambda-hinge 0 --set train.lambda_rsk=1)
runs=("$@"); [ ${#runs[@]} -gt 0 ] || runs=(main rsk_cos rsk_dis rsk_dis_simix rsk_dis_big main_rsk rsk_cos_hinge)
mkdir -p "$OUT"
for run in "${runs[@]}"; do
  case $run in
    main) extra=();;                                          # CE + triplet + hinge
    rsk_cos) extra=("${rsk[@]}" --set train.rsk_similarity=cosine);;
    rsk_dis) extra=("${rsk[@]}" --set train.rsk_similarity=dissimilarity);;
    rsk_dis_simix) extra=("${rsk[@]}" --set train.rsk_similarity=dissimilarity --set train.simix=64);;
    rsk_dis_big) extra=("${rsk[@]}" --set train.rsk_similarity=dissimilarity --set train.simix=256
                        --set train.p=128 --set train.chunk=128);;   # batch 512, two-pass in chunks of 128
    main_rsk) extra=(--set train.lambda_rsk=1 --set train.rsk_similarity=cosine);;
    rsk_cos_hinge) extra=(--lambda-triplet 0 --set train.lambda_rsk=1 --set train.rsk_similarity=cosine);;
    *) echo "unknown run $run" >&2; exit 2;;
  esac
  uv run reid train "${common[@]}" "${extra[@]}" --out "$OUT/${run}_s$SEED" > "$OUT/${run}_s$SEED.log" 2>&1
  grep "test " "$OUT/${run}_s$SEED.log" | sed "s/^/$run seed $SEED: /"
done
