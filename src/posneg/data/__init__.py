"""Embedded real data sets for the benches (no download): scikit-learn's 8x8 digits, the standard
library's code search pairs, user files.

- :func:`load_digits`: the 1797 bundled 8x8 digit images, stratified split, scaled on train.
- :func:`load_npz`: a user's ``.npz`` with ``X`` (N, F) and ``y`` (N,), read without pickle.
- :func:`load_code_search`: docstring-line / function-code pairs from the running Python's
  standard library source, split by module.
"""

from posneg.data.code_search import CodeSearchData, CodeSearchPair, load_code_search
from posneg.data.digits import Dataset, Standardizer, load_digits, load_npz, stratified_split

__all__ = [
    "CodeSearchData",
    "CodeSearchPair",
    "Dataset",
    "Standardizer",
    "load_code_search",
    "load_digits",
    "load_npz",
    "stratified_split",
]
