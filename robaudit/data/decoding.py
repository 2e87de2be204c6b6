"""Decoding image files safely: a corrupt, truncated or huge file is a :class:`BadImage`, never a crash.

Image files are data from anywhere. PIL refuses an image whose header declares more than
twice ``PIL.Image.MAX_IMAGE_PIXELS`` pixels (a decompression bomb: a few KB of PNG that
would inflate to gigabytes) and only *warns* between one and two times that limit; here
the warning is an error too, and the limit holds even when another library has set
``MAX_IMAGE_PIXELS = None``. The pixel count is checked from the header, before any pixel
is decoded. Truncated files are refused (PIL's ``ImageFile.LOAD_TRUNCATED_IMAGES`` is
forced off while decoding).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image, ImageFile

# PIL's own default (about 89.5 megapixels), used when the global has been switched off.
DEFAULT_MAX_PIXELS = 1024 * 1024 * 1024 // 4 // 3


class BadImage(Exception):
    """An image file that cannot be decoded safely.

    Attributes:
        path: the file.
        reason: one line saying why (``"truncated or corrupt (…)"``, ``"decompression bomb: …"``).
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path, reason)
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"

    def to_json(self) -> dict[str, str]:
        """``{"path", "reason"}`` for the data provenance."""
        return {"path": self.path, "reason": self.reason}


def max_pixels() -> int:
    """The largest image (W × H pixels) decoded: PIL's ``MAX_IMAGE_PIXELS``, or its default if unset."""
    limit = Image.MAX_IMAGE_PIXELS
    return int(limit) if limit else DEFAULT_MAX_PIXELS


def decode_rgb(path: str | Path) -> Image.Image:
    """Open and fully decode the image file ``path`` as an RGB PIL image.

    Raises:
        BadImage: the file is not an image PIL can read, is truncated or corrupt, or
            declares more than :func:`max_pixels` pixels.
    """
    limit = max_pixels()
    truncated_flag = ImageFile.LOAD_TRUNCATED_IMAGES
    try:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > limit:
                    raise BadImage(str(path), _bomb(width, height, limit))
                return image.convert("RGB")  # forces the full decode
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImage(str(path), f"decompression bomb: {exc}") from exc
    except FileNotFoundError as exc:
        raise BadImage(str(path), "the file disappeared while reading") from exc
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, EOFError, struct.error … on bad data
        raise BadImage(str(path), f"truncated or corrupt ({type(exc).__name__}: {_first_line(exc)})") from exc
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = truncated_flag


def _bomb(width: int, height: int, limit: int) -> str:
    return (f"decompression bomb: its header declares {width}×{height} = {width * height:,} pixels, "
            f"over the {limit:,}-pixel limit (PIL.Image.MAX_IMAGE_PIXELS)")


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0]
