"""Extra CLI subcommands. Each module here defines ``register(register_command)``; ``cli.py`` loads them all."""
