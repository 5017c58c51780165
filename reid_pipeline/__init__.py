"""reid-pipeline: person re-identification in surveillance video."""

__version__ = "0.1.0"
