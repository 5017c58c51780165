"""The offline demo (``scenario``: ``reid demo``) and the script that trains its small
model (``weights``: ``python -m reid_pipeline.demo.weights``)."""
