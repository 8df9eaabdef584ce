"""Financial sentiment monitoring: topic + sentiment over a stream of texts, windowed trends in SQLite, alerts."""
