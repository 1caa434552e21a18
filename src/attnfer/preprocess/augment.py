"""Training augmentation as explicit per-sample parameters, applied one sample at a time or a whole batch at once.

A sample's augmentation is drawn once, on the CPU, by :func:`draw_params` (torchvision's own parameter samplers, under
the per-sample seed that makes resuming exact: ``engine.data.SeededAugmentation``) into a vector of
:data:`NUM_PARAMS` floats. Two appliers read that vector:

* :func:`apply_sample`: one uint8 (3, H, W) face on the CPU, with torchvision.transforms.v2's functional kernels. This
  is the CPU path (loader workers).
* :class:`BatchAugment`: a uint8 (B, 3, S, S) batch on any device (the accelerator, after the batch was moved there
  as uint8), every sample with its own parameters, in a handful of batched kernels. This is the GPU path.

Both run the same steps in the same order, in float [0, 1] after the geometric resize:
grey (models that are) -> resize or random resized crop (-> uint8 levels) -> horizontal flip -> rotation (nearest, fill
0) -> colour jitter (brightness, contrast, saturation, hue in a random order per sample) -> Keras RandomContrast ->
normalise -> random erasing (value 0). Given the same source pixels and parameters they agree to within 2/255 in
[0, 1] pixel units (``tests/test_batch_augment.py``): flip, rotation, jitter, contrast, erasing and normalisation are
the same arithmetic, and identical where the kernels are (rotation's grid is built as torchvision builds it); the
resize may differ by a uint8 level where the CPU path resizes with PIL or OpenCV and the batch with torch.

The random resized crop has one kernel for both paths (:func:`resized_crop`: a bilinear ``grid_sample`` clamped to
each box where the box is upscaled, ``interpolate`` per sample where it is downscaled or the kernel is not bilinear),
within a uint8 level of torchvision's uint8 ``resized_crop`` for bilinear models. How the training loader feeds the
batch path (``engine.data.FERDataModule.source_size``): with a random resized crop, the compiled store's faces as they
are (image files stretched to the model's resize size first, so their crop box is drawn on that size, not on the
file's); otherwise faces at the model's resize size, resized in the loader with the preprocessing's own kernel where
they are not, so the batch path only centre-crops. :class:`BatchAugment`'s own resize (a batch at another size, when
used outside the loader) is torch's ``interpolate``: within a uint8 level of PIL's bilinear, further for bicubic.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from .config import PreprocessConfig, as_preprocess

__all__ = [
    "NUM_PARAMS",
    "Augment",
    "BatchAugment",
    "apply_sample",
    "draw_params",
    "luma_uint8",
    "normalize_tensor",
    "resized_crop",
]

# the layout of a parameter vector
FLIP, ANGLE = 0, 1
JITTER = slice(2, 6)  # brightness, contrast, saturation factors (1 = none) and hue shift (0 = none)
ORDER = slice(6, 10)  # the order of the four jitter operations (a permutation of 0..3)
KCONTRAST = 10  # Keras RandomContrast factor (1 = none)
ERASE = 11  # 1: erase the box below
ERASE_BOX = slice(12, 16)  # top, left, height, width at the output size
CROP_BOX = slice(16, 20)  # top, left, height, width in the source (random resized crop; unused otherwise)
NUM_PARAMS = 20

ERASING_SCALE, ERASING_RATIO = (0.02, 0.33), (0.3, 3.3)  # torchvision's RandomErasing defaults
CROP_RATIO = (3 / 4, 4 / 3)  # torchvision's RandomResizedCrop default


class Augment:
    """Training augmentations of the recipes (all off except the horizontal flip).

    Attributes:
        hflip: probability of a horizontal flip.
        rotation: max degrees of a random rotation (DAN +/-20, SA-FER +/-10); nearest neighbour, filled with 0.
        color_jitter: (brightness, contrast, saturation, hue) as torchvision's ColorJitter.
        random_contrast: Keras RandomContrast factor (PAtt-Lite 0.3).
        random_erasing: probability of RandomErasing (after normalisation, value 0).
        resized_crop_scale: (min, max) area scale of RandomResizedCrop instead of a plain resize
            (EMO-Net uses torchvision's default (0.08, 1.0)).
    """

    def __init__(
        self,
        hflip: float = 0.5,
        rotation: float = 0.0,
        color_jitter: tuple[float, float, float, float] | None = None,
        random_contrast: float = 0.0,
        random_erasing: float = 0.0,
        resized_crop_scale: tuple[float, float] | None = None,
    ) -> None:
        self.hflip, self.rotation, self.random_contrast = float(hflip), float(rotation), float(random_contrast)
        self.color_jitter = tuple(float(v) for v in color_jitter) if color_jitter else None
        self.random_erasing = float(random_erasing)
        self.resized_crop_scale = tuple(float(v) for v in resized_crop_scale) if resized_crop_scale else None
        # torchvision's validated ranges: [max(0, 1 - b), 1 + b] ... and [-hue, hue]
        self._jitter = T.ColorJitter(*self.color_jitter) if self.color_jitter else None

    def __repr__(self) -> str:
        return (
            f"Augment(hflip={self.hflip}, rotation={self.rotation}, color_jitter={self.color_jitter}, "
            f"random_contrast={self.random_contrast}, random_erasing={self.random_erasing}, "
            f"resized_crop_scale={self.resized_crop_scale})"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Augment) and repr(self) == repr(other)

    @property
    def any(self) -> bool:
        """Whether any augmentation is on."""
        return bool(
            self.hflip
            or self.rotation
            or self.color_jitter
            or self.random_contrast
            or self.random_erasing
            or self.resized_crop_scale
        )


def _shape(c: int, h: int, w: int) -> torch.Tensor:
    """A (c, h, w) tensor for torchvision's ``get_params`` (it reads the shape only): no memory behind it."""
    return torch.zeros(()).expand(c, h, w)


def draw_params(augment: Augment, source_hw: tuple[int, int], out_hw: tuple[int, int]) -> torch.Tensor:
    """One sample's augmentation, drawn from torch's global RNG (the caller seeds it per sample): a float32 vector of
    :data:`NUM_PARAMS` values (layout at the top of this module). ``source_hw`` is the size of the face the crop
    is cut from, ``out_hw`` the model's input size. The draws happen in a fixed order, each only when its augmentation
    is on, with torchvision's samplers (RandomResizedCrop, RandomRotation, ColorJitter, RandomErasing)."""
    p = torch.zeros(NUM_PARAMS, dtype=torch.float32)
    p[JITTER] = torch.tensor([1.0, 1.0, 1.0, 0.0])
    p[ORDER] = torch.arange(4, dtype=torch.float32)
    p[KCONTRAST] = 1.0
    a = augment
    if a.resized_crop_scale:
        top, left, h, w = T.RandomResizedCrop.get_params(_shape(3, *source_hw), list(a.resized_crop_scale), CROP_RATIO)
        p[CROP_BOX] = torch.tensor([top, left, h, w], dtype=torch.float32)
    if a.hflip:
        p[FLIP] = float(torch.rand(1).item() < a.hflip)
    if a.rotation:
        p[ANGLE] = T.RandomRotation.get_params([-a.rotation, a.rotation])
    if a._jitter is not None:
        j = a._jitter
        order, b, c, s, h = T.ColorJitter.get_params(j.brightness, j.contrast, j.saturation, j.hue)
        p[ORDER] = order.to(torch.float32)
        p[JITTER] = torch.tensor(
            [1.0 if b is None else b, 1.0 if c is None else c, 1.0 if s is None else s, 0.0 if h is None else h]
        )
    if a.random_contrast:
        p[KCONTRAST] = 1.0 + (torch.rand(()) * 2 - 1) * a.random_contrast
    if a.random_erasing and torch.rand(1).item() < a.random_erasing:
        image = _shape(3, *out_hw)
        i, j, h, w, v = T.RandomErasing.get_params(image, ERASING_SCALE, ERASING_RATIO, [0.0])
        if v is not image:  # a box was found (else torchvision gives the image back: no erasing)
            p[ERASE] = 1.0
            p[ERASE_BOX] = torch.tensor([i, j, h, w], dtype=torch.float32)
    return p


def normalize_tensor(x: torch.Tensor, cfg: PreprocessConfig) -> torch.Tensor:
    """Float pixels in [0, 1], (..., 3, h, w) -> the model's units (the same arithmetic as the numpy backend)."""
    if cfg.mean is None:
        return x * 255.0
    mean = torch.tensor(cfg.mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
    std = torch.tensor(cfg.std, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x - mean) / std


def luma_uint8(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma of uint8 RGB (..., 3, H, W), replicated to 3 channels: PIL's ``convert("L")`` integer
    arithmetic exactly, ``(19595 R + 38470 G + 7471 B + 2^15) >> 16``."""
    r, g, b = x.to(torch.int32).unbind(-3)
    luma = ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).to(torch.uint8)  # (..., H, W)
    return luma.unsqueeze(-3).expand(x.shape).contiguous()


# ---- one sample, torchvision's kernels -------------------------------------------------------------------------
def _jitter_sample(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    b, c, s, h = (float(v) for v in p[JITTER])
    for op in p[ORDER].long().tolist():
        if op == 0 and b != 1.0:
            x = TF.adjust_brightness(x, b)
        elif op == 1 and c != 1.0:
            x = TF.adjust_contrast(x, c)
        elif op == 2 and s != 1.0:
            x = TF.adjust_saturation(x, s)
        elif op == 3 and h != 0.0:
            x = TF.adjust_hue(x, h)
    return x


def apply_sample(source: torch.Tensor, p: torch.Tensor, cfg: Any, augment: Augment, resize: Any = None) -> torch.Tensor:
    """One uint8 (3, H, W) face and its parameters (:func:`draw_params`) -> the float (3, h, w) model input.

    ``resize`` maps a uint8 (H, W, 3) array to the model's size (grey for grey models, stretch, centre crop: the
    preprocessing's :func:`~attnfer.preprocess.numpy_ops.resize_face`); it is used when there is no random resized
    crop."""
    cfg = as_preprocess(cfg)
    if augment.resized_crop_scale:  # the batch path's kernel (torchvision's within a uint8 level)
        src = luma_uint8(source) if cfg.grayscale else source
        x = resized_crop(src[None], p[None, CROP_BOX], cfg)[0]  # (3, h, w) float at uint8 levels
    else:
        face = resize(source.permute(1, 2, 0).numpy())  # (h, w, 3) uint8
        x = torch.from_numpy(face if face.flags.writeable else face.copy()).permute(2, 0, 1).float()
    x = x / 255.0  # (3, h, w) in [0, 1]
    if p[FLIP] > 0:
        x = TF.horizontal_flip(x)
    if p[ANGLE] != 0:
        x = TF.rotate(x, float(p[ANGLE]), interpolation=InterpolationMode.NEAREST, fill=0.0)
    if augment.color_jitter:
        x = _jitter_sample(x, p)
    if p[KCONTRAST] != 1.0:
        mean = x.mean(dim=(-2, -1), keepdim=True)  # (3, 1, 1) per channel, as Keras
        x = ((x - mean) * p[KCONTRAST] + mean).clamp(0, 1)
    x = normalize_tensor(x, cfg)
    if p[ERASE] > 0:
        i, j, h, w = (int(v) for v in p[ERASE_BOX])
        x = TF.erase(x, i, j, h, w, torch.zeros(3, 1, 1))
    return x.contiguous()


# ---- a batch, per-sample parameters --------------------------------------------------------------------------------
def _gray(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) float -> (B, 1, H, W): torchvision's float luma (0.2989, 0.587, 0.114)."""
    r, g, b = x.unbind(1)
    return (r * 0.2989 + g * 0.587 + b * 0.114).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    f = f.view(-1, 1, 1, 1)  # (B, 1, 1, 1)
    return (x * f + other * (1.0 - f)).clamp(0, 1)


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> HSV, hue in [0, 1) (the hexcone model, PIL's conventions)."""
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    grey = delta == 0
    s = delta / torch.where(grey, torch.ones_like(maxc), maxc)
    d = torch.where(grey, torch.ones_like(delta), delta)
    rc, gc, bc = (maxc - r) / d, (maxc - g) / d, (maxc - b) / d
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(grey, torch.zeros_like(h), h)
    h = (h / 6.0 + 1.0).fmod(1.0)
    return torch.stack((h, s, maxc), 1)


#: per hue sector, where (r, g, b) come from in (v, p, q, t) = 0, 1, 2, 3
HUE_TABLE = ((0, 2, 1, 1, 3, 0), (3, 0, 0, 2, 1, 1), (1, 1, 3, 0, 0, 2))


def _hsv_to_rgb(hsv: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """HSV (B, 3, H, W) -> RGB; ``table``: :data:`HUE_TABLE` as a long tensor on the batch's device."""
    h, s, v = hsv.unbind(1)  # (B, H, W) each
    h6 = h * 6.0
    sector = torch.floor(h6)
    f = h6 - sector
    sector = sector.long() % 6
    p = (v * (1.0 - s)).clamp(0, 1)
    q = (v * (1.0 - s * f)).clamp(0, 1)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0, 1)
    choice = table[:, sector].movedim(0, 1)  # (B, 3, H, W)
    return torch.stack((v, p, q, t), 1).gather(1, choice)


def _adjust(x: torch.Tensor, op: int, f: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """One jitter operation on a sub-batch (B', 3, H, W) with its factors (B',); ``table``: the hue table."""
    if op == 0:  # brightness
        return (x * f.view(-1, 1, 1, 1)).clamp(0, 1)
    if op == 1:  # contrast: blend with the mean luma of the image
        return _blend(x, _gray(x).mean(dim=(1, 2, 3), keepdim=True), f)
    if op == 2:  # saturation: blend with the luma image
        return _blend(x, _gray(x), f)
    hsv = _rgb_to_hsv(x)  # hue: rotate the hue circle
    hue = (hsv[:, 0] + f.view(-1, 1, 1)).remainder(1.0)
    return _hsv_to_rgb(torch.stack((hue, hsv[:, 1], hsv[:, 2]), 1), table)


def _to(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small CPU tensor onto ``device`` without waiting for the device (pinned, non-blocking on CUDA)."""
    if device.type == "cpu":
        return t
    return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t.to(device)


def _interpolate(x: torch.Tensor, size: tuple[int, int], cfg: PreprocessConfig) -> torch.Tensor:
    """Float (B, 3, H, W) at uint8 levels resized to ``size`` with the config's kernel and antialiasing, rounded to
    uint8 levels again."""
    kw = {} if cfg.interpolation == "nearest" else {"align_corners": False, "antialias": cfg.antialias}
    return F.interpolate(x, size=size, mode=cfg.interpolation, **kw).round_().clamp_(0, 255)


def resized_crop(x: torch.Tensor, boxes: torch.Tensor, cfg: PreprocessConfig) -> torch.Tensor:
    """uint8 (B, 3, H, W) and per-sample crop boxes (B, 4: top, left, height, width; on the CPU) -> float
    (B, 3, h, w) at uint8 levels: each box resized to the input size (RandomResizedCrop's resize), one kernel for
    both paths. Boxes not larger than the output (an upscale) are sampled bilinearly in one ``grid_sample``, the
    coordinates clamped to the box: what a bilinear resize of the cut-out box computes (within a uint8 level of
    torchvision's uint8 ``resized_crop``). Larger boxes (a downscale), and other kernels, are resized one by one with
    ``interpolate`` (antialiased as configured), as torchvision does."""
    (h, w), dev = cfg.size, x.device
    B, _, H, W = x.shape
    xf = x.float()
    out = torch.empty(B, 3, h, w, device=dev)
    boxes = boxes.to("cpu", torch.float64)
    down = (boxes[:, 2] > h) | (boxes[:, 3] > w)
    if cfg.interpolation != "bilinear":
        down[:] = True  # only the bilinear kernel has a grid_sample equivalent here
    up = (~down).nonzero().flatten()
    if len(up):
        top, left, bh, bw = (boxes[up, k].view(-1, 1) for k in range(4))  # (n, 1) each
        ys = torch.arange(h, dtype=torch.float64).view(1, -1)
        xs = torch.arange(w, dtype=torch.float64).view(1, -1)
        sy = torch.minimum(((ys + 0.5) * bh / h - 0.5).clamp(min=0), bh - 1) + top  # (n, h) source rows
        sx = torch.minimum(((xs + 0.5) * bw / w - 0.5).clamp(min=0), bw - 1) + left  # (n, w) source columns
        gy = _to(((2 * sy + 1) / H - 1).float(), dev)  # (n, h) normalised, align_corners=False
        gx = _to(((2 * sx + 1) / W - 1).float(), dev)  # (n, w)
        grid = torch.stack(torch.broadcast_tensors(gx.unsqueeze(1), gy.unsqueeze(2)), -1)  # (n, h, w, 2), on device
        idx = _to(up, dev)
        sampled = F.grid_sample(xf[idx], grid, mode="bilinear", padding_mode="border", align_corners=False)
        out[idx] = sampled.round_().clamp_(0, 255)
    for k in down.nonzero().flatten().tolist():
        top, left, bh, bw = (int(v) for v in boxes[k])
        out[k] = _interpolate(xf[k : k + 1, :, top : top + bh, left : left + bw], (h, w), cfg)[0]
    return out


def _base_grid(h: int, w: int) -> torch.Tensor:
    """torchvision's affine base grid: pixel centres relative to the image centre, homogeneous, (1, h*w, 3)."""
    base = torch.empty(1, h, w, 3)
    base[..., 0] = torch.linspace((1.0 - w) * 0.5, (w - 1.0) * 0.5, steps=w)
    base[..., 1] = torch.linspace((1.0 - h) * 0.5, (h - 1.0) * 0.5, steps=h).view(-1, 1)
    base[..., 2] = 1.0
    return base.view(1, h * w, 3)


class BatchAugment:
    """Augment and normalise a uint8 batch on its own device, every sample with its own parameters.

    ``BatchAugment(cfg, augment)(x, params)``: ``x`` uint8 (B, 3, S, S') faces at the source size (a compiled store's
    faces, or faces stretched to the model's resize size by the loader), ``params`` (B, NUM_PARAMS) from
    :func:`draw_params`, best left on the CPU where the loader made them: every decision that depends on them (which
    samples take which operation, rotation matrices, crop boxes) is taken there and the results are copied to the
    device without a synchronisation, so the accelerator never waits for the host. Returns the float (B, 3, h, w)
    model input. Without parameters (evaluation) it greys, resizes and normalises only. The operations and their
    order are :func:`apply_sample`'s (module docstring).
    """

    def __init__(
        self, cfg: Any, augment: Augment | None = None, memory_format: torch.memory_format = torch.contiguous_format
    ) -> None:
        self.cfg = as_preprocess(cfg)
        self.augment = augment or Augment(hflip=0.0)
        self.memory_format = memory_format
        self._consts: dict[tuple, torch.Tensor] = {}  # per device: made once (a tensor from a list syncs on CUDA)

    def __repr__(self) -> str:
        return f"BatchAugment({self.cfg}, {self.augment})"

    def _const(self, name: str, device: torch.device, make) -> torch.Tensor:
        key = (name, str(device))
        if key not in self._consts:
            self._consts[key] = make().to(device)
        return self._consts[key]

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        """:func:`normalize_tensor` with the mean and std kept on the device."""
        cfg = self.cfg
        if cfg.mean is None:
            return x * 255.0
        mean = self._const("mean", x.device, lambda: torch.tensor(cfg.mean).view(1, 3, 1, 1))
        std = self._const("std", x.device, lambda: torch.tensor(cfg.std).view(1, 3, 1, 1))
        return (x - mean) / std

    def __call__(self, x: torch.Tensor, params: torch.Tensor | None = None) -> torch.Tensor:
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a uint8 (B, 3, H, W) batch, got {x.dtype} {tuple(x.shape)}")
        B, dev = x.shape[0], x.device
        cfg, a = self.cfg, self.augment if params is not None else Augment(hflip=0.0)
        if params is None:
            params = draw_params(a, tuple(x.shape[-2:]), cfg.size).expand(B, -1)
        p = params.detach().to("cpu", torch.float32)  # decisions on the host (no-op for the loader's CPU tensor)
        if p.shape != (B, NUM_PARAMS):
            raise ValueError(
                f"expected parameters of shape ({B}, {NUM_PARAMS}) for a batch of {B}, got {tuple(p.shape)}"
            )
        pd = _to(p.contiguous(), dev)  # (B, NUM_PARAMS) on the device, for elementwise factors
        h, w = cfg.size
        if cfg.grayscale:
            x = luma_uint8(x)
        x = resized_crop(x, p[:, CROP_BOX], cfg) if a.resized_crop_scale else self._resize(x)  # uint8 levels
        x = x / 255.0  # (B, 3, h, w) in [0, 1]
        assert x.shape[-2:] == (h, w), x.shape
        if a.hflip:
            x = torch.where(pd[:, FLIP].view(-1, 1, 1, 1) > 0, x.flip(-1), x)
        if a.rotation:
            x = self._rotate(x, p[:, ANGLE], self._const(f"grid{tuple(x.shape[-2:])}", dev, lambda: _base_grid(h, w)))
        if a.color_jitter:
            table = self._const("hue", dev, lambda: torch.tensor(HUE_TABLE, dtype=torch.long))
            x = self._jitter(x, p, pd, table)
        if a.random_contrast:
            mean = x.mean(dim=(-2, -1), keepdim=True)  # (B, 3, 1, 1)
            x = ((x - mean) * pd[:, KCONTRAST].view(-1, 1, 1, 1) + mean).clamp(0, 1)
        x = self._normalize(x)
        if a.random_erasing:
            x = self._erase(x, pd)
        return x.contiguous(memory_format=self.memory_format)

    # ---- geometry -------------------------------------------------------------------------------------------
    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        """Stretch to the resize size, centre-crop the input size (the preprocessing's geometry); uint8 levels."""
        cfg = self.cfg
        (rh, rw), (h, w) = cfg.resize_size, cfg.size
        xf = x.float()
        if tuple(x.shape[-2:]) != (rh, rw):
            xf = _interpolate(xf, (rh, rw), cfg)
        if (rh, rw) != (h, w):
            y0, x0 = (rh - h) // 2, (rw - w) // 2
            xf = xf[..., y0 : y0 + h, x0 : x0 + w]
        return xf

    @staticmethod
    def _rotate(x: torch.Tensor, angles: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """Rotate each image by its angle (degrees, counter-clockwise, on the CPU) about its centre, nearest
        neighbour, zeros outside: torchvision's ``rotate`` grid (the inverse matrix in double precision, scaled to
        normalised coordinates, over the pixel-centre base grid ``base`` (1, H*W, 3)), one ``grid_sample``."""
        B, _, H, W = x.shape
        thetas, keep = [], []
        for angle in angles.tolist():
            rot = math.radians(-(angle % 360))
            cos, sin = math.cos(rot), math.sin(rot)
            thetas.append([cos, sin, 0.0, -sin, cos, 0.0])  # the inverse rotation about the centre
            keep.append(angle % 360 == 0)  # torchvision returns these unchanged
        theta = torch.tensor(thetas, dtype=torch.float32).view(B, 2, 3)
        scaled = theta.transpose(1, 2) / torch.tensor([0.5 * W, 0.5 * H])  # (B, 3, 2), as torchvision scales it
        grid = base.expand(B, -1, -1).bmm(_to(scaled, x.device))  # (B, H*W, 2)
        rotated = F.grid_sample(x, grid.view(B, H, W, 2), mode="nearest", padding_mode="zeros", align_corners=False)
        return torch.where(_to(torch.tensor(keep).view(-1, 1, 1, 1), x.device), x, rotated)

    # ---- colour -------------------------------------------------------------------------------------------------
    @staticmethod
    def _jitter(x: torch.Tensor, p: torch.Tensor, pd: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """ColorJitter with each sample's factors and order: four rounds; in round r each sample runs its r-th
        operation (grouped by operation on the host, skipped where its factor is the identity)."""
        order, factors = p[:, ORDER].long(), p[:, JITTER]  # (B, 4) each, on the CPU
        identity = torch.tensor([1.0, 1.0, 1.0, 0.0])
        x = x.clone()
        for r in range(4):
            for op in range(4):
                sel = ((order[:, r] == op) & (factors[:, op] != identity[op])).nonzero().flatten()
                if len(sel):
                    idx = _to(sel, x.device)
                    x[idx] = _adjust(x[idx], op, pd[idx, JITTER.start + op], table)
        return x

    @staticmethod
    def _erase(x: torch.Tensor, pd: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        i, j, h, w = (pd[:, ERASE_BOX][:, k].view(-1, 1, 1, 1) for k in range(4))  # (B, 1, 1, 1) each
        ys = torch.arange(H, device=x.device).view(1, 1, -1, 1)
        xs = torch.arange(W, device=x.device).view(1, 1, 1, -1)
        box = (ys >= i) & (ys < i + h) & (xs >= j) & (xs < j + w) & (pd[:, ERASE].view(-1, 1, 1, 1) > 0)
        return x.masked_fill(box, 0.0)
