"""Data: degradations (noise, blur, resizing, JPEG) and datasets.

Images are float tensors in [0, 1] of shape ``(C, H, W)`` or ``(B, C, H, W)``.
"""

from __future__ import annotations

from .degradations import (
    BlurNoiseDegradation,
    JpegDegradation,
    NoiseDegradation,
    add_gaussian_noise,
    blur,
    gaussian_blur,
    gaussian_kernel2d,
    gaussian_noise,
    imresize,
    jpeg_compress,
    load_blur_kernels,
    sample_gaussian_kernels,
    sample_sigma,
    unsharp_mask,
)
from .datasets import (
    BUNDLED_PHOTOS,
    DefaultTrainingSource,
    ImageFolderDataset,
    ImageFolderEval,
    bundled_photo_paths,
    bundled_sample_image,
    center_crop,
    dead_leaves,
    make_dataloader,
    pad_to_size,
    random_crop,
    random_flip_rotate,
    seed_worker,
    training_dataset,
)

__all__ = [
    # degradations
    "add_gaussian_noise",
    "gaussian_noise",
    "sample_sigma",
    "gaussian_kernel2d",
    "sample_gaussian_kernels",
    "gaussian_blur",
    "blur",
    "load_blur_kernels",
    "unsharp_mask",
    "imresize",
    "jpeg_compress",
    "NoiseDegradation",
    "BlurNoiseDegradation",
    "JpegDegradation",
    # datasets
    "ImageFolderDataset",
    "ImageFolderEval",
    "DefaultTrainingSource",
    "BUNDLED_PHOTOS",
    "bundled_photo_paths",
    "bundled_sample_image",
    "dead_leaves",
    "training_dataset",
    "make_dataloader",
    "seed_worker",
    "random_crop",
    "random_flip_rotate",
    "pad_to_size",
    "center_crop",
]
