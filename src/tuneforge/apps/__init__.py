"""Applications built on TuneForge's public API (the customer-service assistant, ...)."""
