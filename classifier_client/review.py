"""``captured``: an endpoint's captured traffic turned into a review set a person can look at
and retrain on.

Every captured image goes into ``DIR/<predicted label>/<event id>.<ext>`` (an ImageFolder, so a
reviewer moves the wrong ones to the right folder and trains on it), ``DIR/captured.csv`` has a
row per image (time, variant, predicted label, probability, top-k), and the summary counts, per
label and per variant, the images, their mean top-1 probability and the share under 0.5: the
first sign of drift, and the A/B comparison.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from classifier_client.capture import BadRecord, CapturedImage, parse_record
from classifier_client.config import AwsContext, ConfigurationError, parse_s3_uri

logger = logging.getLogger(__name__)

CSV_NAME = "captured.csv"
CSV_FIELDS = ("time", "variant", "event_id", "instance", "label", "probability", "top_k", "file")
LOW_CONFIDENCE = 0.5
EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png"}
# A label or event id becomes a file name: anything else than these is replaced.
_UNSAFE = re.compile(r"[^\w.+=@-]+")
_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
# SageMaker's key layout under the destination: ENDPOINT/VARIANT/yyyy/mm/dd/hh/FILE.jsonl
_HOUR_PATH = re.compile(r"/(\d{4})/(\d{2})/(\d{2})/(\d{2})/[^/]+$")


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """``--since``: an ISO time (UTC unless it says otherwise) or an age such as 30m, 6h, 2d."""
    now = now or dt.datetime.now(dt.UTC)
    relative = _RELATIVE.match(text.strip())
    if relative:
        try:
            return now - dt.timedelta(**{_UNITS[relative[2]]: int(relative[1])})
        except OverflowError:
            raise ConfigurationError(f"--since {text}: further back than a datetime reaches") from None
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigurationError(
            f"--since takes an ISO time (2026-12-01T08:00) or an age (30m, 6h, 2d), got {text!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def safe_name(text: str) -> str:
    """A single path component that names ``text`` (labels come from the model's config and
    event ids from S3: neither may climb out of the review folder, nor be its CSV)."""
    name = _UNSAFE.sub("_", text).strip("._") or "_"
    return name[:120] if name != CSV_NAME else f"_{name}"


def probability(prediction: dict[str, Any]) -> float:
    """A prediction's probability; 0 where the record holds something else than a number."""
    try:
        value = float(prediction.get("probability") or 0.0)
    except (TypeError, ValueError):
        return 0.0
    return value if 0.0 <= value <= 1.0 else 0.0


def capture_destination(ctx: AwsContext, endpoint_name: str) -> str:
    """Where the endpoint writes its capture files (DescribeEndpoint's DataCaptureConfig)."""
    described = ctx.client("sagemaker").describe_endpoint(EndpointName=endpoint_name)
    capture = described.get("DataCaptureConfig") or {}
    if not capture.get("DestinationS3Uri"):
        raise ConfigurationError(
            f"endpoint {endpoint_name} captures no data: deploy or update it with --data-capture S3_URI"
        )
    return capture["DestinationS3Uri"]


def _capture_files(s3, destination: str, endpoint_name: str, since: dt.datetime | None) -> Iterator[str]:
    """Keys of the endpoint's capture files, every variant, oldest hour first."""
    bucket, prefix = parse_s3_uri(destination)
    root = f"{prefix.rstrip('/')}/{endpoint_name}/".lstrip("/")
    hour_floor = since.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0) if since else None
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=root):
        for item in page.get("Contents", []):
            key = item["Key"]
            hour = _HOUR_PATH.search(key)
            if not key.endswith(".jsonl") or not hour:
                continue
            try:
                year, month, day, hour_of_day = (int(part) for part in hour.groups())
                written = dt.datetime(year, month, day, hour_of_day, tzinfo=dt.UTC)
            except ValueError:
                logger.warning("skipped s3://%s/%s: not SageMaker's yyyy/mm/dd/hh layout", bucket, key)
                continue
            if hour_floor is None or written >= hour_floor:
                keys.append((written, key))
    yield from (key for _, key in sorted(keys))


def _variant_of(key: str, root: str) -> str:
    return key[len(root) :].split("/", 1)[0]


@dataclass
class Tally:
    count: int = 0
    probability_sum: float = 0.0
    low: int = 0

    def add(self, probability: float) -> None:
        self.count += 1
        self.probability_sum += probability
        self.low += probability < LOW_CONFIDENCE

    def row(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "mean_top1": round(self.probability_sum / self.count, 4) if self.count else None,
            "share_under_0.5": round(self.low / self.count, 4) if self.count else None,
        }


