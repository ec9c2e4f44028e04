"""Integer arguments accept numpy integers and reject bools everywhere (issue 22).

Each entry point that checks an integer argument itself (rather than through
:func:`posneg._checks.check_int`) is called with ``np.int64`` values, which must give the result
of the Python ``int``, and with ``True``, which must be refused with the existing message.
"""

from __future__ import annotations

import dataclasses
import shutil
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from posneg._tiling import rows_per_block
from posneg.augment import ResampleParams, apply_resample
from posneg.data import load_code_search
from posneg.data.tabular import load_breast_cancer_imbalanced, load_digits_one_vs_rest
from posneg.losses import DiceLoss, FocalLoss, dice, focal
from posneg.mining.strategies import rand_neg_loss, star_loss, triplet_margin_ohnm
from posneg.mixing import fmix_masks, sample_cutmix_params, sample_resizemix_params

I64 = np.int64


def _same(a: Any, b: Any) -> None:
    """Equal results: tensors, arrays, dataclasses of them, or plain values."""
    if isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
    elif dataclasses.is_dataclass(a) and not isinstance(a, type):
        for f in dataclasses.fields(a):
            _same(getattr(a, f.name), getattr(b, f.name))
    elif isinstance(a, tuple) and hasattr(a, "_fields"):  # NamedTuple params
        for x, y in zip(a, b, strict=True):
            _same(x, y)
    else:
        assert a == b


# --- data ---------------------------------------------------------------------------------


def test_tabular_seed_and_digit() -> None:
    ref = load_digits_one_vs_rest(digit=3, minority_fraction=0.1, seed=2)
    got = load_digits_one_vs_rest(digit=I64(3), minority_fraction=0.1, seed=I64(2))
    _same(ref, got)
    _same(load_breast_cancer_imbalanced(seed=3), load_breast_cancer_imbalanced(seed=I64(3)))
    with pytest.raises(ValueError, match=r"load_digits_one_vs_rest: digit must be an int in 0-9"):
        load_digits_one_vs_rest(digit=True)
    with pytest.raises(ValueError, match=r"load_digits_one_vs_rest: digit must be an int in 0-9"):
        load_digits_one_vs_rest(digit=np.bool_(True))  # type: ignore[arg-type]
    seed_msg = r"load_breast_cancer_imbalanced: seed must be an int >= 0"
    with pytest.raises(ValueError, match=seed_msg):
        load_breast_cancer_imbalanced(seed=True)
    with pytest.raises(ValueError, match=r"seed must be an int >= 0; got (np\.int64\()?-1\)?"):
        load_breast_cancer_imbalanced(seed=I64(-1))


def test_tabular_fractions_accept_numpy_reals() -> None:
    ref = load_breast_cancer_imbalanced(minority_fraction=0.125, test_fraction=0.25, seed=0)
    got = load_breast_cancer_imbalanced(
        minority_fraction=np.float32(0.125), test_fraction=np.float32(0.25), seed=0
    )
    _same(ref, got)
    with pytest.raises(TypeError, match=r"test_fraction must be a real number; got bool"):
        load_breast_cancer_imbalanced(test_fraction=True)


