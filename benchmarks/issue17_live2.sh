#!/bin/bash
# Issue 17, live: two RTSP cameras at 10 fps each on loopback (tests/rtsp_server.py: Debian's
# GStreamer RTSP server, x264 zerolatency, the frames of the two shared clips looped), and
# `reid stream` on them with the embedded offline defaults (SSD on onnxruntime, default.pt
# on onnxruntime). The encoders share the CPU with the pipeline. Prints the drop rate and
# the lag from <out>/stream_summary.json.
#
#   OUT=runs/live2 DURATION=120 bash benchmarks/issue17_live2.sh
set -euo pipefail
OUT=${OUT:-runs/live2}; DURATION=${DURATION:-120}; FRAMES=${FRAMES:-/tmp/bench}
uv run python - "$FRAMES" <<'PY'
import os, sys, cv2
root = sys.argv[1]
for name, path in [("onebyone", "../shared/videos/one-by-one-person-detection.mp4"),
                   ("vtest", "../shared/videos/vtest_480x360.avi")]:
    d = os.path.join(root, name)
    if os.path.isdir(d) and os.listdir(d):
        continue
    os.makedirs(d, exist_ok=True)
    cap, i = cv2.VideoCapture(path), 0
    while (r := cap.read())[0]:
        cv2.imwrite(f"{d}/{i:05d}.jpg", r[1]); i += 1
PY
# the Debian GStreamer RTSP server packages (installed when missing, as the tests do)
uv run python -c "import sys; sys.path.insert(0, 'tests'); from rtsp_server import ensure_gst_rtsp; ensure_gst_rtsp()"
/usr/bin/python3 tests/rtsp_server.py --port 19560 --path /cam0 --width 768 --height 432 \
    --fps 10 "$FRAMES/onebyone/%05d.jpg" & s0=$!
/usr/bin/python3 tests/rtsp_server.py --port 19561 --path /cam1 --width 480 --height 360 \
    --fps 10 "$FRAMES/vtest/%05d.jpg" & s1=$!
trap 'kill $s0 $s1 2>/dev/null || true' EXIT
sleep 3
rm -rf "$OUT"
uv run reid stream rtsp://127.0.0.1:19560/cam0 rtsp://127.0.0.1:19561/cam1 \
    --camera lobby --camera street --out "$OUT" --duration "$DURATION" --status-every 30 "$@"
uv run python - "$OUT/stream_summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(json.dumps(s, indent=1)[:3000])
PY
