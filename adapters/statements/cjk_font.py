"""A Traditional Chinese font for the PDFs the gateway writes (statements, postal letters), registered with
reportlab once per process.

Why here and not in the renderers: finding a font means reading files, so it is an adapter's job; renderers
take the registered name (:func:`cjk_font_name`) as an argument and stay pure.

Where the font comes from, first hit wins:

1. ``VGW_CJK_FONT=/path/to/font.ttf|.ttc`` (an operator's choice; a path that cannot be used is logged and
   the search goes on, so a typo never takes the statements down);
2. well-known Debian/Ubuntu places: fonts-arphic-uming (installed by ``scripts/with-test-services``),
   fonts-arphic-ukai, fonts-wqy-zenhei / microhei, Noto Sans/Serif TC as TrueType;
3. reportlab's built-in CID font ``MSung-Light`` (Traditional Chinese), with a warning: the PDF then names
   the font without embedding it, and the reader's viewer must supply one (Acrobat does; some do not).

In a TrueType collection (.ttc) the Taiwan face (``…TW``) is chosen, so 臺 and 對 get Taiwan's glyph shapes.
OpenType fonts with PostScript (CFF) outlines, such as Noto Sans CJK's .ttc, cannot be embedded by reportlab;
they are skipped.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfbase.ttfonts import TTFont, TTFontFile, TTFontParser
from twisted.logger import Logger

log = Logger(namespace="vgw.cjk_font")

ENV = "VGW_CJK_FONT"
FALLBACK_CID_FONT = "MSung-Light"

# Looked at in this order; a .ttc's Taiwan face is picked by name.
CANDIDATES: tuple[Path, ...] = tuple(Path(p) for p in (
    "/usr/share/fonts/truetype/arphic/uming.ttc",
    "/usr/share/fonts/truetype/arphic/ukai.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/noto/NotoSansTC-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSerifTC-Regular.ttf",
    "/usr/local/share/fonts/NotoSansTC-Regular.ttf",
))


@dataclass(frozen=True)
class CjkFont:
    """A font registered with reportlab under ``name``."""

    name: str
    embedded: bool  # a TrueType subset goes into each PDF; False: the CID fallback, named only
    path: Path | None  # the file it came from (None for the CID fallback)


_lock = threading.Lock()
_chosen: CjkFont | None = None


def cjk_font() -> CjkFont:
    """The process's CJK font: searched and registered on the first call (thread-safe), then cached."""
    global _chosen
    with _lock:
        if _chosen is None:
            _chosen = find_and_register()
        return _chosen


def cjk_font_name() -> str:
    """The reportlab font name to give a renderer (``fontName`` of a ParagraphStyle, ``setFont``)."""
    return cjk_font().name


def cjk_font_is_embedded() -> bool:
    """True when PDFs carry the font (TrueType subset); False on the not-embedded CID fallback."""
    return cjk_font().embedded


def find_and_register(environ: Mapping[str, str] | None = None,
                      candidates: Iterable[Path] = CANDIDATES) -> CjkFont:
    """Search (``environ[VGW_CJK_FONT]`` first, then ``candidates``) and register the first usable font;
    the CID fallback if none is. Uncached: :func:`cjk_font` is the cached entry point, this one is for tests
    and tools. Registering the same file again is harmless (reportlab keeps one font per name)."""
    environ = os.environ if environ is None else environ
    configured = environ.get(ENV, "").strip()
    paths = ([Path(configured)] if configured else []) + list(candidates)
    for path in paths:
        if not path.is_file():
            if configured and path == Path(configured):
                log.warn("{env}={path}: no such file; looking for a CJK font elsewhere", env=ENV, path=path)
            continue
        try:
            return _register_truetype(path)
        except Exception as error:  # reportlab raises TTFError and plain errors for fonts it cannot embed
            log.warn("CJK font {path} not usable ({error}); trying the next", path=path, error=error)
    log.warn("no Traditional Chinese TrueType font found (set {env} or install fonts-arphic-uming); PDFs use "
             "reportlab's {cid}, which is not embedded", env=ENV, cid=FALLBACK_CID_FONT)
    if FALLBACK_CID_FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(FALLBACK_CID_FONT))
    return CjkFont(FALLBACK_CID_FONT, embedded=False, path=None)


def _register_truetype(path: Path) -> CjkFont:
    index = _taiwan_face(path)
    font = TTFont(f"VGW-CJK-{path.stem}-{index}", str(path), subfontIndex=index)
    name = font.fontName
    if name not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(font)
    return CjkFont(name, embedded=True, path=path)


def _taiwan_face(path: Path) -> int:
    """Index of the collection's face whose name ends in TW (UMingTW before UMingTWMBE), else 0."""
    faces = TTFontParser(str(path), subfontIndex=0).numSubfonts if path.suffix.lower() == ".ttc" else 1
    if faces <= 1:
        return 0
    names = []
    for index in range(faces):
        name = TTFontFile(str(path), subfontIndex=index).name.decode("ascii", "replace")
        if name.upper().endswith("TW"):
            return index
        names.append(name)
    return next((i for i, n in enumerate(names) if "TW" in n.upper()), 0)
