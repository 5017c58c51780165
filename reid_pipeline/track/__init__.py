"""Stage ``track``: per-camera detections -> tracklets (ByteTrack/BoT-SORT from
ultralytics), with the crop quality filter; see ``tracker``."""
