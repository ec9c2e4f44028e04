"""Training-time layers: modules that sit inside a model (multi-sample dropout head)."""

from posneg.layers.multisample_dropout import (
    MultiSampleDropout,
    multi_sample_dropout,
    multi_sample_loss,
    sample_dropout_masks,
)

__all__ = [
    "MultiSampleDropout",
    "multi_sample_dropout",
    "multi_sample_loss",
    "sample_dropout_masks",
]
