"""Reading uploaded images without trusting them: real content type (not the extension), size limits,
decompression bombs, truncation; EXIF location removal; blurhash, perceptual hash, resized variants."""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, PngImagePlugin

FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
MAX_PIXELS = 64_000_000  # about 8000 x 8000
MAX_SIDE = 16384
GPS_IFD = 0x8825
TEXT_KEYS = ("parameters", "prompt", "workflow")


class InvalidImage(ValueError):
    pass


@dataclass
class ImageInfo:
    format: str
    mime: str
    width: int
    height: int
    text: dict  # PNG text chunks / JPEG comment that may carry generation metadata


def open_checked(data: bytes) -> Image.Image:
    """Opens and fully decodes an image, refusing anything that is not a sound PNG, JPEG or WebP."""
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in FORMATS:
                raise InvalidImage(f"not a PNG, JPEG or WebP image (found {image.format or 'unknown data'})")
            width, height = image.size
            if width * height > MAX_PIXELS or max(width, height) > MAX_SIDE:
                raise InvalidImage(f"image too large: {width}x{height} (at most {MAX_PIXELS} pixels, "
                                   f"{MAX_SIDE} per side)")
            image.load()  # a truncated or corrupt file fails here
    except InvalidImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidImage(f"refused as a decompression bomb: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(f"not a readable image: {exc}") from None
    return image


def inspect(data: bytes) -> tuple[Image.Image, ImageInfo]:
    image = open_checked(data)
    text = {k: str(v) for k, v in image.info.items() if k in TEXT_KEYS and v}
    if not text and image.format == "JPEG":
        comment = image.info.get("comment") or _exif_user_comment(image)
        if comment:
            text["parameters"] = comment.decode("utf-8", "replace") if isinstance(comment, bytes) else comment
    return image, ImageInfo(image.format, FORMATS[image.format], image.width, image.height, text)


def _exif_user_comment(image: Image.Image) -> str | None:
    raw = image.getexif().get_ifd(0x8769).get(0x9286)  # Exif IFD → UserComment
    if isinstance(raw, bytes) and len(raw) > 8:
        return raw[8:].decode("utf-16-be" if raw[:8] == b"UNICODE\0" else "utf-8", "replace").strip("\0 ")
    return None


def without_location(data: bytes, image: Image.Image) -> bytes:
    """The same image with EXIF GPS data removed; untouched bytes when there is none."""
    exif = image.getexif()
    if GPS_IFD not in exif:
        return data
    del exif[GPS_IFD]
    out = io.BytesIO()
    if image.format == "PNG":
        info = PngImagePlugin.PngInfo()
        for key, value in image.info.items():
            if key in TEXT_KEYS:
                info.add_text(key, str(value))
        image.save(out, "PNG", pnginfo=info, exif=exif.tobytes())
    elif image.format == "JPEG":
        image.save(out, "JPEG", quality="keep", exif=exif.tobytes())
    else:
        image.save(out, image.format, lossless=True, exif=exif.tobytes())
    return out.getvalue()


def blurhash(image: Image.Image) -> str:
    import blurhash as bh
    thumb = image.convert("RGB")
    thumb.thumbnail((64, 64))
    return bh.encode(thumb, 4, 3)


def perceptual_hash(image: Image.Image) -> str:
    import imagehash
    return str(imagehash.phash(image.convert("RGB")))


def resized(image: Image.Image, width: int) -> tuple[bytes, str]:
    """A JPEG (or PNG with transparency) at most `width` pixels wide, orientation applied."""
    copy = ImageOps.exif_transpose(image)
    if copy.width > width:
        copy = copy.resize((width, max(1, round(copy.height * width / copy.width))), Image.LANCZOS)
    out = io.BytesIO()
    if copy.mode in ("RGBA", "LA", "P") and "transparency" in copy.info or copy.mode == "RGBA":
        copy.save(out, "PNG", optimize=True)
        return out.getvalue(), "image/png"
    copy.convert("RGB").save(out, "JPEG", quality=85, optimize=True)
    return out.getvalue(), "image/jpeg"
