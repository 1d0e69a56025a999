"""Synthetic image-quality tasks built from scikit-image's sample photographs.

The photographs ship inside the scikit-image wheel, so the task can be built
without network access. Each photograph is degraded with known distortions at
known severities, and the target is derived from the severity alone: the
scores are *synthetic*, not human opinion scores. The task is meant for demos,
tests and smoke benchmarks, not to measure aesthetic or perceptual quality.
"""

import io
import textwrap

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter
from sklearn.utils import Bunch, check_random_state

__all__ = ["DISTORTIONS", "PHOTOS", "degrade_image", "degrade_quadrant", "make_degraded_photos"]

#: Names of the scikit-image sample photographs used as pristine sources. They
#: are natural RGB photographs stored in the scikit-image package itself
#: (no pooch download). ``motorcycle_right`` is left out on purpose: it shows
#: the same scene as ``motorcycle_left`` and would leak content across groups.
PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "motorcycle_left",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
)

#: Supported distortions and the parameter each one is controlled by.
DISTORTIONS = {
    "blur": "Gaussian blur sigma (pixels)",
    "noise": "additive Gaussian noise standard deviation (0-255 scale)",
    "jpeg": "JPEG quality (PIL, 1-95)",
    "contrast": "contrast factor (1 = unchanged, 0 = flat grey)",
}

# Parameters at full severity (t = level / n_levels = 1). Chosen so the worst
# level is clearly visible but the content stays recognisable.
_BLUR_MAX_SIGMA = 4.0
_NOISE_MAX_STD = 40.0
_JPEG_MILD, _JPEG_WORST = 90.0, 5.0
_CONTRAST_MIN_FACTOR = 0.2

DESCR = """\
Synthetic degraded-photographs quality task
-------------------------------------------

{intro}

With ``t = level / n_levels`` the distortion parameters are:

- blur: Gaussian blur, sigma = {blur:g} * t pixels (per colour channel);
- noise: additive Gaussian noise, std = {noise:g} * t on the 0-255 scale,
  then clipped and rounded;
- jpeg: PIL JPEG encode/decode in memory, quality =
  round({jmild:g} * ({jworst:g} / {jmild:g}) ** t) (geometric, so early
  levels are not all near-lossless);
- contrast: blend towards the image's mean grey level,
  factor = 1 - {cmin_gap:g} * t.

The target is ``1 - level / n_levels`` in [0, 1]: 1 for pristine photographs,
0 for the most severe level. It reflects the degradation severity that was
applied, **not** human ratings, and scores are only comparable within one
distortion type. Use ``groups`` (source photograph index) with
``GroupShuffleSplit`` or ``GroupKFold`` so no content leaks between train and
test.

Images: {n_images}; sources: {n_sources}; resolution: {resolution}.
"""


def _load_photo(name):
    """Load one scikit-image sample photograph as an HxWx3 uint8 array."""
    from skimage import data

    if name == "motorcycle_left":
        # stereo_motorcycle returns (left, right, disparity).
        image = data.stereo_motorcycle()[0]
    else:
        image = getattr(data, name)()
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    # Drop an alpha channel if a future scikit-image adds one.
    return np.ascontiguousarray(image[:, :, :3], dtype=np.uint8)


def _resize_max_side(image, max_side):
    """Downsize so the longer side is at most ``max_side``, keeping aspect."""
    h, w = image.shape[:2]
    if max_side is None or max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.LANCZOS))


def _to_uint8(image):
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _parameter(distortion, level, n_levels):
    """Return the distortion parameter for ``level`` (see DESCR)."""
    t = level / n_levels
    if distortion == "blur":
        return _BLUR_MAX_SIGMA * t
    if distortion == "noise":
        return _NOISE_MAX_STD * t
    if distortion == "jpeg":
        # Level 0 has no JPEG step at all; only levels >= 1 use this value.
        return float(round(_JPEG_MILD * (_JPEG_WORST / _JPEG_MILD) ** t))
    if distortion == "contrast":
        return 1.0 - (1.0 - _CONTRAST_MIN_FACTOR) * t
    raise ValueError(
        f"Unknown distortion {distortion!r}; expected one of {sorted(DISTORTIONS)}."
    )


