"""Per-sample image augmentation on (B, C, H, W) batches.

RandAugment (``randaugment``) with its kernels (``functional``), MedMNIST-C corruptions
(``corruptions``), random-field augmentations (``random_field``) and IRAD resampling
(``resample``).
"""
