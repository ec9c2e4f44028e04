"""The data of `posneg bench ood`: in-distribution digits 0-5 and the OOD evaluation sets.

(``--dataset mnist1d``: :func:`load_ood_mnist1d`, the same roles on MNIST-1D sequences.)

- **ID**: scikit-learn's 8x8 digits of classes 0-5 as ``(N, 1, 8, 8)`` float32 in ``[0, 1]``
  (pixel / 16), split per class into train / validation / test (fixed split seed).
- **near**: digits 6-9 (same pixels, unseen classes).
- **far_photo**: 8x8 grey patches of scikit-learn's two bundled photographs (``china.jpg``,
  ``flower.jpg``): a random square crop of side 8-64 px, average-pooled to 8x8, grey / 255.
- **far_noise**: structured noise: uniform noise on a random 2x2-4x4 grid upsampled bilinearly
  to 8x8, half of it multiplied by random horizontal or vertical stripes.
- **fgsm** / **pgd** (when ``posneg.adversarial.attacks`` exists): attacks of the ID test set
  on the trained classifier, built by the bench after training (:func:`adversarial_sets`).

Every OOD set has a disjoint *validation* part of the same distribution (drawn with another
generator, or the other half of digits 6-9), for detectors tuned on validation OOD (the
optimistic official Mahalanobis protocol); the adversarial validation sets attack the ID
validation split.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "DATASETS",
    "ID_CLASSES",
    "OODData",
    "adversarial_sets",
    "load_ood_digits",
    "load_ood_mnist1d",
]

#: ``--dataset`` values.
DATASETS: tuple[str, ...] = ("digits", "mnist1d")

ID_CLASSES = 6
_FAR_N = 500  # test samples per far set (validation: half of it)


@dataclass(frozen=True)
class OODData:
    """Tensors of one bench data set (CPU, float32 images, int64 labels)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    ood_test: dict[str, torch.Tensor]
    ood_val: dict[str, torch.Tensor]

    name: str = "digits"

    def summary(self) -> dict[str, object]:
        shape = "8x8" if self.name == "digits" else f"length {self.train_x.shape[-1]}"
        return {
            "id": f"{self.name} 0-{ID_CLASSES - 1}, {shape} in [0, 1]",
            "n_train": int(self.train_x.shape[0]),
            "n_val": int(self.val_x.shape[0]),
            "n_test": int(self.test_x.shape[0]),
            **{f"n_{k}": int(v.shape[0]) for k, v in self.ood_test.items()},
        }


