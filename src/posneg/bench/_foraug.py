"""The ForAug part of `posneg bench selection`: digits on class-correlated photo backgrounds.

The card's CPU check. Foregrounds: scikit-learn's 8x8 digits upsampled to 16x16, white strokes,
``alpha = threshold_mask(x, threshold=0.3)`` (:func:`posneg.augment.foraug.threshold_mask`).
Backgrounds: 32x32 RGB patches of scikit-learn's two bundled photographs (``china.jpg``,
``flower.jpg``), darkened and tinted: family ``f`` has its own tint, and ``patches_per_family``
patches (train and test patches drawn from disjoint halves of each photograph). A foreground's
own ratio ``r = mean(alpha) / 4`` (the 16x16 digit framed in a 32x32 image), so pasted digits
are about 16 pixels across.

Three training sets (each composed by :class:`posneg.augment.foraug.ForAug`'s functions):

- ``correlated``: composites made once, digit ``c`` always on a family-``c`` background;
- ``foraug-all``: every epoch, each digit on a uniformly drawn background (``'all'``);
- ``foraug-same``: every epoch, each digit on a drawn background of its own family (``'same'``).

Test sets (held-out digits on held-out patches): ``same`` (family ``c`` for digit ``c``) and
``swapped`` (a uniformly drawn family other than ``c``). The paper's claim: less background
reliance, i.e. ``swapped`` accuracy of ``foraug-all`` well above the other two, and a smaller
``same - swapped`` gap.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from posneg.augment.foraug import apply_foraug, sample_foraug_params, threshold_mask
from posneg.bench._classifier import SmallCNN

__all__ = ["FORAUG_METHODS", "foraug_run", "make_foraug_data"]

FORAUG_METHODS = ("correlated", "foraug-all", "foraug-same")
_TINTS = torch.tensor(
    [
        [1.0, 0.3, 0.3],
        [0.3, 1.0, 0.3],
        [0.3, 0.3, 1.0],
        [1.0, 1.0, 0.3],
        [1.0, 0.3, 1.0],
        [0.3, 1.0, 1.0],
        [1.0, 0.6, 0.2],
        [0.6, 0.2, 1.0],
        [0.5, 0.5, 0.5],
        [0.2, 0.6, 0.4],
    ]
)


@functools.lru_cache(maxsize=1)
def _photos() -> tuple[torch.Tensor, ...]:
    from sklearn.datasets import load_sample_images

    return tuple(
        torch.as_tensor(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)
        for im in load_sample_images().images
    )


def _patches(n_per_family: int, *, half: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(10 n, 3, 32, 32) darkened tinted patches and their family labels; ``half`` 0 takes
    the left half of each photograph, 1 the right half."""
    g = torch.Generator().manual_seed(seed)
    out, fam = [], []
    photos = _photos()
    for f in range(10):
        for _ in range(n_per_family):
            im = photos[int(torch.randint(len(photos), (1,), generator=g))]
            h, w = im.shape[1:]
            side = 32 * int(torch.randint(1, 5, (1,), generator=g))
            x_lo = half * (w // 2)
            y0 = int(torch.randint(0, h - side, (1,), generator=g))
            x0 = x_lo + int(torch.randint(0, w // 2 - side, (1,), generator=g))
            crop = im[:, y0 : y0 + side, x0 : x0 + side][None]
            crop = F.interpolate(crop, size=(32, 32), mode="area")[0]
            out.append(0.6 * crop * _TINTS[f][:, None, None])
            fam.append(f)
    return torch.stack(out), torch.tensor(fam)


def make_foraug_data(split_seed: int, patches_per_family: int) -> dict[str, torch.Tensor]:
    from posneg.data import load_digits

    d = load_digits(seed=split_seed)

    def fg(x: np.ndarray) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(x, dtype=np.float32)).reshape(-1, 1, 8, 8)
        t = F.interpolate(t, size=(16, 16), mode="bilinear", align_corners=False).clamp(0, 1)
        return t.expand(-1, 3, -1, -1).contiguous()

    xtr, xte = fg(d.x_train), fg(d.x_test)
    bg_tr, fam_tr = _patches(patches_per_family, half=0, seed=split_seed)
    bg_te, fam_te = _patches(patches_per_family, half=1, seed=split_seed + 1)
    return {
        "fg_train": xtr,
        "alpha_train": threshold_mask(xtr, threshold=0.3),
        "y_train": torch.as_tensor(d.y_train, dtype=torch.int64),
        "fg_test": xte,
        "alpha_test": threshold_mask(xte, threshold=0.3),
        "y_test": torch.as_tensor(d.y_test, dtype=torch.int64),
        "bg_train": bg_tr,
        "fam_train": fam_tr,
        "bg_test": bg_te,
        "fam_test": fam_te,
    }


def _pick(fam: torch.Tensor, families: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """One background index of the wanted family per sample, uniform within the family."""
    out = torch.empty(len(families), dtype=torch.int64)
    u = torch.rand(len(families), generator=g, dtype=torch.float64)
    for f in range(10):
        pool = torch.nonzero(fam == f).flatten()
        sel = families == f
        out[sel] = pool[(u[sel] * len(pool)).long()]
    return out


def compose(
    fg: torch.Tensor,
    alpha: torch.Tensor,
    bg: torch.Tensor,
    g: torch.Generator,
) -> torch.Tensor:
    """ForAug's size/position/edge draws with ``r = mean(alpha) / 4`` for both ratios."""
    a = alpha.flatten(1).mean(1).clamp(1e-3, 1.0)
    r = (a / 4).clamp(1e-4, 1.0)
    p = sample_foraug_params(
        fg_size=(16, 16), bg_size=(32, 32), fg_ratio=r, bg_ratio=r, alpha_mean=a, generator=g
    )
    return apply_foraug(fg, alpha, bg, p)[0]


def _swapped(y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return (y + torch.randint(1, 10, y.shape, generator=g)) % 10


def foraug_run(
    data: dict[str, torch.Tensor], *, method: str, seed: int, epochs: int, lr: float = 3e-3
) -> dict[str, Any]:
    """Train a SmallCNN with ``method``; accuracy on ``same`` and ``swapped`` test composites."""
    g = torch.Generator().manual_seed(seed)
    tg = torch.Generator().manual_seed(10_000)  # the same test sets for every run
    fg, al, y = data["fg_train"], data["alpha_train"], data["y_train"]
    same_test = compose(
        data["fg_test"],
        data["alpha_test"],
        data["bg_test"][_pick(data["fam_test"], data["y_test"], tg)],
        tg,
    )
    swap_test = compose(
        data["fg_test"],
        data["alpha_test"],
        data["bg_test"][_pick(data["fam_test"], _swapped(data["y_test"], tg), tg)],
        tg,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallCNN(3, 10, mean=0.2, std=0.3)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    fixed = compose(fg, al, data["bg_train"][_pick(data["fam_train"], y, g)], g)
    t0 = time.perf_counter()
    for _ in range(epochs):
        if method == "correlated":
            x = fixed
        elif method == "foraug-same":
            x = compose(fg, al, data["bg_train"][_pick(data["fam_train"], y, g)], g)
        else:
            idx = torch.randint(len(data["bg_train"]), (len(y),), generator=g)
            x = compose(fg, al, data["bg_train"][idx], g)
        perm = torch.randperm(len(y), generator=g)
        model.train()
        for s in range(0, len(perm), 64):
            b = perm[s : s + 64]
            loss = F.cross_entropy(model(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    elapsed = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        acc_same = float((model(same_test).argmax(1) == data["y_test"]).float().mean())
        acc_swap = float((model(swap_test).argmax(1) == data["y_test"]).float().mean())
    return {"same": acc_same, "swapped": acc_swap, "gap": acc_same - acc_swap, "time": elapsed}