def degrade_image(image, distortion, level, n_levels=5, random_state=None):
    """Apply one known distortion at one severity level to a photograph.

    Parameters
    ----------
    image : ndarray of shape (H, W, 3), dtype uint8
        Pristine RGB photograph.
    distortion : {"blur", "noise", "jpeg", "contrast"}
        Distortion type.
    level : int
        Severity, from 0 (image returned unchanged) to ``n_levels``.
    n_levels : int, default=5
        Number of non-pristine severity levels.
    random_state : int, RandomState instance or None, default=None
        Seeds the noise; only used by ``"noise"``.

    Returns
    -------
    degraded : ndarray of shape (H, W, 3), dtype uint8
        Degraded copy of ``image``.
    parameter : float
        The distortion parameter that was applied (see
        :func:`make_degraded_photos` for its meaning); NaN for level 0.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError("image must be an HxWx3 uint8 array.")
    if distortion not in DISTORTIONS:
        raise ValueError(
            f"Unknown distortion {distortion!r}; expected one of {sorted(DISTORTIONS)}."
        )
    if not 0 <= level <= n_levels:
        raise ValueError(f"level must be in [0, {n_levels}], got {level}.")
    if level == 0:
        return image.copy(), float("nan")

    param = _parameter(distortion, level, n_levels)
    x = image.astype(np.float64)
    if distortion == "blur":
        # No blur across the colour axis.
        out = _to_uint8(gaussian_filter(x, sigma=(param, param, 0), mode="reflect"))
    elif distortion == "noise":
        rng = check_random_state(random_state)
        out = _to_uint8(x + rng.normal(0.0, param, size=x.shape))
    elif distortion == "jpeg":
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=int(param))
        buf.seek(0)
        with Image.open(buf) as decoded:
            out = np.asarray(decoded.convert("RGB"))
    else:  # contrast
        # A single grey mean (not per channel) so colours are not shifted.
        out = _to_uint8(x.mean() + (x - x.mean()) * param)
    return out, param


def degrade_quadrant(image, quadrant, distortion, level, n_levels=5, random_state=None):
    """Apply one distortion to one quadrant of a photograph only: a local defect.

    The whole photograph is degraded with :func:`degrade_image` (so a blur
    near the quadrant's edges sees the pixels beyond them), then only the
    quadrant is copied into the pristine photograph. Quality maps
    (:mod:`sklearn_mlsp.maps`) should point at it.

    Parameters
    ----------
    image : ndarray of shape (H, W, 3), dtype uint8
        Pristine RGB photograph.
    quadrant : {0, 1, 2, 3}
        Top left, top right, bottom left, bottom right: the cell
        ``(quadrant // 2, quadrant % 2)`` of a ``2 x 2`` map. The top and left
        quadrants are ``H // 2`` rows and ``W // 2`` columns.
    distortion, level, n_levels, random_state
        As for :func:`degrade_image`.

    Returns
    -------
    degraded : ndarray of shape (H, W, 3), dtype uint8
    """
    if quadrant not in (0, 1, 2, 3):
        raise ValueError(f"quadrant must be 0, 1, 2 or 3 (top left to bottom right), got {quadrant!r}.")
    whole = degrade_image(image, distortion, level, n_levels, random_state=random_state)[0]
    h, w = (s // 2 for s in whole.shape[:2])
    rows = slice(0, h) if quadrant < 2 else slice(h, None)
    cols = slice(0, w) if quadrant % 2 == 0 else slice(w, None)
    out = np.array(image, copy=True)
    out[rows, cols] = whole[rows, cols]
    return out


def make_degraded_photos(
    n_levels=5,
    distortions=("blur", "noise", "jpeg", "contrast"),
    max_side=None,
    random_state=0,
    sources=None,
):
    """Build a synthetic image-quality task from scikit-image sample photographs.

    Every source photograph is degraded by every distortion at severity levels
    ``1..n_levels`` with known parameters; the pristine photograph (level 0)
    is included once per source. The target, ``1 - level / n_levels``, is a
    synthetic quality score that decreases with severity. It is **not** a
    human opinion score. No network access is needed: the photographs are
    stored inside the scikit-image package.

    Parameters
    ----------
    n_levels : int, default=5
        Number of severity levels per distortion (level 0 excluded). The most
        severe level uses the same parameters whatever ``n_levels`` is; a larger
        value only samples the range more finely.
    distortions : sequence of str, default=("blur", "noise", "jpeg", "contrast")
        Distortions to apply, a subset of :data:`DISTORTIONS`:

        - ``"blur"``: Gaussian blur, sigma = 4 * t pixels;
        - ``"noise"``: additive Gaussian noise, std = 40 * t (0-255 scale);
        - ``"jpeg"``: in-memory PIL JPEG, quality = round(90 * (5 / 90) ** t);
        - ``"contrast"``: blend towards the mean grey, factor = 1 - 0.8 * t;

        where ``t = level / n_levels``.
    max_side : int or None, default=None
        If given, sources whose longer side exceeds ``max_side`` are downsized
        (Lanczos, aspect kept) *before* degrading. The default keeps the
        photographs at the resolution they ship with (300 to 1411 pixels per
        side), in the spirit of MLSP features, which are computed on
        full-resolution images.
    random_state : int, RandomState instance or None, default=0
        Seeds the additive noise. The same value gives identical images.
    sources : sequence of str or None, default=None
        Names of the photographs to use, a subset of :data:`PHOTOS`; None uses
        all of them.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with attributes:

        images : list of ndarray of shape (H, W, 3), dtype uint8
            The pristine and degraded photographs; sizes differ by source.
        target : ndarray of shape (n_images,)
            Synthetic quality score ``1 - level / n_levels`` in [0, 1].
        groups : ndarray of shape (n_images,), dtype int
            Index of the source photograph, for group-aware splitting.
        source : ndarray of shape (n_images,), dtype object
            Name of the source photograph.
        distortion : ndarray of shape (n_images,), dtype object
            Distortion name, ``"none"`` for pristine images.
        level : ndarray of shape (n_images,), dtype int
            Severity level, 0 for pristine images.
        parameter : ndarray of shape (n_images,)
            Distortion parameter applied (NaN for pristine images).
        source_names : list of str
            Source photograph names, indexed by ``groups``.
        DESCR : str
            Description of the task, stating that it is synthetic.

    Examples
    --------
    >>> from sklearn_mlsp.synthetic import make_degraded_photos
    >>> data = make_degraded_photos(n_levels=2, max_side=64)
    >>> len(data.images), float(data.target.min()), float(data.target.max())
    (72, 0.0, 1.0)
    >>> sorted(set(data.distortion))
    ['blur', 'contrast', 'jpeg', 'noise', 'none']
    """
    n_levels = int(n_levels)
    if n_levels < 1:
        raise ValueError(f"n_levels must be >= 1, got {n_levels}.")
    if isinstance(distortions, str):
        distortions = (distortions,)
    distortions = tuple(distortions)
    if not distortions:
        raise ValueError("distortions must name at least one distortion.")
    unknown = [d for d in distortions if d not in DISTORTIONS]
    if unknown:
        raise ValueError(
            f"Unknown distortion(s) {unknown}; expected a subset of {sorted(DISTORTIONS)}."
        )
    if len(set(distortions)) != len(distortions):
        raise ValueError("distortions must not contain duplicates.")
    source_names = list(PHOTOS if sources is None else sources)
    unknown = [s for s in source_names if s not in PHOTOS]
    if unknown:
        raise ValueError(f"Unknown source(s) {unknown}; expected a subset of {PHOTOS}.")
    if max_side is not None and int(max_side) < 1:
        raise ValueError(f"max_side must be a positive int or None, got {max_side}.")

    # One generator consumed in a fixed order makes the whole set reproducible.
    rng = check_random_state(random_state)
    images, target, groups, source, distortion, level, parameter = (
        [] for _ in range(7)
    )

    def add(img, g, name, dist, lev, param):
        images.append(img)
        target.append(1.0 - lev / n_levels)
        groups.append(g)
        source.append(name)
        distortion.append(dist)
        level.append(lev)
        parameter.append(param)

    for g, name in enumerate(source_names):
        pristine = _resize_max_side(_load_photo(name), max_side)
        add(pristine, g, name, "none", 0, float("nan"))
        for dist in distortions:
            for lev in range(1, n_levels + 1):
                img, param = degrade_image(
                    pristine, dist, lev, n_levels, random_state=rng
                )
                add(img, g, name, dist, lev, param)

    shapes = {img.shape[:2] for img in images}
    sides = sorted(s for hw in shapes for s in hw)
    resolution = f"{sides[0]} to {sides[-1]} pixels per side"
    intro = textwrap.fill(
        "**The data are synthetic.** The pristine sources are natural RGB sample "
        f"photographs shipped with scikit-image ({', '.join(source_names)}). Each "
        f"source is degraded by each distortion ({', '.join(distortions)}) at "
        f"severity levels 1..{n_levels}; level 0 is the pristine photograph, "
        'included once per source with distortion ``"none"``.',
        width=79,
    )
    descr = DESCR.format(
        intro=intro,
        blur=_BLUR_MAX_SIGMA,
        noise=_NOISE_MAX_STD,
        jmild=_JPEG_MILD,
        jworst=_JPEG_WORST,
        cmin_gap=1.0 - _CONTRAST_MIN_FACTOR,
        n_images=len(images),
        n_sources=len(source_names),
        resolution=resolution,
    )
    return Bunch(
        images=images,
        target=np.asarray(target, dtype=np.float64),
        groups=np.asarray(groups, dtype=np.intp),
        source=np.asarray(source, dtype=object),
        distortion=np.asarray(distortion, dtype=object),
        level=np.asarray(level, dtype=np.intp),
        parameter=np.asarray(parameter, dtype=np.float64),
        source_names=source_names,
        DESCR=descr,
    )
