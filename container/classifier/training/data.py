"""The training job's channels: loaded as :mod:`classifier.image_folders` data sets, batched
with unreadable files left out, sharded over the ranks."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler
from torch.utils.data.dataloader import default_collate

from classifier.image_folders import (
    DataError,
    ImageFolderDataset,
    SkippedFile,
    check_same_classes,
    find_class_names,
    resolve_channel,
)
from classifier.training import distributed
from classifier.training.environment import TrainingEnvironment
from classifier.training.hyperparameters import Hyperparameters
from classifier.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform, train_transform


@dataclass
class Batch:
    images: torch.Tensor | None
    targets: torch.Tensor | None
    skipped: list[SkippedFile]

    def __len__(self) -> int:
        return 0 if self.targets is None else len(self.targets)


def collate_skipping(items) -> Batch:
    """Collate the readable samples; carry the unreadable ones along so the loop can count them."""
    good = [item for item in items if not isinstance(item, SkippedFile)]
    skipped = [item for item in items if isinstance(item, SkippedFile)]
    if not good:
        return Batch(None, None, skipped)
    images, targets = default_collate(good)
    return Batch(images, targets, skipped)


class ShardSampler(Sampler[int]):
    """Every index exactly once across ranks (no padding), so eval metrics are exact."""

    def __init__(self, length: int, rank: int, world_size: int):
        self.indices = list(range(rank, length, world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def check_skipped_share(channel: str, skipped: list[SkippedFile], total: int, max_fraction: float) -> None:
    if total and len(skipped) / total > max_fraction:
        listing = "; ".join(f"{s.path} ({s.reason})" for s in skipped[:20])
        more = f" and {len(skipped) - 20} more" if len(skipped) > 20 else ""
        raise DataError(
            f"{len(skipped)} of {total} files in channel {channel} are unreadable, more than "
            f"max_skipped_fraction={max_fraction}: {listing}{more}"
        )


# --- the job's channels and loaders ----------------------------------------------------


@dataclass
class Channels:
    class_names: list[str]
    train: ImageFolderDataset
    valid: ImageFolderDataset
    test: ImageFolderDataset | None


def load_channels(env: TrainingEnvironment, hp: Hyperparameters) -> Channels:
    train_root = resolve_channel(env.train_channel())
    class_names = find_class_names(train_root)
    valid_root = resolve_channel(env.valid_channel())
    check_same_classes(class_names, valid_root, "valid")
    test_dir = env.test_channel()
    test_root = resolve_channel(test_dir) if test_dir else None
    if test_root is not None:
        check_same_classes(class_names, test_root, "test")
    evaluation = eval_transform(hp.image_size, IMAGENET_MEAN, IMAGENET_STD)
    return Channels(
        class_names=class_names,
        train=ImageFolderDataset(
            train_root, class_names, train_transform(hp.image_size, hp.augmentation), "train"
        ),
        valid=ImageFolderDataset(valid_root, class_names, evaluation, "valid"),
        test=ImageFolderDataset(test_root, class_names, evaluation, "test") if test_root else None,
    )


def make_loader(dataset, hp: Hyperparameters, ctx: distributed.DistributedContext, train: bool):
    if train:
        sampler = (
            DistributedSampler(dataset, ctx.world_size, ctx.rank, shuffle=True, seed=hp.seed)
            if ctx.enabled
            else torch.utils.data.RandomSampler(dataset, generator=torch.Generator().manual_seed(hp.seed))
        )
    else:
        sampler = ShardSampler(len(dataset), ctx.rank, ctx.world_size)
    return DataLoader(
        dataset,
        batch_size=hp.batch_size,
        sampler=sampler,
        num_workers=hp.num_workers,
        collate_fn=collate_skipping,
        pin_memory=ctx.device.type == "cuda",
        persistent_workers=hp.num_workers > 0,
        prefetch_factor=4 if hp.num_workers > 0 else None,
    )
