"""Data the models train and evaluate on: Market-1501 layouts (``market``) and the
generated scene of the offline demo and the tests (``scene``)."""
