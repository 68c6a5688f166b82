"""Text from pictures by OCR, with the optional ``ocr`` extra: RapidOCR on ONNX Runtime, whose detection and
recognition models ship inside its wheel (nothing is downloaded at run time). Image files become one unit;
PDF pages without a text layer are rendered (pypdfium2) and read the same way."""

from __future__ import annotations

import functools
import io
import threading
from typing import Any

from ragflow.documents import Metadata, TextUnit
from ragflow.errors import ParseError

from ._limits import ParseContext

__all__ = ["INSTALL_HINT", "ocr_available", "ocr_image", "parse_image"]

INSTALL_HINT = "install ragflow[ocr] to read it"
_LOCK = threading.Lock()  # one engine, used by one parse at a time (ONNX Runtime uses every core anyway)


@functools.cache
def ocr_available() -> bool:
    """Whether the ``ocr`` extra is installed (checked without importing it)."""
    from importlib.util import find_spec

    return find_spec("rapidocr_onnxruntime") is not None


@functools.cache
def _engine() -> Any:
    from rapidocr_onnxruntime import RapidOCR

    # The default scales an image's *shorter* side up to 736 pixels: a 1400x260 line of text becomes
    # 3963x736 and detection takes seconds. Capping the longer side at 1600 keeps 10-point print on a
    # 200 dpi page legible at a fraction of the cost; upright scans need no orientation classifier.
    return RapidOCR(det_limit_type="max", det_limit_side_len=1600, use_cls=False)


def parse_image(data: bytes, metadata: Metadata, context: ParseContext) -> list[TextUnit]:
    """The text of an image file as one unit; an error saying to install the extra when it is not."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            frames = [image.convert("RGB")]
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ParseError(
            f"{context.path}: binary or unsupported content (an image that cannot be read: {exc})"
        ) from None
    if not (context.ocr and ocr_available()):
        raise ParseError(f"{context.path}: an image, whose text only OCR can read; {INSTALL_HINT}")
    text = ocr_image(frames[0], context)
    return [TextUnit(text, dict(metadata))] if text else []


def ocr_image(image: Any, context: ParseContext) -> str:
    """The text OCR reads in ``image`` (a PIL image), line by line from top to bottom."""
    width, height = image.size
    if width * height > context.limits.ocr_max_pixels:
        raise ParseError(
            f"{context.path}: an image of {width}x{height} pixels, past the OCR cap of "
            f"{context.limits.ocr_max_pixels:,} pixels (raise ParseLimits(ocr_max_pixels=...))"
        )
    import numpy as np

    with _LOCK:
        result, _ = _engine()(np.asarray(image.convert("RGB")))
    return _lines(result or [])


def _lines(boxes: list[Any]) -> str:
    """Boxes ``[corners, text, score]`` as lines: boxes whose vertical centres are within half a box
    height of each other are one line, read left to right."""
    placed = []
    for corners, text, _score in boxes:
        ys = [point[1] for point in corners]
        placed.append(((min(ys) + max(ys)) / 2, max(ys) - min(ys), min(p[0] for p in corners), str(text)))
    placed.sort()
    lines: list[list[tuple[float, str]]] = []
    last_centre, last_height = None, 0.0
    for centre, height, left, text in placed:
        if last_centre is None or centre - last_centre > max(height, last_height) / 2:
            lines.append([])
            last_centre, last_height = centre, height
        lines[-1].append((left, text.strip()))
    return "\n".join(" ".join(text for _, text in sorted(line) if text) for line in lines).strip()
