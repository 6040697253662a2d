"""The names and URLs of a multi-model endpoint's loaded models, kept outside the worker.

SageMaker sends ``POST /models`` once and then believes the model loaded until it sends
``DELETE``. The models themselves live in the gunicorn worker, which can die (the kernel's
OOM killer, a native crash) and be replaced by a fresh one; MMS, the inference toolkit's
server, keeps its model table in the frontend process for the same reason. Here the table
is a small JSON file in a directory the gunicorn master makes before it forks and removes
when it stops: a replacement worker reads it and loads the same models before it reports
healthy.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

logger = logging.getLogger(__name__)

TABLE_FILE = "loaded-models.json"


class ModelTable:
    """``{name: url}`` in load order, rewritten atomically on every change."""

    def __init__(self, directory: str | os.PathLike):
        self.path = Path(directory) / TABLE_FILE
        self._lock = threading.Lock()

    def entries(self) -> dict[str, str]:
        """What the previous worker had loaded; empty when nothing was, or the file is unreadable."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            logger.error("the table of loaded models %s is unreadable, starting empty: %s", self.path, error)
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(name): str(url) for name, url in data.items()}

    def add(self, name: str, url: str) -> None:
        with self._lock:
            self._write({**self.entries(), name: url})

    def remove(self, name: str) -> None:
        with self._lock:
            entries = self.entries()
            if entries.pop(name, None) is not None:
                self._write(entries)

    def _write(self, entries: dict[str, str]) -> None:
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps(entries))
        os.replace(partial, self.path)