@pytest.fixture(scope="module")
def small_stdlib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few standard-library modules copied to a folder (a quick code-search root)."""
    root = tmp_path_factory.mktemp("lib")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in ("textwrap.py", "shlex.py", "fractions.py", "string.py", "calendar.py"):
        shutil.copy(stdlib / name, root / name)
    return root


def test_code_search_seed_and_max_pairs(small_stdlib: Path) -> None:
    ref = load_code_search(root=small_stdlib, seed=1, max_pairs=15)
    got = load_code_search(root=small_stdlib, seed=I64(1), max_pairs=I64(15))
    assert len(ref.pairs) == 15
    assert got == ref
    frac = load_code_search(root=small_stdlib, dev_fraction=np.float32(0.25), test_fraction=0.25)
    assert frac == load_code_search(root=small_stdlib, dev_fraction=0.25, test_fraction=0.25)
    with pytest.raises(TypeError, match=r"load_code_search: seed must be an int; got bool"):
        load_code_search(root=small_stdlib, seed=True)
    with pytest.raises(
        TypeError, match=r"load_code_search: max_pairs must be an int or None; got bool"
    ):
        load_code_search(root=small_stdlib, max_pairs=True)
    with pytest.raises(TypeError, match=r"max_pairs must be an int or None; got bool"):
        load_code_search(root=small_stdlib, max_pairs=np.bool_(True))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"load_code_search: max_pairs must be >= 1; got 0"):
        load_code_search(root=small_stdlib, max_pairs=I64(0))


# --- tiling and the objectives that pass chunk_size through to it -------------------------


def test_rows_per_block() -> None:
    assert rows_per_block(10, 10, I64(3)) == rows_per_block(10, 10, 3) == 3
    assert type(rows_per_block(10, 10, I64(3))) is int
    for bad in (True, np.bool_(True), I64(0)):
        with pytest.raises(ValueError, match=r"chunk_size must be a positive int or None"):
            rows_per_block(10, 10, bad)  # type: ignore[arg-type]


def _embeddings(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


MINING: list[tuple[str, Callable[..., torch.Tensor], tuple[torch.Tensor, ...]]] = [
    ("star_loss", star_loss, (_embeddings(6, 4), _embeddings(6, 4, seed=1))),
    (
        "rand_neg_loss",
        rand_neg_loss,
        (_embeddings(6, 4), _embeddings(6, 4, seed=1), _embeddings(5, 4, seed=2)),
    ),
    ("triplet_margin_ohnm", triplet_margin_ohnm, (_embeddings(6, 4), _embeddings(6, 4, seed=1))),
]


@pytest.mark.parametrize(("name", "fn", "args"), MINING, ids=[m[0] for m in MINING])
def test_mining_chunk_size(name: str, fn: Callable[..., torch.Tensor], args: tuple) -> None:
    _same(fn(*args, chunk_size=2), fn(*args, chunk_size=I64(2)))
    with pytest.raises(TypeError, match=rf"{name}: chunk_size must be an int; got bool"):
        fn(*args, chunk_size=True)


def test_ohnm_k() -> None:
    q, lab = _embeddings(6, 4), _embeddings(6, 4, seed=1)
    _same(triplet_margin_ohnm(q, lab, k=3), triplet_margin_ohnm(q, lab, k=I64(3)))
    with pytest.raises(TypeError, match=r"triplet_margin_ohnm: k must be an int; got bool"):
        triplet_margin_ohnm(q, lab, k=True)


# --- mixing sizes --------------------------------------------------------------------------


def _drawn(fn: Callable[..., Any], **kw: Any) -> Any:
    return fn(**kw, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    ("name", "fn", "kw"),
    [
        ("sample_cutmix_params", sample_cutmix_params, {"batch": 4}),
        ("sample_resizemix_params", sample_resizemix_params, {"batch": 4}),
        ("fmix_masks", fmix_masks, {"lam": torch.full((3,), 0.4)}),
    ],
)
def test_mixing_size(name: str, fn: Callable[..., Any], kw: dict[str, Any]) -> None:
    _same(_drawn(fn, size=(8, 6), **kw), _drawn(fn, size=(I64(8), I64(6)), **kw))
    if name == "sample_cutmix_params":  # batch goes through check_int
        _same(_drawn(fn, size=(8, 6), batch=4), _drawn(fn, size=(8, 6), batch=I64(4)))
    with pytest.raises(TypeError, match=rf"{name}: size must be a tuple of ints"):
        _drawn(fn, size=(True, 6), **kw)
    with pytest.raises(TypeError, match=rf"{name}: size must be a tuple of ints"):
        _drawn(fn, size=(np.bool_(True), 6), **kw)


def test_fmix_one_dimensional_size() -> None:
    lam = torch.full((2,), 0.3)
    _same(_drawn(fmix_masks, lam=lam, size=16), _drawn(fmix_masks, lam=lam, size=I64(16)))
    with pytest.raises(TypeError, match=r"fmix_masks: size must be a tuple of ints"):
        _drawn(fmix_masks, lam=lam, size=True)


# --- augment -------------------------------------------------------------------------------


def test_resample_params_size() -> None:
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    ref = apply_resample(x, ResampleParams(offsets=None, size=(5, 6)))
    got = apply_resample(x, ResampleParams(offsets=None, size=(I64(5), I64(6))))
    _same(ref, got)
    with pytest.raises(ValueError, match=r"apply_resample: params\.size must be two ints >= 1"):
        apply_resample(x, ResampleParams(offsets=None, size=(True, 6)))


# --- losses --------------------------------------------------------------------------------


def _tagging() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
    tags = torch.randint(3, (2, 5), generator=g)
    tags[0, 4] = -100
    return logits, tags


@pytest.mark.parametrize(("name", "fn"), [("dice", dice), ("focal", focal)])
def test_loss_ignore_index(name: str, fn: Callable[..., torch.Tensor]) -> None:
    z, t = _tagging()
    _same(fn(z, t, ignore_index=-100), fn(z, t, ignore_index=I64(-100)))
    with pytest.raises(TypeError, match=rf"{name}: ignore_index must be an int or None; got bool"):
        fn(z, t, ignore_index=True)
    with pytest.raises(TypeError, match=rf"{name}: ignore_index must be an int or None; got bool"):
        fn(z, t, ignore_index=np.bool_(False))


@pytest.mark.parametrize(("name", "cls"), [("DiceLoss", DiceLoss), ("FocalLoss", FocalLoss)])
def test_loss_module_ignore_index(name: str, cls: type[torch.nn.Module]) -> None:
    z, t = _tagging()
    module = cls(ignore_index=I64(-100))
    assert type(module.ignore_index) is int  # stored as a Python int (clean repr)
    _same(cls(ignore_index=-100)(z, t), module(z, t))
    assert repr(module) == repr(cls(ignore_index=-100))
    with pytest.raises(TypeError, match=rf"{name}: ignore_index must be an int or None; got bool"):
        cls(ignore_index=True)


def test_focal_scalar_alpha_accepts_numpy_reals() -> None:
    g = torch.Generator().manual_seed(1)
    z = torch.randn(7, generator=g, dtype=torch.float64)
    y = (torch.rand(7, generator=g) > 0.5).to(torch.float64)
    ref = focal(z, y, alpha=0.25)
    _same(ref, focal(z, y, alpha=np.float32(0.25)))
    _same(ref, FocalLoss(alpha=np.float32(0.25))(z, y))
    _same(focal(z, y, alpha=1), focal(z, y, alpha=I64(1)))
    assert FocalLoss(alpha=np.float32(0.25)).alpha == 0.25
    with pytest.raises(TypeError, match=r"focal: alpha must be None, a float in \[0, 1\]"):
        focal(z, y, alpha=True)


def test_image_op_factors_and_fills_accept_numpy_reals() -> None:
    from posneg.augment import RandAugment, functional

    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    _same(functional.brightness(x, np.float32(1.5)), functional.brightness(x, 1.5))
    _same(
        functional.rotate(x, np.int64(30), fill=np.float64(0.5)), functional.rotate(x, 30, fill=0.5)
    )
    assert RandAugment(fill=np.float32(0.25)).fill == 0.25
    with pytest.raises(TypeError, match="factor must be a number or a tensor; got bool"):
        functional.brightness(x, True)


def test_stratified_split_fraction_accepts_numpy_reals() -> None:
    from posneg.data import stratified_split

    y = np.repeat(np.arange(3), 10)
    for got, want in zip(
        stratified_split(y, test_fraction=np.float32(0.5)),
        stratified_split(y, test_fraction=0.5),
        strict=True,
    ):
        _same(got, want)
    with pytest.raises(ValueError, match="test_fraction must be in \\(0, 1\\); got True"):
        stratified_split(y, test_fraction=True)


def test_mine_own_document_and_encode_shard_size_accept_numpy_ints() -> None:
    from posneg.mining import mine
    from posneg.mining.encode import encode, load_encoder

    g = torch.Generator().manual_seed(0)
    corpus = torch.nn.functional.normalize(torch.randn(30, 8, generator=g), dim=1)
    queries = corpus[:4].clone()
    own = list(np.arange(4))  # items are np.int64
    got = mine(
        queries, corpus, [[i] for i in range(4)], num_negatives=2, range_max=20, own_document=own
    )
    ref = mine(
        queries,
        corpus,
        [[i] for i in range(4)],
        num_negatives=2,
        range_max=20,
        own_document=[0, 1, 2, 3],
    )
    _same(got.ids, ref.ids)
    with pytest.raises(TypeError, match=r"own_document\[0\] must be an int; got bool"):
        mine(
            queries,
            corpus,
            [[i] for i in range(4)],
            num_negatives=2,
            range_max=20,
            own_document=[True, 1, 2, 3],
        )
    encoder = load_encoder(lambda texts: torch.ones(len(texts), 3))
    _same(encode(["a", "b"], encoder, shard_size=I64(1)), encode(["a", "b"], encoder, shard_size=1))
    with pytest.raises(TypeError, match="shard_size must be an int; got bool"):
        encode(["a"], encoder, shard_size=True)
