"""Multi-model endpoints: the registry of loaded models behind the container API SageMaker drives
when ``SAGEMAKER_MULTI_MODEL=true`` (its routes: :mod:`classifier.serving.multi_model_app`).

AWS developer guide, "Custom containers contract for multi-model endpoints": "your container
must support a set of APIs that enable Amazon SageMaker AI to communicate with the container
for loading, listing, getting, and unloading models as required. [...] The customer container
is expected to keep track of the loaded models using model_name as the mapping key."

Each loaded model is a whole :class:`Predictor`: its own class map, image size and
normalisation (its model_config.json), and its own micro-batcher thread.

One process holds the registry. SageMaker sends ``POST /models`` once per container, not once
per gunicorn worker, so with several workers only the one that happened to get the request
would hold the model and the others would answer 404. The inference toolkit's multi-model
server (MMS) has the same shape: one frontend process keeps the table of models and routes
each request to that model's own workers. Here that process is the single gunicorn worker,
its request threads the frontend, and each model's micro-batcher its worker (config.py
forces one worker in this mode).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from classifier import constants
from classifier.artifacts import ModelArtifactError
from classifier.serving.memory import current_rss, is_resource_exhaustion, release_freed_memory
from classifier.serving.model_errors import (
    ModelAlreadyLoaded,
    ModelError,
    ModelLoadFailed,
    ModelLoadRefused,
    ModelNotFound,
    ModelNotLoaded,
    ModelRestoring,
)
from classifier.serving.model_table import ModelTable

if TYPE_CHECKING:
    from classifier.serving.predictor import Predictor

logger = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 100
# A model's weights are read into memory at least once; the forward pass's activations and
# allocator slack come on top. Only the guess before a load: after it, RSS is measured.
WEIGHTS_GROWTH_FACTOR = 1.5
WEIGHTS_SUFFIXES = (".pt", ".bin", ".xml")


def weights_bytes(model_dir: Path) -> int:
    """Bytes of the model files on disk (a model.tar.gz counts as its compressed size)."""
    if model_dir.is_file():
        return model_dir.stat().st_size
    total = 0
    for path in model_dir.rglob("*"):
        if path.is_file() and (path.suffix in WEIGHTS_SUFFIXES or path.name.endswith(".tar.gz")):
            total += path.stat().st_size
    return total


@dataclass
class LoadedModel:
    name: str
    url: str
    predictor: Predictor
    rss_bytes: int
    load_seconds: float

    def describe(self) -> dict:
        spec = self.predictor.spec
        return {
            "modelName": self.name,
            "modelUrl": self.url,
            "architecture": spec.architecture,
            "numClasses": spec.num_classes,
            "imageSize": spec.image_size,
            "memoryMB": round(self.rss_bytes / 2**20, 1),
            "loadSeconds": round(self.load_seconds, 3),
        }


class ModelRegistry:
    """Loaded models by name, within a memory budget on this process's resident set.

    Loads run one at a time (the memory check needs the RSS of a quiet process), in the
    request thread: /ping and the invocations of loaded models keep being answered. With a
    :class:`ModelTable`, the set of loaded models outlives this worker: :meth:`restore` loads
    what a dead predecessor had loaded.
    """

    def __init__(
        self,
        load: Callable[[Path], Predictor],
        budget_bytes: int,
        rss: Callable[[], int] = current_rss,
        page_size: int = DEFAULT_PAGE_SIZE,
        table: ModelTable | None = None,
        wait_s: float = 60.0,
    ):
        self._load = load
        self.budget_bytes = budget_bytes
        self._rss = rss
        self.page_size = page_size
        self._table = table
        self._wait_s = wait_s
        self._models: dict[str, LoadedModel] = {}
        self._loading: set[str] = set()
        # Models the table lists that this worker has not loaded yet: {name: url}.
        self._pending: dict[str, str] = {}
        self._restored = threading.Event()
        self._restored.set()
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()

    def _forget(self, name: str) -> None:
        if self._table is not None:
            self._table.remove(name)

    @property
    def restoring(self) -> bool:
        """True while models a dead worker had loaded are being loaded again."""
        return not self._restored.is_set()

    def get(self, name: str) -> LoadedModel:
        """The model; one being restored is waited for (up to the server timeout)."""
        with self._lock:
            model, pending = self._models.get(name), name in self._pending
        if model is None and pending:
            self._restored.wait(self._wait_s)
            with self._lock:
                model, pending = self._models.get(name), name in self._pending
            if pending:
                raise ModelRestoring(f"model {name!r} is being loaded again after a worker restart; retry")
        if model is None:
            raise ModelNotLoaded(f"model {name!r} is not loaded")
        return model

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._models)

    def page(self, after: str | None) -> tuple[list[tuple[str, str]], str | None]:
        """One page of (name, url) in name order, models being restored included; the token is
        the last name shown, so loads and unloads between pages neither repeat nor skip one."""
        with self._lock:
            urls = {**self._pending, **{name: model.url for name, model in self._models.items()}}
        names = sorted(n for n in urls if after is None or n > after)
        shown = [(name, urls[name]) for name in names[: self.page_size]]
        more = len(names) > self.page_size
        return shown, (shown[-1][0] if more and shown else None)

    def load(self, name: str, url: str) -> LoadedModel:
        with self._lock:
            if name in self._models or name in self._loading or name in self._pending:
                raise ModelAlreadyLoaded(f"model {name!r} is already loaded")
            self._loading.add(name)
        try:
            with self._load_lock:
                loaded = self._load_within_budget(name, url)
            if self._table is not None:
                self._table.add(name, url)
            return loaded
        finally:
            with self._lock:
                self._loading.discard(name)

    def restore(self, wait: bool = True) -> None:
        """Load every model the table lists (a dead worker's), one at a time, in a thread of
        its own; one that no longer loads is dropped from the table with the reason in the log.

        The models are marked as being restored before this returns, so /ping is never green
        with one of them missing; ``wait=False`` returns while they load.
        """
        entries = self._table.entries() if self._table is not None else {}
        if not entries:
            return
        with self._lock:
            self._pending.update(entries)
            self._restored.clear()
        logger.warning("loading again the models a dead worker had loaded: %s", ", ".join(entries))
        thread = threading.Thread(target=self._restore_all, args=(entries,), name="restore-models")
        thread.daemon = True
        thread.start()
        if wait:
            thread.join()

    def _restore_all(self, entries: dict[str, str]) -> None:
        try:
            for name, url in entries.items():
                self._restore_one(name, url)
        finally:
            self._restored.set()

    def _restore_one(self, name: str, url: str) -> None:
        try:
            with self._load_lock:
                self._load_within_budget(name, url)
        except ModelError as error:
            logger.error("model %s could not be loaded again from %s: %s", name, url, error)
            self._forget(name)
        except Exception:  # noqa: BLE001 - the other models are still restored
            logger.exception("model %s could not be loaded again from %s", name, url)
            self._forget(name)
        finally:
            with self._lock:
                self._pending.pop(name, None)

    def _load_within_budget(self, name: str, url: str) -> LoadedModel:
        model_dir = Path(url)
        if not model_dir.exists():
            raise ModelNotFound(f"model {name!r}: {url} does not exist in the container")
        before = self._rss()
        expected = int(weights_bytes(model_dir) * WEIGHTS_GROWTH_FACTOR)
        if before + expected > self.budget_bytes:
            raise ModelLoadRefused(self._refusal(name, before, f"expects ~{expected / 2**20:.0f} MB"))
        started = time.perf_counter()
        predictor = self._load_or_explain(name, url, model_dir)
        seconds = time.perf_counter() - started
        after = self._rss()
        if after > self.budget_bytes:
            predictor.close()
            del predictor
            release_freed_memory()
            raise ModelLoadRefused(self._refusal(name, before, f"took {(after - before) / 2**20:.0f} MB"))
        loaded = LoadedModel(name, url, predictor, max(0, after - before), seconds)
        with self._lock:
            self._models[name] = loaded
        logger.info(
            "loaded model %s from %s in %.2f s: +%.0f MB, process now %.0f of %.0f MB",
            name, url, seconds, loaded.rss_bytes / 2**20, after / 2**20, self.budget_bytes / 2**20,
        )  # fmt: skip
        return loaded

    def _load_or_explain(self, name: str, url: str, model_dir: Path):
        """The loaded predictor; a failed load leaves no memory behind and says why: a bad
        artefact is :class:`ModelLoadFailed`, a lack of memory or of any other resource
        :class:`ModelLoadRefused`."""
        try:
            return self._load(model_dir)
        except ModelArtifactError as error:
            release_freed_memory()
            raise ModelLoadFailed(f"model {name!r} failed to load from {url}: {error}") from error
        except Exception as error:
            release_freed_memory()
            if is_resource_exhaustion(error):
                raise ModelLoadRefused(
                    f"model {name!r} could not be loaded from {url}: out of a resource "
                    f"({type(error).__name__}: {error})"
                ) from error
            raise

    def _refusal(self, name: str, before: int, what: str) -> str:
        return (
            f"not enough memory for model {name!r}: the process uses {before / 2**20:.0f} MB of a "
            f"{self.budget_bytes / 2**20:.0f} MB budget ({constants.MULTI_MODEL_MEMORY_MB_ENV}) "
            f"and the model {what}"
        )

    def unload(self, name: str) -> int:
        """Drop the model and wait for its batcher; the memory is returned before this returns."""
        self.get(name)  # a model being restored is unloaded once it is loaded
        with self._lock:
            model = self._models.pop(name, None)
        if model is None:
            raise ModelNotLoaded(f"model {name!r} is not loaded")
        self._forget(name)
        before = self._rss()
        model.predictor.close()
        del model
        release_freed_memory()
        freed = max(0, before - self._rss())
        logger.info("unloaded model %s: %.0f MB returned", name, freed / 2**20)
        return freed

    def close(self) -> None:
        for name in self.names():
            self.unload(name)
