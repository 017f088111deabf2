"""Bundled data sets, one module per assistant (listed in ``catalog.DATASET_MODULES``)."""
