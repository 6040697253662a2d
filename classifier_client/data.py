"""Upload an ImageFolder data set (or an archive of one, like dogImages.zip) to S3.

Re-running an interrupted upload of the 8,351 dogImages JPEGs must not start over, so a
file is skipped when S3 already holds an object with the same size and MD5 (single-part
ETag). Files are uploaded single-part up to ``MULTIPART_THRESHOLD`` so that ETags stay
comparable for image files.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from classifier import archives
from classifier.constants import TEST_CHANNEL, TRAIN_CHANNEL, VALID_CHANNELS
from classifier_client.account_settings import s3_encryption
from classifier_client.config import AwsContext, ConfigurationError, parse_s3_uri

# Split folder name -> the channel the training program reads it from: valid/ or validation/
# both become the first of VALID_CHANNELS.
SPLIT_CHANNELS = {
    TRAIN_CHANNEL: TRAIN_CHANNEL,
    **{name: VALID_CHANNELS[0] for name in VALID_CHANNELS},
    TEST_CHANNEL: TEST_CHANNEL,
}
MULTIPART_THRESHOLD = 64 * 1024 * 1024
# The content's MD5, kept in each object's metadata when SSE-KMS makes its ETag something else.
MD5_METADATA = "content-md5"
_SKIPPED_NAMES = {".DS_Store", "Thumbs.db"}


def discover_channels(root: str, ctx: AwsContext | None, local: bool) -> dict[str, str]:
    """train/valid(ation)/test under a local folder or an S3 prefix (one ListObjects call)."""
    if root.startswith("s3://"):
        if local:
            raise ConfigurationError("--local trains on local folders; pass a local --data path")
        if ctx is None:
            raise ValueError(f"listing {root} needs an AWS context")
        found = _s3_splits(root, ctx)
    else:
        found = _local_splits(root)
    if not found:
        raise ConfigurationError(f"--data {root} holds none of train/, valid/, test/")
    return found


def _s3_splits(root: str, ctx: AwsContext) -> dict[str, str]:
    bucket, prefix = parse_s3_uri(root.rstrip("/") + "/")
    response = ctx.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix, Delimiter="/")
    present = {p["Prefix"][len(prefix) :].rstrip("/") for p in response.get("CommonPrefixes", [])}
    return {SPLIT_CHANNELS[s]: f"s3://{bucket}/{prefix}{s}/" for s in sorted(present & set(SPLIT_CHANNELS))}


def _local_splits(root: str) -> dict[str, str]:
    path = Path(root).expanduser()
    if not path.is_dir():
        raise ConfigurationError(f"--data {root} is not a folder")
    return {
        SPLIT_CHANNELS[p.name]: str(p.resolve())
        for p in sorted(path.iterdir())
        if p.name in SPLIT_CHANNELS and p.is_dir()
    }


@dataclass
class UploadResult:
    """What was uploaded, what was skipped, and the S3 URI of each training channel."""

    uploaded: int = 0
    skipped: int = 0
    bytes_uploaded: int = 0
    channels: dict[str, str] = field(default_factory=dict)


def _local_files(root: Path) -> Iterator[Path]:
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and name not in _SKIPPED_NAMES:
                yield Path(directory) / name


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _existing_objects(s3, bucket: str, prefix: str) -> dict[str, tuple[int, str]]:
    """key -> (size, etag without quotes) for everything under ``prefix``."""
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            found[item["Key"]] = (item["Size"], item["ETag"].strip('"'))
    return found


def _same(path: Path, existing: tuple[int, str] | None) -> bool:
    if existing is None:
        return False
    size, etag = existing
    if path.stat().st_size != size:
        return False
    # A multipart ETag ("<md5>-<parts>") is not an MD5 of the content: trust the size.
    return "-" in etag or _md5(path) == etag


def _same_encrypted(s3, bucket: str, key: str, path: Path, kms_key: str) -> bool:
    """With SSE-KMS an ETag is no MD5 of the content: the object is the same file when it is
    encrypted with ``kms_key`` (an ARN, as HeadObject reports it) and holds the MD5 this client
    wrote in its metadata."""
    head = s3.head_object(Bucket=bucket, Key=key)
    if head.get("ServerSideEncryption") != "aws:kms" or head.get("SSEKMSKeyId") != kms_key:
        return False
    return head.get("Metadata", {}).get(MD5_METADATA) == _md5(path)


def _key_arn(ctx: AwsContext, kms_key: str) -> str:
    """The key's ARN (an id or alias through kms:DescribeKey): what HeadObject reports, so an
    object under another key is written again."""
    if kms_key.startswith("arn:aws") and ":key/" in kms_key:
        return kms_key
    from botocore.exceptions import ClientError

    try:
        return ctx.client("kms").describe_key(KeyId=kms_key)["KeyMetadata"]["Arn"]
    except ClientError as error:
        raise ConfigurationError(
            f"--kms-key {kms_key}: kms:DescribeKey failed ({error.response.get('Error', {}).get('Code')}); "
            "pass the key's ARN, or allow kms:DescribeKey on it"
        ) from error


def channel_layout(source: Path) -> dict[str, str]:
    """Split folder -> channel name, for an ImageFolder root holding train/valid[/test]."""
    return {p.name: SPLIT_CHANNELS[p.name] for p in source.iterdir() if p.name in SPLIT_CHANNELS}


def _dataset_root(folder: Path) -> Path:
    """``dogImages.zip`` holds ``dogImages/train/...``: step down to the split folders."""
    return archives.descend_single_folders(folder, stop_at=set(SPLIT_CHANNELS))


def upload_data(
    ctx: AwsContext,
    source: str | os.PathLike,
    s3_uri: str,
    progress: Callable[[str], None] | None = None,
    kms_key: str | None = None,
) -> UploadResult:
    """Upload the ImageFolder ``source`` under ``s3_uri``; returns the channel URIs.

    ``source`` is a directory or a .zip/.tar(.gz) of one (it is extracted to a temporary
    folder first, so re-runs still skip file by file). A root with train/valid(ation)/test
    sub-folders gives one channel per split (``s3_uri/train/``...); any other tree is one
    ``train`` channel. With ``kms_key`` every object is written with SSE-KMS and that key.
    """
    source = Path(source).expanduser()
    if not source.exists():
        raise ConfigurationError(f"no such file or directory: {source}")
    bucket, prefix = parse_s3_uri(s3_uri.rstrip("/") + "/")
    if archives.is_archive(source):
        with tempfile.TemporaryDirectory(prefix="classifier-upload-") as scratch:
            try:
                extracted = archives.extract(source, Path(scratch))
            except archives.ArchiveError as error:
                raise ConfigurationError(str(error)) from error
            return _upload_tree(ctx, _dataset_root(extracted), bucket, prefix, progress, kms_key)
    if not source.is_dir():
        raise ConfigurationError(f"{source} is neither a directory nor a .zip/.tar(.gz) archive")
    return _upload_tree(ctx, _dataset_root(source), bucket, prefix, progress, kms_key)


def _upload_tree(
    ctx: AwsContext,
    root: Path,
    bucket: str,
    prefix: str,
    progress: Callable[[str], None] | None,
    kms_key: str | None = None,
) -> UploadResult:
    from boto3.s3.transfer import TransferConfig

    files = [(path, prefix + path.relative_to(root).as_posix()) for path in _local_files(root)]
    if not files:
        raise ConfigurationError(f"{root} holds no files to upload")
    s3 = ctx.client("s3")
    transfer = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD)
    existing = _existing_objects(s3, bucket, prefix)
    if kms_key:
        kms_key = _key_arn(ctx, kms_key)
    result = UploadResult()
    for path, key in files:
        found = existing.get(key)
        if kms_key:
            same = found is not None and found[0] == path.stat().st_size
            same = same and _same_encrypted(s3, bucket, key, path, kms_key)
        else:
            same = _same(path, found)
        if same:
            result.skipped += 1
            continue
        extra = {**s3_encryption(kms_key), "Metadata": {MD5_METADATA: _md5(path)}} if kms_key else {}
        s3.upload_file(str(path), bucket, key, Config=transfer, ExtraArgs=extra)
        result.uploaded += 1
        result.bytes_uploaded += path.stat().st_size
        if progress and result.uploaded % 500 == 0:
            progress(f"uploaded {result.uploaded} files...")
    base = f"s3://{bucket}/{prefix}"
    layout = channel_layout(root)
    if layout:
        result.channels = {channel: f"{base}{split}/" for split, channel in sorted(layout.items())}
    else:
        result.channels = {"train": base}
    return result
