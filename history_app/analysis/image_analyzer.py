"""Analyser for raster images (PNG, JPEG, GIF, WebP) via Pillow."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image, UnidentifiedImageError

from .base import Analysis, Analyzer, registry
from .detection import GIF, JPEG, PNG, WEBP

# Our own ceiling, well under Pillow's global MAX_IMAGE_PIXELS, checked on the
# header before any pixel data is decoded.  We deliberately do not lower the
# Pillow global: it is process-wide and other code may rely on it.
MAX_IMAGE_PIXELS = 50_000_000

# Content type -> Pillow format id.  Opening with ``formats=[...]`` restricts
# Pillow to that one decoder, so a file cannot reach an unexpected plugin.
_PIL_FORMATS = {PNG: "PNG", JPEG: "JPEG", GIF: "GIF", WEBP: "WEBP"}


@registry.register(*_PIL_FORMATS)
class ImageAnalyzer(Analyzer):
    """Reports format, dimensions, colour mode and animation; provides no text."""

    kind = "image"

    def analyze(self, data: bytes, filename: str, content_type: str) -> Analysis:
        expected = _PIL_FORMATS.get(content_type)
        formats = [expected] if expected else list(_PIL_FORMATS.values())
        try:
            with Image.open(io.BytesIO(data), formats=formats) as image:
                # Image.open only parses the header, so size is known before decoding.
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    return self.failure(
                        "Image (too large)",
                        f"Image is {width}×{height} pixels, above the {MAX_IMAGE_PIXELS:,}-pixel limit.",
                        width=width,
                        height=height,
                    )
                details: dict[str, Any] = {
                    "format": image.format,
                    "width": width,
                    "height": height,
                    "mode": image.mode,
                    "animated": bool(getattr(image, "is_animated", False)),
                    "frames": int(getattr(image, "n_frames", 1)),
                }
            # verify() consumes the image object, so it gets a fresh one.  It checks
            # structure (e.g. PNG chunk CRCs) without decoding all pixels.
            with Image.open(io.BytesIO(data), formats=formats) as image:
                image.verify()
        except Image.DecompressionBombError as exc:
            return self.failure("Image (too large)", f"Image rejected as a decompression bomb: {exc}")
        except UnidentifiedImageError:
            # Its message embeds the BytesIO repr, which is noise to a user.
            return self.failure(
                "Image (unreadable)", "Could not read image: the file is corrupt or truncated."
            )
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            # Pillow signals corrupt data with all of these depending on the plugin.
            return self.failure("Image (unreadable)", f"Could not read image: {exc or type(exc).__name__}")

        summary = f"{details['format']} image, {width}×{height} px, {details['mode']}"
        if details["animated"]:
            summary += f", animated ({details['frames']} frames)"
        return Analysis(kind=self.kind, summary=summary, details=details, text="")
