"""Secrets: which names and values are secret, and how a job keeps them out of what it writes.

Shared by the client, which refuses to send a secret (AWS, CreateTrainingJob's Environment:
"Do not include any security-sensitive information including account access IDs, secrets, or
tokens in any environment fields"), and the training job, which redacts any that reach it
anyway (for example ``MLFLOW_TRACKING_URI=http://user:pass@host/`` set by someone else) from
its log, failure file and outputs. Standard library only: the client imports it.
"""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

# A variable whose name holds one of these, in any case and position, holds a secret, unless
# a letter other than a plural "S" follows it: TOKENIZERS_PARALLELISM names no token.
SECRET_NAME_PARTS = (
    "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "API_KEY", "ACCESS_KEY", "PRIVATE_KEY",
)  # fmt: skip
_SECRET_NAME = re.compile("|".join(f"{part}(?![A-RT-Z])" for part in SECRET_NAME_PARTS))
MASK = "***"
# Shorter values are redacted only where they stand as a URI's password (user:PASS@):
# replacing every "abc" of a log would destroy it and tell the value anyway.
MIN_BARE_SECRET = 6


def names_a_secret(name: str) -> bool:
    return _SECRET_NAME.search(name.upper()) is not None


def uri_secret(uri: str) -> str | None:
    """The secret in a URI's userinfo: the password of ``scheme://user:password@host``, or the
    whole ``scheme://token@host`` (a token in the user's place); None when there is none."""
    if not uri_has_credentials(uri):
        return None
    parts = urlsplit(uri.strip())
    return parts.password or parts.username or None


def uri_has_credentials(uri: str) -> bool:
    if "://" not in uri:
        return False
    try:
        return "@" in urlsplit(uri.strip()).netloc
    except ValueError:
        return False


def redact_uri(uri: str) -> str:
    """``http://user:pass@host/x`` -> ``http://user:***@host/x``, ``http://token@host`` ->
    ``http://***@host``; other URIs unchanged."""
    if not uri_has_credentials(uri):
        return uri
    parts = urlsplit(uri.strip())
    host = parts.netloc.rpartition("@")[2]
    userinfo = f"{parts.username}:{MASK}" if parts.password else MASK
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{host}"))


class Redactor:
    """Replaces the secrets it was given by ``***`` in any text."""

    def __init__(self, secrets: Iterable[str] = ()):
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        bare = [re.escape(s) for s in self.secrets if len(s) >= MIN_BARE_SECRET]
        in_uri = [re.escape(s) for s in self.secrets if len(s) < MIN_BARE_SECRET]
        patterns = [*bare, *(f"(?<=[:/]){s}(?=@)" for s in in_uri)]
        self._pattern = re.compile("|".join(patterns)) if patterns else None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Redactor:
        """The values of variables named like secrets, and the passwords of URIs in any variable."""
        secrets = [value for name, value in environ.items() if names_a_secret(name)]
        secrets += [p for p in (uri_secret(value) for value in environ.values()) if p]
        return cls(secrets)

    def redact(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)


class RedactingStream(io.TextIOBase):
    """A text stream that writes through ``redactor`` to ``stream``."""

    def __init__(self, stream, redactor: Redactor):
        self._stream, self._redactor = stream, redactor

    def write(self, text: str) -> int:
        self._stream.write(self._redactor.redact(text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def fileno(self) -> int:
        return self._stream.fileno()

    def isatty(self) -> bool:
        return self._stream.isatty()

    @property
    def encoding(self):  # type: ignore[override]
        return self._stream.encoding


_installed = Redactor()


def install(environ: Mapping[str, str]) -> Redactor:
    """Redact this process's secrets from its stdout and stderr (prints, logging, tracebacks),
    and from what :func:`redact` is given. Call it before logging is configured."""
    global _installed
    _installed = Redactor.from_environ(environ)
    if _installed.secrets:
        if not isinstance(sys.stdout, RedactingStream):
            sys.stdout = RedactingStream(sys.stdout, _installed)
        if not isinstance(sys.stderr, RedactingStream):
            sys.stderr = RedactingStream(sys.stderr, _installed)
    return _installed


def redact(text: str) -> str:
    """``text`` without the secrets :func:`install` found (unchanged before it ran)."""
    return _installed.redact(text)
