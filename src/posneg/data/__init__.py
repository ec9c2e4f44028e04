"""Embedded real data sets for the benches (no download): scikit-learn's 8x8 digits, user files.

- :func:`load_digits`: the 1797 bundled 8x8 digit images, stratified split, scaled on train.
- :func:`load_npz`: a user's ``.npz`` with ``X`` (N, F) and ``y`` (N,), read without pickle.
"""

from posneg.data.digits import Dataset, Standardizer, load_digits, load_npz, stratified_split

__all__ = ["Dataset", "Standardizer", "load_digits", "load_npz", "stratified_split"]
