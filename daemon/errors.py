"""Exception types of gwstream, raised at the edges (config, wire decode, file read).

Every message names the value received and what was expected, with units.
"""

from __future__ import annotations

__all__ = [
    "GwstreamError",
    "ConfigError",
    "WireError",
    "FrameFileError",
]


class GwstreamError(Exception):
    """Base class of every error gwstream raises on purpose."""


class ConfigError(GwstreamError, ValueError):
    """A configuration key is unknown or holds an impossible value.

    Parameters
    ----------
    key : str
        Dotted path of the key, e.g. ``"psd.fftlength_s"``.
    value : object
        The value received.
    expected : str
        What would have been accepted, with units.
    """

    def __init__(self, key: str, value: object, expected: str):
        self.key = key
        self.value = value
        self.expected = expected
        super().__init__(f"config key {key!r} = {value!r}: expected {expected}")


class WireError(GwstreamError, ValueError):
    """A ZeroMQ message could not be decoded.

    Parameters
    ----------
    reason : str
        Short machine-readable reason, used as the counter label
        (``"bad_json"``, ``"bad_length"``...).
    detail : str
        Human-readable detail naming the offending value.
    """

    def __init__(self, reason: str, detail: str):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class FrameFileError(GwstreamError, OSError):
    """A GWF or HDF5 data file is missing, unreadable or not in the expected layout."""
