"""One tunable hyperparameter's range: what ``--range`` parses to and what both tuners search.

Every value a range may give is checked against the training container's own schema
(``classifier.hyperparameter_schema``) when the search is built, so no training job starts
only to refuse it.
"""

from __future__ import annotations

from dataclasses import dataclass

from classifier.hyperparameter_schema import check_range
from classifier_client.config import ConfigurationError


@dataclass(frozen=True)
class Range:
    """One tunable hyperparameter: ``continuous``/``integer`` [low, high] or ``categorical``."""

    kind: str
    low: float | None = None
    high: float | None = None
    values: tuple[str, ...] = ()
    scaling: str = "Auto"

    @property
    def bounds(self) -> tuple[float, float]:
        """A continuous or integer range's (low, high)."""
        if self.low is None or self.high is None:
            raise ConfigurationError(f"a {self.kind} range needs a low and a high bound")
        return self.low, self.high

    def to_sdk(self):
        from sagemaker.core.parameter import (
            CategoricalParameter,
            ContinuousParameter,
            IntegerParameter,
        )

        if self.kind == "continuous":
            return ContinuousParameter(*self.bounds, scaling_type=self.scaling)
        if self.kind == "integer":
            low, high = self.bounds
            return IntegerParameter(int(low), int(high), scaling_type=self.scaling)
        return CategoricalParameter(list(self.values))

    def describe(self) -> str:
        if self.kind == "categorical":
            return f"categorical:{','.join(self.values)}"
        suffix = ":log" if self.scaling == "Logarithmic" else ""
        low, high = self.bounds
        if self.kind == "integer":
            return f"{self.kind}:{int(low)}:{int(high)}{suffix}"
        return f"{self.kind}:{low}:{high}{suffix}"


def parse_range(text: str) -> tuple[str, Range]:
    """``NAME=continuous:LOW:HIGH[:log]``, ``NAME=integer:LOW:HIGH[:log]`` or
    ``NAME=categorical:A,B,C`` -> (NAME, Range)."""
    name, sep, spec = text.partition("=")
    kind, _, rest = spec.partition(":")
    kind = kind.strip().lower()
    try:
        if not sep or not name.strip():
            raise ValueError("expected NAME=KIND:...")
        if kind == "categorical":
            values = tuple(v.strip() for v in rest.split(",") if v.strip())
            if not values:
                raise ValueError("categorical needs at least one value")
            return name.strip(), Range("categorical", values=values)
        if kind in ("continuous", "integer"):
            parts = rest.split(":")
            if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2].lower() != "log"):
                raise ValueError(f"{kind} needs LOW:HIGH or LOW:HIGH:log")
            cast = float if kind == "continuous" else int
            low, high = cast(parts[0]), cast(parts[1])
            if not low < high:
                raise ValueError("LOW must be below HIGH")
            scaling = "Logarithmic" if len(parts) == 3 else "Auto"
            if scaling == "Logarithmic" and low <= 0:
                raise ValueError("log scaling needs LOW > 0")
            return name.strip(), Range(kind, low, high, scaling=scaling)
        raise ValueError(f"unknown kind {kind!r} (continuous, integer or categorical)")
    except ValueError as error:
        raise ConfigurationError(f"bad --range {text!r}: {error}") from error


def check_ranges(ranges: dict[str, Range]) -> None:
    """Every value SageMaker may sample from ``ranges`` must pass the training container's
    validation: a bound outside the schema would start jobs bound to fail, each one billed."""
    problems = []
    for name, spec in sorted(ranges.items()):
        if spec.kind == "categorical":
            values = spec.values
        elif spec.kind == "integer":
            values = tuple(str(int(bound)) for bound in spec.bounds)
        else:
            values = tuple(repr(bound) for bound in spec.bounds)
        problems += check_range(name, spec.kind, values)
    if problems:
        raise ConfigurationError("; ".join(problems) + " (the training jobs would refuse it; none started)")
