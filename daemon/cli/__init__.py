"""The ``gwstream`` command line (``python -m gwstream.daemon.cli`` runs it too)."""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
