"""Random views of a data set's samples for self-supervised training (two views per sample).

- :func:`augment_images`: flattened images (B, H*W): a shift by up to one pixel (zero padding), a
  contrast scale, pixel dropout and Gaussian noise, per sample.
- :func:`augment_vectors`: standardised feature vectors (B, F): feature dropout and noise.
- :func:`augment_sequences`: sequences (B, L) such as MNIST-1D's, with its own transforms, per
  sample: amplitude scale, circular shift, shear, correlated and i.i.d. Gaussian noise.
- :func:`gaussian_smooth`: the correlated-noise filter (SciPy's ``gaussian_filter1d``, mode
  ``reflect``, truncate 4) as a batched convolution.
- :func:`view_fn`: the view of a :class:`~posneg.data.Dataset` batch: image views for image data
  (then standardised), sequence views for MNIST-1D, vector views of the standardised features
  otherwise.

Every draw is per sample, vectorised, from the ``generator`` given, on the input's device.
Same generator state, same device and same input give the same views.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from posneg.data.digits import Dataset
from posneg.data.mnist1d import MNIST1D_ARGS, MNIST1D_RAW_STD

__all__ = ["augment_images", "augment_sequences", "augment_vectors", "gaussian_smooth"]
__all__ += ["sequence_view_fn", "view_fn"]


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


def gaussian_smooth(x: torch.Tensor, sigma: float, *, truncate: float = 4.0) -> torch.Tensor:
    """Gaussian filter along the last axis of ``x`` (B, L), as ``scipy.ndimage.gaussian_filter1d``.

    The kernel has radius ``int(truncate * sigma + 0.5)`` and sums to one; edges are extended by
    mirroring with the edge sample repeated (SciPy's ``reflect``: ``c b a | a b c``).
    """
    if sigma <= 0:
        raise ValueError(f"gaussian_smooth: sigma must be > 0; got {sigma}")
    r = int(truncate * sigma + 0.5)
    t = torch.arange(-r, r + 1, device=x.device, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(x.dtype)
    n = x.shape[-1]
    idx = torch.arange(-r, n + r, device=x.device) % (2 * n)  # mirror: period 2L
    idx = torch.where(idx >= n, 2 * n - 1 - idx, idx)  # edge sample repeated
    padded = x[:, idx]
    return torch.nn.functional.conv1d(padded[:, None, :], kernel.flip(0)[None, None, :])[:, 0]


_RAW = MNIST1D_RAW_STD


def augment_sequences(
    x: torch.Tensor,
    *,
    scale: float = MNIST1D_ARGS["scale_coeff"],
    max_shift: int = 8,
    shear: float = MNIST1D_ARGS["shear_scale"] / _RAW,
    corr_noise: float = MNIST1D_ARGS["corr_noise_scale"] / _RAW,
    iid_noise: float = MNIST1D_ARGS["iid_noise_scale"] / _RAW,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One random view of each sequence in ``x`` (B, L), with MNIST-1D's transforms.

    Per sample, in the order of ``mnist1d.transform.transform``: multiply by
    ``1 + scale * (u - 1/2)``; roll circularly by an integer in ``[-max_shift, max_shift]``
    (MNIST-1D translates by rolling); add correlated noise (``corr_noise`` times standard
    Gaussian noise smoothed by :func:`gaussian_smooth` with sigma 2) and i.i.d. Gaussian noise
    of standard deviation ``iid_noise``; subtract the shear ramp
    ``shear * (u' - 1/2) * linspace(-1/2, 1/2, L)``. ``u, u'`` are uniform in [0, 1).

    The defaults are the package's generator magnitudes in the units of the stored (standardised)
    data (divided by :data:`~posneg.data.mnist1d.MNIST1D_RAW_STD`). Two deliberate differences
    from the generator: the correlated noise is added everywhere (the generator fills only the
    zero padding around the digit, which no longer exists after generation), and the shift is
    bounded by ``max_shift`` (the generator rolls a 72-step signal by up to 48). Dilation
    (padding then resampling) is left out: it is how a template becomes a sequence.

    Vectorised over the batch; all draws from ``generator`` on ``x``'s device.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> augment_sequences(torch.zeros(3, 40), generator=g).shape
        torch.Size([3, 40])
    """
    if x.dim() != 2:
        raise ValueError(f"augment_sequences: x must be (B, L); got shape {tuple(x.shape)}")
    if max_shift < 0:
        raise ValueError(f"augment_sequences: max_shift must be >= 0; got {max_shift}")
    b, n = x.shape
    dev, dt = x.device, x.dtype
    out = x * (1 + scale * (torch.rand(b, 1, device=dev, dtype=dt, generator=generator) - 0.5))
    if max_shift > 0:
        k = torch.randint(-max_shift, max_shift + 1, (b, 1), device=dev, generator=generator)
        src = (torch.arange(n, device=dev)[None, :] - k) % n  # out[t] = x[t - k]
        out = out.gather(1, src)
    if corr_noise > 0:
        noise = torch.randn(b, n, device=dev, dtype=dt, generator=generator)
        out = out + corr_noise * gaussian_smooth(noise, 2.0)
    if iid_noise > 0:
        out = out + iid_noise * torch.randn(b, n, device=dev, dtype=dt, generator=generator)
    coeff = shear * (torch.rand(b, 1, device=dev, dtype=dt, generator=generator) - 0.5)
    return out - coeff * torch.linspace(-0.5, 0.5, n, device=dev, dtype=dt)


def sequence_view_fn(data: Dataset) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """``view(raw_batch, generator)``: :func:`augment_sequences` then the data's scaler."""
    scaler = data.scaler

    def sequence_view(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return scaler(augment_sequences(x, generator=g))

    return sequence_view


def view_fn(data: Dataset) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """The view function of ``data``: ``view(raw_batch, generator) -> standardised view``.

    Image data (``data.image_shape`` set) gets :func:`augment_images` then the data's scaler;
    MNIST-1D (``data.name == "mnist1d"``) gets :func:`sequence_view_fn`; other data gets
    :func:`augment_vectors` of the standardised features.

    Example:
        >>> from posneg.data import load_digits
        >>> data = load_digits()
        >>> view = view_fn(data)
        >>> x = torch.as_tensor(data.x_train[:4])
        >>> view(x, torch.Generator().manual_seed(0)).shape
        torch.Size([4, 64])
    """
    if data.name == "mnist1d":
        return sequence_view_fn(data)
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
