"""Production and shadow variants: the models one endpoint serves side by side.

``deploy --variant NAME=MODEL_DATA[:WEIGHT]`` makes one production variant per model, which
share the traffic by weight (an A/B test); ``deploy --shadow NAME=MODEL_DATA:PERCENT`` adds a
shadow variant that gets a copy of that share of the requests, whose answers nobody sees but
data capture and CloudWatch. ``weights ENDPOINT NAME=WEIGHT`` moves the traffic later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from classifier_client.config import ConfigurationError

DEFAULT_VARIANT = "AllTraffic"
# API reference, ProductionVariant.VariantName: "Maximum length of 63. Pattern:
# ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}".
VARIANT_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
# API reference, ProductionVariant.InitialVariantWeight: "Valid Range: Minimum value of 0."
# A weight of 0 keeps a variant deployed but sends it no traffic.
DEFAULT_WEIGHT = 1.0


@dataclass(frozen=True)
class Variant:
    """A production variant: a model and its share of the traffic (weight / sum of weights)."""

    name: str
    model_data: str
    # None: not given (deploy: 1; update: the weight the variant serves with now).
    weight: float | None = None

    @property
    def share(self) -> float:
        return DEFAULT_WEIGHT if self.weight is None else self.weight


@dataclass(frozen=True)
class Shadow:
    """A shadow variant: a model that receives a copy of ``percent`` % of the requests."""

    name: str
    model_data: str
    percent: int

    def weight(self, production_weight: float) -> float:
        """The shadow's InitialVariantWeight. ProductionVariant.InitialVariantWeight: "The traffic
        to a production variant is determined by the ratio of the VariantWeight to the sum of all
        VariantWeight values"; a shadow's weight, over the one production variant's, is the share
        of the requests copied to it (the guide's example gives both 1: every request)."""
        return production_weight * self.percent / 100


def check_name(name: str, flag: str) -> str:
    if not VARIANT_NAME.match(name):
        raise ConfigurationError(
            f"{flag}: {name!r} is not a variant name (letters, digits and inner hyphens, at most "
            "63 characters; AWS's pattern ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62})"
        )
    return name


def parse_weight(text: str, flag: str) -> float:
    try:
        weight = float(text)
    except ValueError:
        raise ConfigurationError(f"{flag}: weight {text!r} is not a number") from None
    if not weight >= 0 or weight == float("inf"):
        raise ConfigurationError(f"{flag}: weight {text!r} must be a finite number >= 0")
    return weight


def _split_suffix(text: str, flag: str, form: str) -> tuple[str, str, str | None]:
    """``NAME=MODEL_DATA[:SUFFIX]``; an s3:// URI has colons of its own, so SUFFIX is what
    follows the last colon only where that is not part of the URI."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise ConfigurationError(f"{flag} takes {form}, got {text!r}")
    head, colon, tail = rest.rpartition(":")
    if colon and head and "/" not in tail and head not in ("s3", "file"):
        return name, head, tail
    return name, rest, None


def parse_variant(text: str) -> Variant:
    """``--variant NAME=MODEL_DATA[:WEIGHT]``."""
    name, model_data, weight = _split_suffix(text, "--variant", "NAME=MODEL_DATA[:WEIGHT]")
    return Variant(
        check_name(name, "--variant"),
        model_data,
        None if weight is None else parse_weight(weight, f"--variant {name}"),
    )


def parse_shadow(text: str) -> Shadow:
    """``--shadow NAME=MODEL_DATA:PERCENT``."""
    name, model_data, percent = _split_suffix(text, "--shadow", "NAME=MODEL_DATA:PERCENT")
    if percent is None or not percent.isdigit() or not 1 <= int(percent) <= 100:
        raise ConfigurationError(
            f"--shadow takes NAME=MODEL_DATA:PERCENT with PERCENT a whole number 1-100, got {text!r}"
        )
    return Shadow(check_name(name, "--shadow"), model_data, int(percent))


def parse_weights(texts: list[str]) -> dict[str, float]:
    """``weights ENDPOINT NAME=WEIGHT ...``."""
    weights: dict[str, float] = {}
    for text in texts:
        name, sep, value = text.partition("=")
        if not sep:
            raise ConfigurationError(f"weights take NAME=WEIGHT, got {text!r}")
        if name in weights:
            raise ConfigurationError(f"variant {name} is given twice")
        weights[check_name(name, "weights")] = parse_weight(value, name)
    if weights and not any(weights.values()):
        raise ConfigurationError("every weight is 0: the endpoint would send its traffic nowhere")
    return weights


def check_variants(variants: tuple[Variant, ...], shadows: tuple[Shadow, ...]) -> None:
    """Names unique across both kinds; AWS's rules for shadows; some traffic somewhere."""
    names = [v.name for v in variants] + [s.name for s in shadows]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigurationError(f"variant names must be unique; given more than once: {', '.join(repeated)}")
    if variants and not any(v.share for v in variants):
        raise ConfigurationError("every --variant has weight 0: the endpoint would send its traffic nowhere")
    # API reference, CreateEndpointConfig.ShadowProductionVariants: "If you use this field, you
    # can only specify one variant for ProductionVariants and one variant for
    # ShadowProductionVariants."
    if len(shadows) > 1:
        raise ConfigurationError("an endpoint takes one --shadow (AWS: one shadow variant per endpoint)")
    if shadows and len(variants) > 1:
        raise ConfigurationError(
            "--shadow needs exactly one production variant (AWS: with ShadowProductionVariants, "
            '"you can only specify one variant for ProductionVariants"): drop the extra --variant'
        )
