"""User-facing errors.

Every bad input ends in one of these: the CLI prints ``error: <message>`` on one line and
exits non-zero, so the message must name the input (file, URL redacted, config key, camera).
"""

from __future__ import annotations


class ReidError(Exception):
    """Base class: a failure the user can act on (bad input, unreachable resource)."""

    exit_code = 2


class ConfigError(ReidError):
    """A config value or CLI flag is wrong; the message names the key."""


class InputError(ReidError):
    """A video, image folder, photo or dataset cannot be used as given."""


class SourceError(InputError):
    """A video source (file, folder, RTSP stream) failed to open or read."""


class CheckpointError(ReidError):
    """A weights/checkpoint file is missing, corrupt or of the wrong architecture."""


class DetectorUnavailable(ReidError):
    """A detector's weights cannot be had (offline) and fallback is disabled."""


class DatabaseError(ReidError):
    """The gallery database is unreachable, locked or inconsistent."""


class OutputError(ReidError):
    """The output folder cannot be created or written."""


class NotFoundError(ReidError):
    """An identity, camera or record named by the user does not exist."""