@dataclass
class Review:
    images: int = 0
    skipped: list[str] = field(default_factory=list)
    labels: dict[str, Tally] = field(default_factory=dict)
    variants: dict[str, Tally] = field(default_factory=dict)

    def add(self, image: CapturedImage) -> None:
        top = probability(image.top)
        self.images += 1
        self.labels.setdefault(str(image.top.get("label", "")), Tally()).add(top)
        self.variants.setdefault(image.variant, Tally()).add(top)

    def summary(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "skipped_records": len(self.skipped),
            "by_label": {name: t.row() for name, t in sorted(self.labels.items())},
            "by_variant": {name: t.row() for name, t in sorted(self.variants.items())},
        }


def _records(s3, destination: str, endpoint_name: str, since, review: Review) -> Iterator[CapturedImage]:
    bucket, prefix = parse_s3_uri(destination)
    root = f"{prefix.rstrip('/')}/{endpoint_name}/".lstrip("/")
    for key in _capture_files(s3, destination, endpoint_name, since):
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        for number, line in enumerate(body.splitlines(), 1):
            if not line.strip():
                continue
            try:
                images = parse_record(line, _variant_of(key, root))
            except BadRecord as error:
                review.skipped.append(f"s3://{bucket}/{key} line {number}: {error}")
                continue
            yield from (image for image in images if since is None or image.time >= since)


def _file_name(image: CapturedImage) -> str:
    suffix = f"-{image.instance}" if image.instance else ""
    extension = EXTENSIONS.get(image.content_type) or _sniffed_extension(image.data)
    return f"{safe_name(image.event_id)}{suffix}{extension}"


def _sniffed_extension(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return ".png"
    if data.startswith(b"\xff\xd8"):
        return ".jpg"
    return ".bin"


def _row(image: CapturedImage, path: str) -> dict[str, str]:
    return {
        "time": image.time.isoformat(),
        "variant": image.variant,
        "event_id": image.event_id,
        "instance": str(image.instance),
        "label": str(image.top.get("label", "")),
        "probability": f"{probability(image.top):.6f}",
        "top_k": json.dumps([[p.get("label"), p.get("probability")] for p in image.predictions]),
        "file": path,
    }


def _write_csv(output: Path, rows: Iterable[dict[str, str]]) -> int:
    """captured.csv: rows already there are kept (a second run adds to the review set), one
    row per (event id, image), in time order."""
    path = output / CSV_NAME
    merged: dict[tuple[str, str], dict[str, str]] = {}
    if path.exists():
        with path.open(newline="") as existing:
            for row in csv.DictReader(existing):
                merged[(row.get("event_id", ""), row.get("instance", ""))] = row
    for row in rows:
        merged[(row["event_id"], row["instance"])] = row
    ordered = sorted(merged.values(), key=lambda row: (row.get("time") or "", row.get("event_id") or ""))
    temporary = path.with_suffix(".csv.tmp")
    with temporary.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(ordered)
    temporary.replace(path)
    return len(ordered)


def review_captured(
    ctx: AwsContext,
    endpoint_name: str,
    output: Path,
    *,
    since: dt.datetime | None = None,
    limit: int | None = None,
    destination: str | None = None,
) -> dict[str, Any]:
    """Write the review set of the endpoint's captured requests under ``output``; ``limit``
    keeps the newest that many images. Returns the summary."""
    if limit is not None and limit < 1:
        raise ConfigurationError("--limit must be at least 1")
    destination = destination or capture_destination(ctx, endpoint_name)
    review = Review()
    images = list(_records(ctx.client("s3"), destination, endpoint_name, since, review))
    images.sort(key=lambda image: (image.time, image.event_id, image.instance))
    if limit is not None:
        images = images[-limit:]
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigurationError(f"--output {output}: {error}") from error
    rows = []
    for image in images:
        folder = output / safe_name(str(image.top.get("label", "")))
        folder.mkdir(exist_ok=True)
        target = folder / _file_name(image)
        target.write_bytes(image.data)
        rows.append(_row(image, str(target.relative_to(output))))
        review.add(image)
    for problem in review.skipped:
        logger.warning("skipped %s", problem)
    summary = review.summary()
    summary["csv_rows"] = _write_csv(output, rows)
    summary["source"] = f"{destination.rstrip('/')}/{endpoint_name}/"
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """Two tables: per label and per variant."""
    lines = [f"{summary['images']} images from {summary['source']}"]
    if summary["skipped_records"]:
        lines[0] += f" ({summary['skipped_records']} records skipped: see the warnings)"
    for title, key in (("label", "by_label"), ("variant", "by_variant")):
        rows = summary[key]
        width = max([len(title), *map(len, rows)])
        lines += ["", f"{title:<{width}}  {'count':>6}  {'mean top-1':>10}  {'under 0.5':>9}"]
        for name, row in rows.items():
            mean, low = row["mean_top1"], row["share_under_0.5"]
            lines.append(f"{name:<{width}}  {row['count']:>6}  {mean:>10.3f}  {low:>9.1%}")
    return "\n".join(lines)
