"""The bytes of upstream's object savers: torch, pickle, images, matplotlib figures, videos.

Each imports its library only when called and, when it is missing, raises ImportError naming the
package to install; ``import ml_dash`` never loads any of them.
"""

from __future__ import annotations

import io
import os

from ._errors import InvalidValue

TYPE_CHECKING = False  # typing costs ~5 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from typing import Any, Dict

__all__ = ["need", "torch_bytes", "pickle_bytes", "image_bytes", "figure_bytes", "video_bytes"]


def need(module: str, package: str, what: str) -> Any:
    """``module`` imported, else ImportError saying which package ``what`` needs."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{what} needs the package {package!r}: pip install {package}") from None


def to_uint8(np: Any, arr: Any) -> Any:
    """Upstream's rule: floats in [0, 1] scale to 0-255; anything else is stretched to 0-255."""
    arr = arr.astype("float64")
    lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
    if lo >= 0.0 and hi <= 1.0:
        scaled = arr * 255.0
    else:
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
    return np.clip(np.nan_to_num(scaled), 0, 255).round().astype(np.uint8)


def pickle_bytes(obj: Any) -> bytes:
    import pickle

    return pickle.dumps(obj)


def torch_bytes(obj: Any) -> bytes:
    """``torch.save(obj)`` (a model or a state dict) into bytes."""
    torch = need("torch", "torch", "save_torch")
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def image_bytes(array: Any, name: str, quality: int) -> bytes:
    """An HxW or HxWxC array (or a PIL image) encoded in the format of ``name``'s extension."""
    image_mod = need("PIL.Image", "Pillow", "save_image")
    if isinstance(array, image_mod.Image):
        img = array
    else:
        np = need("numpy", "numpy", "save_image")
        arr = np.asarray(array)
        if arr.dtype != np.uint8:
            arr = to_uint8(np, arr)
        img = image_mod.fromarray(arr)
    fmt = image_mod.registered_extensions().get(os.path.splitext(name)[1].lower())
    if fmt is None:
        raise ValueError(f"save_image: {name!r} needs an image extension such as .png or .jpg")
    options: Dict[str, Any] = {}
    if fmt == "JPEG":
        if img.mode not in ("RGB", "L"):
            img = img.convert("RGB")
        options = {"quality": quality, "optimize": True}
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


def figure_bytes(fig: Any, name: str, **savefig_kwargs: Any) -> bytes:
    """A matplotlib figure (the current one when None) in ``name``'s format; the figure is closed."""
    plt = need("matplotlib.pyplot", "matplotlib", "save_fig")
    fig = plt.gcf() if fig is None else fig
    ext = os.path.splitext(name)[1].lstrip(".").lower() or "png"
    buf = io.BytesIO()
    fig.savefig(buf, **{"format": ext, **savefig_kwargs})
    plt.close(fig)
    return buf.getvalue()


def video_bytes(frame_stack: Any, name: str, fps: int, **imageio_kwargs: Any) -> bytes:
    """Frames (a list of HxW[xC] arrays, or one array) as a video in ``name``'s format (.mp4 needs
    imageio's ffmpeg or pyav plugin; .gif works with Pillow)."""
    iio = need("imageio.v3", "imageio", "save_video")
    np = need("numpy", "numpy", "save_video")
    try:
        if len(frame_stack) == 0:
            raise ValueError("save_video: no frames")
    except TypeError:
        raise InvalidValue("save_video takes a list of frames or an array of them") from None
    frames = np.asarray(frame_stack)
    if frames.dtype != np.uint8:
        frames = to_uint8(np, frames)
    ext = os.path.splitext(name)[1].lower() or ".mp4"
    options = dict(imageio_kwargs)
    if ext == ".gif":
        options.setdefault("duration", 1000.0 / fps)
        options.setdefault("loop", 0)
    else:
        options.setdefault("fps", fps)
    try:
        data: bytes = iio.imwrite("<bytes>", frames, extension=ext, **options)
        return data
    except (ImportError, ValueError, RuntimeError) as exc:
        raise ImportError(f"save_video could not write {ext}: {exc} (for .mp4: pip install imageio-ffmpeg)") from None
