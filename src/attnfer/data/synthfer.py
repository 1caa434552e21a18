"""SynthFER: a deterministic, procedural facial-expression dataset written in RAF-DB's layout.

It exists so that the quickstart and the tests exercise the real loader path end to end with no download.
Faces are drawn with OpenCV from a parametric model:

* identity (fixed per person; train and test people are disjoint): face shape, skin tone, eye spacing and
  size, brow thickness, nose length, mouth width, hair colour and style, and a "resting face" offset;
* the 7 basic expressions as local cues (brows, eye opening, cheek raise, mouth corners/opening/width,
  upper-lip raise, nose wrinkle) at an intensity drawn from [0.35, 1], plus per-image jitter, so that classes
  overlap where real ones do: fear vs surprise (inner brows, mouth width), anger vs disgust (brows vs nose
  wrinkle and upper lip), subtle sadness vs neutral;
* nuisances: in-plane rotation, scale and shift, pseudo-yaw (features move with their depth), lighting
  gradients, cluttered backgrounds, blur, noise, JPEG artefacts, and occluders (sunglasses, a hand, a mask).

Output (``generate``): ``EmoLabel/list_patition_label.txt`` with RAF-DB codes 1-7, ``Image/aligned/*_aligned.jpg``,
per-image face masks ``Image/mask/*_mask.png`` (FERAtt's reconstruction target), the challenging-subset lists
``subsets/{occlusion,pose_30,pose_45}_list.txt`` in the RAN authors' format, and ``synthfer.json`` (parameters and
counts). Every image depends only on (seed, index), so the bytes are identical for any number of workers.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .labels import BASIC7, RAFDB_CODES

__all__ = ["EXPRESSIONS", "SynthSample", "clutter_background", "contact_sheet", "generate", "render"]

EXPRESSIONS = BASIC7  # canonical order: neutral, happiness, surprise, sadness, anger, disgust, fear
_RAF_CODE = {name: code for code, name in RAFDB_CODES.items()}

# Expression templates: deviation of each facial parameter from neutral at full intensity.
#   brow_raise, brow_inner (inner ends up +), brow_squeeze, eye_open (x), cheek (lower lid up),
#   corner (mouth corners up +), mouth_open, mouth_width (x), upper_lip, wrinkle (nose), asym
_PARAMS = (
    "brow_raise",
    "brow_inner",
    "brow_squeeze",
    "eye_open",
    "cheek",
    "corner",
    "mouth_open",
    "mouth_width",
    "upper_lip",
    "wrinkle",
    "asym",
)
_NEUTRAL = np.array([0, 0, 0, 1.0, 0, 0, 0, 1.0, 0, 0, 0])
_TEMPLATES = {
    "neutral": _NEUTRAL,
    "happiness": np.array([0.1, 0.0, 0.0, 0.8, 0.6, 1.0, 0.35, 1.25, 0.0, 0.1, 0.0]),
    "surprise": np.array([1.0, 0.15, 0.0, 1.45, 0.0, 0.0, 1.0, 0.75, 0.0, 0.0, 0.0]),
    "sadness": np.array([-0.1, 0.75, 0.3, 0.85, 0.0, -0.8, 0.0, 0.9, 0.0, 0.0, 0.0]),
    "anger": np.array([-0.7, -0.85, 0.6, 0.75, 0.2, -0.25, 0.1, 0.85, 0.0, 0.3, 0.0]),
    "disgust": np.array([-0.35, -0.3, 0.3, 0.8, 0.35, -0.45, 0.15, 0.95, 0.85, 0.95, 0.6]),
    "fear": np.array([0.65, 0.8, 0.5, 1.35, 0.0, -0.3, 0.55, 1.2, 0.1, 0.0, 0.0]),
}
_JITTER = np.array([0.12, 0.12, 0.08, 0.06, 0.08, 0.12, 0.08, 0.05, 0.08, 0.08, 0.12])
_SKIN = np.array(
    [
        [233, 200, 180],
        [222, 180, 150],
        [200, 150, 120],
        [170, 120, 90],
        [125, 85, 60],
        [90, 60, 45],
        [240, 210, 195],
        [210, 165, 130],
    ],
    dtype=np.float64,
)  # RGB
_HAIR = np.array(
    [[20, 15, 10], [60, 40, 25], [110, 75, 40], [180, 140, 80], [140, 140, 140], [90, 30, 20], [230, 210, 160]],
    dtype=np.float64,
)


@dataclass
class SynthSample:
    image: np.ndarray  # (S, S, 3) uint8 RGB
    mask: np.ndarray  # (S, S) uint8, 255 on the face
    label: str
    intensity: float
    yaw: float  # degrees
    occluder: str | None


def _identity(seed: int, person: int) -> dict:
    r = np.random.default_rng([seed, 1, person])
    return {
        "aspect": r.uniform(1.15, 1.45),  # face height / width
        "skin": np.clip(_SKIN[r.integers(len(_SKIN))] + r.normal(0, 8, 3), 0, 255),
        "eye_dx": r.uniform(0.34, 0.44),
        "eye_y": r.uniform(-0.22, -0.1),
        "eye_size": r.uniform(0.9, 1.25),
        "brow_w": r.uniform(1.0, 1.6),
        "nose_len": r.uniform(0.2, 0.32),
        "mouth_y": r.uniform(0.42, 0.55),
        "mouth_w": r.uniform(0.8, 1.15),
        "lip": np.clip(np.array([170, 90, 90]) + r.normal(0, 20, 3), 0, 255),
        "hair": np.clip(_HAIR[r.integers(len(_HAIR))] + r.normal(0, 10, 3), 0, 255),
        "hair_style": int(r.integers(4)),  # 0 short, 1 fringe, 2 long, 3 bald-ish
        "iris": np.clip(np.array([r.uniform(40, 120), r.uniform(40, 100), r.uniform(20, 90)]), 0, 255),
        "resting": r.normal(0, 1, len(_PARAMS)) * _JITTER * 0.6,
    }


def clutter_background(r: np.random.Generator, R: int) -> np.ndarray:
    bg = np.empty((R, R, 3), np.uint8)
    bg[:] = r.integers(30, 226, 3)
    for _ in range(int(r.integers(6, 18))):
        color = tuple(int(c) for c in r.integers(0, 256, 3))
        kind = r.integers(3)
        p = r.integers(-R // 4, R + R // 4, 2)
        if kind == 0:
            q = p + r.integers(10, R // 2, 2)
            cv2.rectangle(bg, tuple(int(v) for v in p), tuple(int(v) for v in q), color, -1)
        elif kind == 1:
            cv2.circle(bg, tuple(int(v) for v in p), int(r.integers(5, R // 4)), color, -1, cv2.LINE_AA)
        else:
            q = r.integers(0, R, 2)
            cv2.line(
                bg,
                tuple(int(v) for v in p),
                tuple(int(v) for v in q),
                color,
                int(r.integers(1, 8)),
                cv2.LINE_AA,
            )
    if r.random() < 0.5:
        noise = r.normal(0, 25, (R // 8, R // 8, 3))
        bg = np.clip(bg + cv2.resize(noise, (R, R), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)
    return bg


def render(seed: int, index: int, size: int = 112, person: int = 0, label: str | None = None) -> SynthSample:
    """Render sample ``index`` of a SynthFER set (deterministic in ``seed`` and ``index``)."""
    r = np.random.default_rng([seed, 0, index])
    label = label or EXPRESSIONS[int(r.integers(len(EXPRESSIONS)))]
    ident = _identity(seed, person)
    k = float(r.uniform(0.35, 1.0))
    p = _NEUTRAL + k * (_TEMPLATES[label] - _NEUTRAL) + ident["resting"] + r.normal(0, 1, len(_PARAMS)) * _JITTER
    P = dict(zip(_PARAMS, p, strict=True))
    yaw = float(np.clip(r.normal(0, 22), -65, 65))
    R = 2 * size  # draw at 2x and downsample for anti-aliasing
    shift = 4  # cv2 draws with 4 fractional bits: coordinates are passed as pixel * 16
    sc = float(1 << shift)

    # Canonical face frame: centre (R/2, R/2), half-width a, half-height b.
    face = np.zeros((R, R, 3), np.uint8)
    alpha = np.zeros((R, R), np.uint8)
    a = R * 0.32
    b = a * ident["aspect"] * 0.85
    cx, cy = R / 2, R / 2 + R * 0.03
    cyaw, syaw = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))

    def pt(x: float, y: float, depth: float = 0.6) -> tuple[int, int]:
        """Face coordinates (units of a, b) with depth (units of a) -> fixed-point pixel after yaw."""
        X = cx + a * (x * cyaw + depth * syaw)
        Y = cy + b * y
        return int(X * sc), int(Y * sc)

    def poly(points: list[tuple[float, float]], depth: float = 0.6) -> np.ndarray:
        return np.array([pt(x, y, depth) for x, y in points], np.int32)

    skin = tuple(float(c) for c in ident["skin"])
    hair = tuple(float(c) for c in ident["hair"])
    style = ident["hair_style"]
    # hair behind the head
    if style == 2:
        cv2.ellipse(
            face, pt(0, 0.15, 0), (int(a * 1.18 * sc), int(b * 1.2 * sc)), 0, 0, 360, hair, -1, cv2.LINE_AA, shift
        )
        cv2.ellipse(
            alpha, pt(0, 0.15, 0), (int(a * 1.18 * sc), int(b * 1.2 * sc)), 0, 0, 360, 255, -1, cv2.LINE_AA, shift
        )
    # neck and ears
    cv2.fillConvexPoly(face, poly([(-0.45, 0.6), (0.45, 0.6), (0.5, 1.6), (-0.5, 1.6)], 0.2), skin, cv2.LINE_AA, shift)
    cv2.fillConvexPoly(alpha, poly([(-0.45, 0.6), (0.45, 0.6), (0.5, 1.6), (-0.5, 1.6)], 0.2), 255, cv2.LINE_AA, shift)
    for side in (-1, 1):
        ear = pt(side * 1.0, -0.05, 0.0)
        cv2.ellipse(
            face,
            ear,
            (int(a * 0.16 * max(0.2, 1 - abs(syaw)) * sc), int(b * 0.2 * sc)),
            0,
            0,
            360,
            tuple(c * 0.92 for c in skin),
            -1,
            cv2.LINE_AA,
            shift,
        )
        cv2.ellipse(alpha, ear, (int(a * 0.16 * sc), int(b * 0.2 * sc)), 0, 0, 360, 255, -1, cv2.LINE_AA, shift)
    # head: an ellipse that narrows with yaw
    head_c = pt(0, 0, 0.25)
    cv2.ellipse(face, head_c, (int(a * (0.8 + 0.2 * cyaw) * sc), int(b * sc)), 0, 0, 360, skin, -1, cv2.LINE_AA, shift)
    cv2.ellipse(alpha, head_c, (int(a * (0.8 + 0.2 * cyaw) * sc), int(b * sc)), 0, 0, 360, 255, -1, cv2.LINE_AA, shift)
    face_mask = alpha.copy()
    # hair on top
    if style != 3:
        top = [
            (-1.02, -0.25),
            (-0.95, -0.75),
            (-0.5, -1.08),
            (0.0, -1.15),
            (0.5, -1.08),
            (0.95, -0.75),
            (1.02, -0.25),
        ]
        fringe = -0.55 if style == 1 else -0.78
        pts = poly([*top, (0.85, -0.55), (0.3, fringe), (-0.3, fringe), (-0.85, -0.55)], 0.3)
        cv2.fillPoly(face, [pts], hair, cv2.LINE_AA, shift)
        cv2.fillPoly(alpha, [pts], 255, cv2.LINE_AA, shift)

    dark = (35.0, 25.0, 25.0)
    ex, ey = ident["eye_dx"], ident["eye_y"]
    eye_w = 0.17 * ident["eye_size"]
    eye_h = 0.075 * ident["eye_size"] * max(0.15, P["eye_open"]) * (1 - 0.45 * max(0.0, P["cheek"]))
    for side in (-1, 1):
        ec = pt(side * ex, ey, 0.62)
        w_side = eye_w * (0.6 + 0.4 * max(0.0, 1 - side * syaw * 0.8))
        cv2.ellipse(
            face, ec, (int(a * w_side * sc), int(b * eye_h * sc)), 0, 0, 360, (245, 245, 240), -1, cv2.LINE_AA, shift
        )
        iris_r = int(min(a * w_side * 0.45, b * eye_h * 1.05) * sc)
        cv2.circle(
            face,
            pt(side * ex + 0.02 * syaw, ey, 0.7),
            iris_r,
            tuple(float(c) for c in ident["iris"]),
            -1,
            cv2.LINE_AA,
            shift,
        )
        cv2.circle(
            face, pt(side * ex + 0.02 * syaw, ey, 0.7), max(1, iris_r // 2), (10, 10, 10), -1, cv2.LINE_AA, shift
        )
        cv2.ellipse(face, ec, (int(a * w_side * sc), int(b * eye_h * sc)), 0, 180, 360, dark, 3, cv2.LINE_AA, shift)
        if P["cheek"] > 0.15:  # raised cheeks: lower-lid crease
            cv2.ellipse(
                face,
                pt(side * ex, ey + eye_h + 0.06, 0.6),
                (int(a * w_side * sc), int(b * 0.04 * sc)),
                0,
                20,
                160,
                tuple(c * 0.8 for c in skin),
                2,
                cv2.LINE_AA,
                shift,
            )
        # brow: outer end, middle, inner end; inner raise/lower and squeeze are the expression cues
        base = ey - 0.16 - 0.1 * P["brow_raise"]
        inner_y = base - 0.09 * P["brow_inner"]
        inner_x = side * (ex - eye_w * 0.9 + 0.06 * P["brow_squeeze"])
        outer = (side * (ex + eye_w * 1.1), base + 0.02 + 0.03 * P["brow_inner"])
        mid = (side * ex, base - 0.04 - 0.04 * max(0.0, P["brow_raise"]))
        brow = poly([outer, mid, (inner_x, inner_y)], 0.65)
        cv2.polylines(
            face, [brow], False, hair if style != 3 else dark, int(max(2, 5 * ident["brow_w"])), cv2.LINE_AA, shift
        )

    # nose: bridge, tip, nostrils; disgust/anger wrinkle lines
    nl = ident["nose_len"]
    nose = poly([(0.0, ey + 0.05), (0.03, ey + 0.05 + nl), (-0.06, ey + 0.08 + nl)], 1.0)
    cv2.polylines(face, [nose], False, tuple(c * 0.7 for c in skin), 3, cv2.LINE_AA, shift)
    for side in (-1, 1):
        cv2.circle(
            face,
            pt(side * 0.07, ey + 0.1 + nl, 0.9),
            int(a * 0.025 * sc),
            tuple(c * 0.5 for c in skin),
            -1,
            cv2.LINE_AA,
            shift,
        )
    if P["wrinkle"] > 0.2:
        for j in range(1 + int(P["wrinkle"] * 3)):
            y = ey + 0.02 + 0.035 * j
            seg = poly([(-0.07, y), (0.0, y - 0.015), (0.07, y)], 0.95)
            cv2.polylines(face, [seg], False, tuple(c * 0.68 for c in skin), 2, cv2.LINE_AA, shift)

    # mouth: corners up/down, opening, width, raised upper lip, asymmetry
    my = ident["mouth_y"]
    mw = 0.34 * ident["mouth_w"] * P["mouth_width"]
    corner = -0.12 * P["corner"]
    asym = 0.05 * P["asym"]
    opening = 0.16 * max(0.0, P["mouth_open"])
    lift = 0.06 * max(0.0, P["upper_lip"])
    lc, rc = (-mw, my + corner + asym), (mw, my + corner - asym)
    upper = [
        lc,
        (-mw * 0.5, my - lift - 0.015),
        (0.0, my - lift - 0.03 * (1 - P["corner"] * 0.3)),
        (mw * 0.5, my - lift - 0.015),
        rc,
    ]
    lower = [
        rc,
        (mw * 0.5, my + opening * 0.8 + 0.02),
        (0.0, my + opening + 0.03 - 0.04 * P["corner"]),
        (-mw * 0.5, my + opening * 0.8 + 0.02),
        lc,
    ]
    lip_col = tuple(float(c) for c in ident["lip"])
    if opening > 0.03 or lift > 0.02:
        inner = poly([*upper, *lower], 0.75)
        cv2.fillPoly(face, [inner], (60, 20, 25), cv2.LINE_AA, shift)
        if P["corner"] > 0.4 or lift > 0.03:  # teeth
            teeth = poly([lc, (0.0, my - lift - 0.02), rc, (0.0, my + min(opening, 0.06))], 0.75)
            cv2.fillPoly(face, [teeth], (235, 235, 225), cv2.LINE_AA, shift)
        cv2.polylines(face, [poly(upper, 0.75), poly(lower, 0.75)], False, lip_col, 4, cv2.LINE_AA, shift)
    else:
        cv2.polylines(face, [poly(upper, 0.75)], False, lip_col, 5, cv2.LINE_AA, shift)
        cv2.polylines(face, [poly(lower, 0.75)], False, lip_col, 4, cv2.LINE_AA, shift)

    # occluders
    occluder = None
    u = r.random()
    if u < 0.06:
        occluder = "sunglasses"
        for side in (-1, 1):
            cv2.ellipse(
                face,
                pt(side * ex, ey, 0.7),
                (int(a * 0.22 * sc), int(b * 0.12 * sc)),
                0,
                0,
                360,
                (15, 15, 20),
                -1,
                cv2.LINE_AA,
                shift,
            )
        cv2.line(face, pt(-ex + 0.2, ey, 0.8), pt(ex - 0.2, ey, 0.8), (15, 15, 20), 4, cv2.LINE_AA, shift)
    elif u < 0.11:
        occluder = "mask"
        m = poly([(-0.75, ey + nl - 0.02), (0.75, ey + nl - 0.02), (0.7, 0.8), (0.0, 0.95), (-0.7, 0.8)], 0.6)
        col = tuple(float(c) for c in r.integers(150, 256, 3))
        cv2.fillPoly(face, [m], col, cv2.LINE_AA, shift)
    elif u < 0.15:
        occluder = "hand"
        side = 1 if r.random() < 0.5 else -1
        hc = (side * r.uniform(0.1, 0.45), r.uniform(0.2, 0.6))
        cv2.ellipse(
            face,
            pt(*hc, 0.9),
            (int(a * 0.38 * sc), int(b * 0.3 * sc)),
            float(r.uniform(-30, 30)),
            0,
            360,
            tuple(c * 0.97 for c in skin),
            -1,
            cv2.LINE_AA,
            shift,
        )
        for f in range(4):
            fx = hc[0] - side * 0.3 + side * 0.16 * f
            cv2.line(
                face,
                pt(fx, hc[1] - 0.1, 0.9),
                pt(fx + side * 0.05, hc[1] - 0.55, 0.9),
                tuple(c * 0.97 for c in skin),
                int(a * 0.09),
                cv2.LINE_AA,
                shift,
            )

    # place the face: rotation, scale, shift; composite on a cluttered background
    angle = float(r.normal(0, 8))
    scale = float(r.uniform(0.88, 1.1))
    M = cv2.getRotationMatrix2D((R / 2, R / 2), angle, scale)
    M[:, 2] += r.uniform(-0.07, 0.07, 2) * R
    face_w = cv2.warpAffine(face, M, (R, R), flags=cv2.INTER_LINEAR)
    alpha_w = cv2.warpAffine(alpha, M, (R, R), flags=cv2.INTER_LINEAR).astype(np.float32)[..., None] / 255.0
    mask_w = cv2.warpAffine(face_mask, M, (R, R), flags=cv2.INTER_LINEAR)
    img = clutter_background(r, R).astype(np.float32) * (1 - alpha_w) + face_w.astype(np.float32) * alpha_w
    # lighting gradient
    theta = r.uniform(0, 2 * math.pi)
    g = np.linspace(-1, 1, R, dtype=np.float32)
    ramp = math.cos(theta) * g[None, :] + math.sin(theta) * g[:, None]
    img *= (1.0 + float(r.uniform(0.0, 0.35)) * ramp)[..., None]
    img = cv2.resize(np.clip(img, 0, 255), (size, size), interpolation=cv2.INTER_AREA)
    if r.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), float(r.uniform(0.4, 1.2)))
    if r.random() < 0.5:
        img = img + r.normal(0, r.uniform(2, 9), img.shape).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    mask = (cv2.resize(mask_w, (size, size), interpolation=cv2.INTER_AREA) > 127).astype(np.uint8) * 255
    return SynthSample(img, mask, label, k, yaw, occluder)


def _split_plan(n: int, seed: int, test_fraction: float, per_person: int) -> list[tuple[str, int, str]]:
    """(split, person, label) for every index: balanced labels, disjoint train/test people."""
    r = np.random.default_rng([seed, 2])
    labels = [EXPRESSIONS[i % len(EXPRESSIONS)] for i in range(n)]
    r.shuffle(labels)
    n_test = round(n * test_fraction)
    plan = []
    for i in range(n):
        split = "test" if i >= n - n_test else "train"
        # blocks of consecutive indices share a person; test people never appear in train
        person = i // per_person + (1_000_000 if split == "test" else 0)
        plan.append((split, person, labels[i]))
    return plan


def _work(args: tuple) -> tuple[int, float, float, str | None]:
    seed, i, size, person, label, img_path, mask_path = args
    s = render(seed, i, size, person, label)
    q = int(np.random.default_rng([seed, 3, i]).integers(40, 96))
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(s.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, q])
    assert ok
    Path(img_path).write_bytes(buf.tobytes())
    ok, buf = cv2.imencode(".png", s.mask)
    Path(mask_path).write_bytes(buf.tobytes())
    return i, s.intensity, s.yaw, s.occluder


def generate(
    out: str | Path,
    n: int = 10_000,
    size: int = 112,
    seed: int = 0,
    test_fraction: float = 0.2,
    workers: int | None = None,
    per_person: int = 10,
) -> Path:
    """Write a SynthFER dataset to ``out`` (replaced atomically) and return it."""
    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "Image" / "aligned").mkdir(parents=True)
    (tmp / "Image" / "mask").mkdir(parents=True)
    (tmp / "EmoLabel").mkdir()
    (tmp / "subsets").mkdir()
    plan = _split_plan(n, seed, test_fraction, per_person)
    counters = {"train": 0, "test": 0}
    names, jobs = [], []
    for i, (split, person, label) in enumerate(plan):
        counters[split] += 1
        name = f"{split}_{counters[split]:05d}"
        names.append(name)
        jobs.append(
            (
                seed,
                i,
                size,
                person,
                label,
                tmp / "Image" / "aligned" / f"{name}_aligned.jpg",
                tmp / "Image" / "mask" / f"{name}_mask.png",
            )
        )
    workers = workers or min(os.cpu_count() or 1, 8)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(_work, jobs, chunksize=64))
    else:
        results = [_work(j) for j in jobs]
    lines, occl, pose30, pose45 = [], [], [], []
    for (_, _, yaw, occluder), name, (split, _, label) in zip(results, names, plan, strict=True):
        lines.append(f"{name}.jpg {_RAF_CODE[label]}")
        if split == "test":
            if occluder:
                occl.append(f"{name}_aligned.jpg {_RAF_CODE[label]}")
            if abs(yaw) > 30:
                pose30.append(f"{name}_aligned.jpg")
            if abs(yaw) > 45:
                pose45.append(f"{name}_aligned.jpg")
    (tmp / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    for fname, rows in (
        ("occlusion_list.txt", occl),
        ("pose_30_list.txt", pose30),
        ("pose_45_list.txt", pose45),
    ):
        (tmp / "subsets" / fname).write_text("\n".join(rows) + ("\n" if rows else ""))
    meta = {
        "generator": "attnfer SynthFER",
        "version": 1,
        "n": n,
        "size": size,
        "seed": seed,
        "test_fraction": test_fraction,
        "per_person": per_person,
        "counts": dict(counters),
        "subsets": {"occlusion": len(occl), "pose_30": len(pose30), "pose_45": len(pose45)},
    }
    (tmp / "synthfer.json").write_text(json.dumps(meta, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def contact_sheet(root: str | Path, out: str | Path, per_class: int = 8, split: str = "test") -> Path:
    """A labelled grid PNG: one row per expression, ``per_class`` images each."""
    from .rafdb import load_rafdb

    data = load_rafdb(root)
    ds = data[split]
    tile = 112
    rows = []
    for c, name in enumerate(ds.class_names):
        idx = np.flatnonzero(ds.targets == c)[:per_class]
        tiles = [cv2.resize(ds.load_image(i), (tile, tile)) for i in idx]
        tiles += [np.zeros((tile, tile, 3), np.uint8)] * (per_class - len(tiles))
        label = np.full((tile, 120, 3), 255, np.uint8)
        cv2.putText(label, name, (6, tile // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(np.hstack([label, *tiles]))
    sheet = np.vstack(rows)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return out
