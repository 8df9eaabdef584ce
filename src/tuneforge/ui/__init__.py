"""``tuneforge ui``: a local web workbench over the Python API: train, watch, compare and try runs."""
