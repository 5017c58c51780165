"""Benchmarks, out of the stage folders: ``speed`` (``reid bench``), ``ranking``,
``experiments`` (the metric-learning CPU proxy), ``detector_table``, ``ssd_tracker_sweep``
and ``tracklet_pairs``. Each is run as ``python -m reid_pipeline.bench.<name>``; its
figures go to docs/benchmarks.md with the command."""
