"""The pipeline: the engine's two halves (``engine``), the one builder (``build``), and its
drivers: recorded footage (``recorded``, ``reid process``), live streams (``live``,
``reid stream``) and search (``search``). See docs/architecture.md."""
