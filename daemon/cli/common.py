"""What every command module shares: logging set-up, common options, config loading."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from gwstream.daemon.config import Config, load_config

__all__ = ["setup_logging", "add_common", "add_endpoints", "load"]


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    formatter = logging.Formatter("%(asctime)sZ %(levelname)s %(name)s %(message)s")
    formatter.converter = time.gmtime  # UTC, whatever TZ a library sets at import
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper()))


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML configuration (configs/*.toml); defaults when omitted")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))


def add_endpoints(p: argparse.ArgumentParser, *names: str) -> None:
    for name in names:
        p.add_argument(f"--{name}-endpoint", dest=f"{name}_endpoint", default=None,
                       help=f"override endpoints.{name}")


def load(args, **extra) -> Config:
    overrides = {}
    for name in ("frames", "alerts", "blocks"):
        value = getattr(args, f"{name}_endpoint", None)
        if value is not None:
            overrides[f"endpoints.{name}"] = value
    overrides.update({k: v for k, v in extra.items() if v is not None})
    return load_config(args.config, overrides)
