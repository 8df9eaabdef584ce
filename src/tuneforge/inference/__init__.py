"""Inference: the Predictor shared by the CLI and the HTTP server."""
