"""Subcommands of ``xai-pool``: one module per command, each with ``register(subparsers)``."""