def _split(y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Per class: 60% train, 15% validation, 25% test."""
    tr, va, te = [], [], []
    for c in np.unique(y):
        idx = rng.permutation(np.nonzero(y == c)[0])
        n_te, n_va = round(0.25 * idx.size), round(0.15 * idx.size)
        te.append(idx[:n_te])
        va.append(idx[n_te : n_te + n_va])
        tr.append(idx[n_te + n_va :])
    return tuple(np.sort(np.concatenate(p)) for p in (tr, va, te))


@functools.lru_cache(maxsize=1)
def _grey_photos() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_sample_images

    return tuple(
        np.asarray(im, dtype=np.float32).mean(axis=2) / 255.0 for im in load_sample_images().images
    )


def _photo_patches(n: int, rng: np.random.Generator) -> np.ndarray:
    images = _grey_photos()
    out = np.empty((n, 8, 8))
    for i in range(n):
        im = images[int(rng.integers(len(images)))]
        side = 8 * int(rng.integers(1, 9))
        r = int(rng.integers(im.shape[0] - side + 1))
        c = int(rng.integers(im.shape[1] - side + 1))
        crop = im[r : r + side, c : c + side]
        f = side // 8
        out[i] = crop.reshape(8, f, 8, f).mean(axis=(1, 3))
    return out


def _structured_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    out = np.empty((n, 8, 8))
    for i in range(n):
        g = int(rng.integers(2, 5))
        coarse = torch.from_numpy(rng.uniform(0.0, 1.0, size=(1, 1, g, g)))
        img = F.interpolate(coarse, size=(8, 8), mode="bilinear", align_corners=True)[0, 0]
        a = img.numpy()
        if rng.uniform() < 0.5:
            period = int(rng.integers(2, 5))
            stripes = (np.arange(8) // (period // 2 or 1)) % 2
            a = a * (stripes[None, :] if rng.uniform() < 0.5 else stripes[:, None])
        out[i] = a
    return out


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).reshape(-1, 1, 8, 8)


@functools.lru_cache(maxsize=2)
def load_ood_digits(*, split_seed: int = 0, far_n: int = _FAR_N) -> OODData:
    """Build the ID splits and the near/far OOD sets (deterministic for a ``split_seed``).

    Cached per arguments: treat the returned tensors as read-only.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.asarray(bunch.data, dtype=np.float64) / 16.0
    y = np.asarray(bunch.target, dtype=np.int64)
    rng = np.random.default_rng(split_seed)
    is_id = y < ID_CLASSES
    tr, va, te = _split(y[is_id], rng)
    xi, yi = x[is_id], y[is_id]
    near = rng.permutation(np.nonzero(~is_id)[0])
    half = near.size // 2
    rng_test, rng_val = (
        np.random.default_rng(split_seed + 1000),
        np.random.default_rng(split_seed + 2000),
    )
    return OODData(
        train_x=_t(xi[tr]),
        train_y=torch.from_numpy(yi[tr]),
        val_x=_t(xi[va]),
        val_y=torch.from_numpy(yi[va]),
        test_x=_t(xi[te]),
        test_y=torch.from_numpy(yi[te]),
        ood_test={
            "near": _t(x[np.sort(near[half:])]),
            "far_photo": _t(_photo_patches(far_n, rng_test)),
            "far_noise": _t(_structured_noise(far_n, rng_test)),
        },
        ood_val={
            "near": _t(x[np.sort(near[:half])]),
            "far_photo": _t(_photo_patches(far_n // 2, rng_val)),
            "far_noise": _t(_structured_noise(far_n // 2, rng_val)),
        },
    )


def _sequences_noise(n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """Random walks (cumulative Gaussian steps) min-max scaled to [0, 1]."""
    walk = np.cumsum(rng.normal(size=(n, length)), axis=1)
    lo, hi = walk.min(axis=1, keepdims=True), walk.max(axis=1, keepdims=True)
    return (walk - lo) / np.maximum(hi - lo, 1e-8)


def _sequences_sine(n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """Random sinusoids (1-4 periods, random phase), amplitude in [0.2, 0.5] around 0.5."""
    t = np.linspace(0.0, 1.0, length)[None, :]
    freq = rng.uniform(1.0, 4.0, size=(n, 1))
    phase = rng.uniform(0.0, 2 * np.pi, size=(n, 1))
    amp = rng.uniform(0.2, 0.5, size=(n, 1))
    return 0.5 + amp * np.sin(2 * np.pi * freq * t + phase)


def _seq(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).unsqueeze(1)


@functools.lru_cache(maxsize=2)
def load_ood_mnist1d(*, split_seed: int = 0, far_n: int = _FAR_N) -> OODData:
    """MNIST-1D (posneg.data.load_mnist1d) classes 0-5 as ID, 6-9 near, noise and sines far.

    Sequences ``(N, 1, 40)`` min-max scaled to [0, 1] with the train split's extremes (clipped).
    ID: the package's train split minus 15% per class for validation; its test split for test.
    Near: classes 6-9 of the test split (test) and of the train split (validation).
    """
    from posneg.data.mnist1d import load_mnist1d

    d = load_mnist1d()
    lo, hi = float(d.x_train.min()), float(d.x_train.max())

    def scale(a: np.ndarray) -> np.ndarray:
        return np.clip((np.asarray(a, dtype=np.float64) - lo) / (hi - lo), 0.0, 1.0)

    xtr, ytr, xte, yte = scale(d.x_train), d.y_train, scale(d.x_test), d.y_test
    rng = np.random.default_rng(split_seed)
    is_id = ytr < ID_CLASSES
    tr, va, _ = _split(ytr[is_id], rng)
    tr = np.sort(np.concatenate([tr, _]))  # no test part from train: the test split is used
    xi, yi = xtr[is_id], ytr[is_id]
    length = xtr.shape[1]
    near_val = rng.permutation(np.nonzero(~is_id)[0])[: far_n // 2]
    rng_test, rng_val = (
        np.random.default_rng(split_seed + 1000),
        np.random.default_rng(split_seed + 2000),
    )
    id_te = yte < ID_CLASSES
    return OODData(
        train_x=_seq(xi[tr]),
        train_y=torch.from_numpy(yi[tr]),
        val_x=_seq(xi[va]),
        val_y=torch.from_numpy(yi[va]),
        test_x=_seq(xte[id_te]),
        test_y=torch.from_numpy(yte[id_te]),
        ood_test={
            "near": _seq(xte[~id_te]),
            "far_noise": _seq(_sequences_noise(far_n, length, rng_test)),
            "far_sine": _seq(_sequences_sine(far_n, length, rng_test)),
        },
        ood_val={
            "near": _seq(xtr[np.sort(near_val)]),
            "far_noise": _seq(_sequences_noise(far_n // 2, length, rng_val)),
            "far_sine": _seq(_sequences_sine(far_n // 2, length, rng_val)),
        },
        name="mnist1d",
    )


#: FGSM / PGD settings in pixel units of [0, 1] (8x8 digits are coarse: 0.1 is 1.6 grey levels
#: of the original 0-16 scale).
ATTACKS: dict[str, dict[str, float | int]] = {
    "fgsm": {"epsilon": 0.1},
    "pgd": {"epsilon": 0.1, "step_size": 0.02, "steps": 10},
}


def _attacks() -> tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor]] | None:
    try:
        mod = importlib.import_module("posneg.adversarial.attacks")
    except ImportError:
        return None
    return mod.fgsm, mod.pgd


def adversarial_sets(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, seed: int
) -> dict[str, torch.Tensor] | None:
    """FGSM and PGD (L-inf) of ``(x, y)`` on ``model``; ``None`` when the attacks are absent."""
    fns = _attacks()
    if fns is None:
        return None
    fgsm, pgd = fns
    model.eval()
    gen = torch.Generator(device=x.device).manual_seed(seed)
    p = ATTACKS["pgd"]
    return {
        "fgsm": fgsm(model, x, y, epsilon=float(ATTACKS["fgsm"]["epsilon"])),
        "pgd": pgd(
            model,
            x,
            y,
            epsilon=float(p["epsilon"]),
            step_size=float(p["step_size"]),
            steps=int(p["steps"]),
            generator=gen,
        ),
    }
