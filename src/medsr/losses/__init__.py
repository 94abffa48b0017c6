"""Losses. Each returns ``(total, parts)``: the scalar to back-propagate and a dict of its
named, detached terms for logging. Losses never log."""

from __future__ import annotations

from medsr.losses.adversarial import ADVERSARIAL_KINDS, AdversarialLoss, FeatureMatchingLoss
from medsr.losses.perceptual import PerceptualLoss, VGGFeatures, find_vgg_weights, vgg_layer_names
from medsr.losses.pixel import PIXEL_LOSSES, CharbonnierLoss, L1Loss, MSELoss

__all__ = [
    "ADVERSARIAL_KINDS",
    "PIXEL_LOSSES",
    "AdversarialLoss",
    "CharbonnierLoss",
    "FeatureMatchingLoss",
    "L1Loss",
    "MSELoss",
    "PerceptualLoss",
    "VGGFeatures",
    "find_vgg_weights",
    "vgg_layer_names",
]
