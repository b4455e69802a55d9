"""relayd's own exceptions. Each message names what was wrong and what to do about it."""

from __future__ import annotations


class RelaydError(Exception):
    """Base for errors shown to an operator (the CLI prints the message, no traceback)."""


class KeyFileError(RelaydError):
    """A key file is missing, unreadable, too permissive or not a relayd key."""


class TrustFileError(RelaydError):
    """A trust bundle file is missing or unusable."""


class ConfigError(RelaydError):
    """A configuration file is invalid. The message names the file, the key and the fix."""

    def __init__(self, path: str, key: str, problem: str) -> None:
        super().__init__(f"{path}: {key}: {problem}")
        self.path = path
        self.key = key
        self.problem = problem
