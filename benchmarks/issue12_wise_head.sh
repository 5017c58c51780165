#!/bin/bash
# Issue 12, session 6: weight-space ensembles of the default and its MSMT17 start (WiSE-FT),
# each with its pair classifier fitted again on its own embedding (train.freeze_embedding:
# backbone and adapter kept, only w and b trained by the hinge, then the calibration), on the
# Market dev split, one CPU, ~4 minutes per weight:
#
#   ALPHAS="0.5 0.75" OUT=runs/head bash benchmarks/issue12_wise_head.sh
#
# then runs/head/a<ALPHA>/model_fp16.pt is a checkpoint for --checkpoint (figures:
# docs/benchmarks.md, issue 12, session 6).
set -euo pipefail
ALPHAS=${ALPHAS:-"0.5 0.75"}; OUT=${OUT:-runs/head}; WISE=${WISE:-runs/wise}
DATA=${DATA:-../shared/data/market1501-dev}; START=${START:-../shared/weights/osnet_x0_25_msmt17.pth}
export OMP_NUM_THREADS=${THREADS:-2} MKL_NUM_THREADS=${THREADS:-2} REID_NO_PROGRESS=1 PYTHONUNBUFFERED=1
mkdir -p "$OUT"
uv run python -m reid_pipeline.bench.wise_ft "$START" --tuned default \
    --alpha "$(echo $ALPHAS | tr ' ' ,)" --out "$WISE"
for a in $ALPHAS; do
  uv run reid train --data "$DATA" --epochs 3 --eval-every 3 --device cpu \
      --height 256 --width 128 --backbone osnet_x0_25 --init "$WISE/a$a.pt" --lr 1e-3 \
      --val-ids 30 --seed 0 --lambda-triplet 0 \
      --set train.workers=0 --set train.warmup_epochs=0 --set train.amp=off \
      --set train.lambda_ce=0 --set train.channels_last=false --set train.freeze_embedding=true \
      --out "$OUT/a$a" > "$OUT/a$a.log" 2>&1
  grep "test " "$OUT/a$a.log" | sed "s/^/a=$a: /"
done
