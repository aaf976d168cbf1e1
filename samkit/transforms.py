"""Resizing between the original image frame and the model's input frame.

The model sees images whose longest side is ``img_size`` (1024 for the official models), padded to a
square on the right and bottom. Prompts given in original pixels are scaled the same way. Rounding
and resampling match the official code: ``int(x + 0.5)`` sizes and PIL bilinear resizing.
"""
from __future__ import annotations

from copy import deepcopy
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


class ResizeLongestSide:
    """Scales images and coordinates so that the longest side becomes ``target_length``."""

    def __init__(self, target_length: int) -> None:
        self.target_length = target_length

    @staticmethod
    def get_preprocess_shape(oldh: int, oldw: int, long_side_length: int) -> Tuple[int, int]:
        """The resized ``(h, w)``; a side that would round to 0 pixels (a 1 x 4000 strip) keeps 1."""
        scale = long_side_length * 1.0 / max(oldh, oldw)
        newh, neww = oldh * scale, oldw * scale
        return max(1, int(newh + 0.5)), max(1, int(neww + 0.5))

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """``H x W x 3`` uint8 -> ``h x w x 3`` uint8 with ``max(h, w) == target_length`` (PIL bilinear)."""
        h, w = self.get_preprocess_shape(image.shape[0], image.shape[1], self.target_length)
        return np.array(Image.fromarray(image).resize((w, h), Image.BILINEAR))

    def apply_coords(self, coords: np.ndarray, original_size: Tuple[int, ...]) -> np.ndarray:
        """``... x 2`` (x, y) in original pixels -> the input frame."""
        old_h, old_w = original_size
        new_h, new_w = self.get_preprocess_shape(old_h, old_w, self.target_length)
        coords = deepcopy(coords).astype(float)
        coords[..., 0] = coords[..., 0] * (new_w / old_w)
        coords[..., 1] = coords[..., 1] * (new_h / old_h)
        return coords

    def apply_boxes(self, boxes: np.ndarray, original_size: Tuple[int, ...]) -> np.ndarray:
        """``... x 4`` XYXY boxes in original pixels -> ``N x 4`` in the input frame."""
        return self.apply_coords(boxes.reshape(-1, 2, 2), original_size).reshape(-1, 4)

    def apply_image_torch(self, image: torch.Tensor) -> torch.Tensor:
        """``B x 3 x H x W`` float -> resized (bilinear, antialiased) ``B x 3 x h x w``."""
        h, w = self.get_preprocess_shape(image.shape[2], image.shape[3], self.target_length)
        return F.interpolate(image, (h, w), mode="bilinear", align_corners=False, antialias=True)

    def apply_coords_torch(self, coords: torch.Tensor, original_size: Tuple[int, ...]) -> torch.Tensor:
        old_h, old_w = original_size
        new_h, new_w = self.get_preprocess_shape(old_h, old_w, self.target_length)
        coords = coords.clone().to(torch.float)
        coords[..., 0] = coords[..., 0] * (new_w / old_w)
        coords[..., 1] = coords[..., 1] * (new_h / old_h)
        return coords

    def apply_boxes_torch(self, boxes: torch.Tensor, original_size: Tuple[int, ...]) -> torch.Tensor:
        return self.apply_coords_torch(boxes.reshape(-1, 2, 2), original_size).reshape(-1, 4)

    def apply_masks_torch(self, masks: torch.Tensor) -> torch.Tensor:
        """``N x H x W`` bool/float masks -> ``N x h x w`` float in the input frame (unpadded)."""
        h, w = self.get_preprocess_shape(masks.shape[-2], masks.shape[-1], self.target_length)
        return F.interpolate(masks[:, None].float(), (h, w), mode="bilinear", align_corners=False)[:, 0]
