"""Shared image preprocessing: encoded bytes -> normalised float tensors."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def image_collate(image_size: int) -> Callable[[Sequence[bytes]], dict[str, torch.Tensor]]:
    """A collate function: decode, convert to RGB, resize to a square, normalise (ImageNet)."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def collate(items: Sequence[bytes]) -> dict[str, torch.Tensor]:
        arrays = []
        for raw in items:
            with Image.open(io.BytesIO(raw)) as img:
                rgb = img.convert("RGB").resize((image_size, image_size), Image.Resampling.BILINEAR)
                arrays.append(np.asarray(rgb, dtype=np.uint8))
        pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0
        return {"pixel_values": (pixels - mean) / std}

    return collate


def image_example_batch(image_size: int) -> Callable[[int], dict[str, torch.Tensor]]:
    def example(batch_size: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": torch.randn(batch_size, 3, image_size, image_size)}

    return example
