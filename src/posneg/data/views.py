"""Random views of a data set's samples for self-supervised training (two views per sample).

- :func:`augment_images`: flattened images (B, H*W): a shift by up to one pixel (zero padding), a
  contrast scale, pixel dropout and Gaussian noise, per sample.
- :func:`augment_vectors`: standardised feature vectors (B, F): feature dropout and noise.
- :func:`view_fn`: the view of a :class:`~posneg.data.Dataset` batch: image views for image data
  (then standardised), vector views of the standardised features otherwise.

Every draw is per sample, vectorised, from the ``generator`` given, on the input's device.
Same generator state, same device and same input give the same views.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from posneg.data.digits import Dataset

__all__ = ["augment_images", "augment_vectors", "view_fn"]


def augment_images(
    x: torch.Tensor,
    image_shape: tuple[int, int],
    *,
    max_shift: int = 1,
    contrast: tuple[float, float] = (0.7, 1.3),
    drop: float = 0.1,
    noise: float = 0.1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One random view of each flattened image in ``x`` (B, H*W), pixel values about [0, 1].

    Per sample: a shift by up to ``max_shift`` pixels in each direction (zero padding), a
    contrast scale drawn from ``contrast``, pixel dropout with probability ``drop`` and Gaussian
    noise of standard deviation ``noise``. Vectorised over the batch; all draws from
    ``generator`` on ``x``'s device.
    """
    b = x.shape[0]
    h, w = image_shape
    dev = x.device
    img = x.reshape(b, h, w)
    s = max_shift
    if s > 0:
        padded = torch.nn.functional.pad(img, (s, s, s, s))
        off = torch.randint(0, 2 * s + 1, (b, 2), device=dev, generator=generator)
        rows = off[:, 0, None] + torch.arange(h, device=dev)  # (B, H)
        cols = off[:, 1, None] + torch.arange(w, device=dev)  # (B, W)
        bidx = torch.arange(b, device=dev)[:, None, None]
        img = padded[bidx, rows[:, :, None], cols[:, None, :]]
    lo, hi = contrast
    scale = lo + (hi - lo) * torch.rand(b, 1, 1, device=dev, dtype=x.dtype, generator=generator)
    img = img * scale
    out = img.reshape(b, h * w)
    if drop > 0:
        keep = torch.rand(out.shape, device=dev, generator=generator) >= drop
        out = out * keep.to(out.dtype)
    if noise > 0:
        out = out + noise * torch.randn(out.shape, device=dev, dtype=x.dtype, generator=generator)
    return out


def augment_vectors(
    x: torch.Tensor,
    *,
    noise: float = 0.2,
    drop: float = 0.2,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One random view of standardised feature vectors ``x`` (B, F): feature dropout + noise.

    Each feature is zeroed with probability ``drop``, then Gaussian noise of standard deviation
    ``noise`` is added; all draws from ``generator`` on ``x``'s device.
    """
    keep = torch.rand(x.shape, device=x.device, generator=generator) >= drop
    out = x * keep.to(x.dtype)
    return out + noise * torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)


def view_fn(data: Dataset) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """The view function of ``data``: ``view(raw_batch, generator) -> standardised view``.

    Image data (``data.image_shape`` set) gets :func:`augment_images` then the data's scaler;
    other data gets :func:`augment_vectors` of the standardised features.

    Example:
        >>> from posneg.data import load_digits
        >>> data = load_digits()
        >>> view = view_fn(data)
        >>> x = torch.as_tensor(data.x_train[:4])
        >>> view(x, torch.Generator().manual_seed(0)).shape
        torch.Size([4, 64])
    """
    scaler = data.scaler
    shape = data.image_shape
    if shape is not None:

        def image_view(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
            return scaler(augment_images(x, shape, generator=g))

        return image_view

    def vector_view(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return augment_vectors(scaler(x), generator=g)

    return vector_view


# ---------------------------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------------------------
