"""The CJK font finder on this machine's real fonts: the Taiwan face of fonts-arphic-uming is found and
embedded, an operator's path wins, and without any font the not-embedded CID fallback keeps PDFs possible."""

from __future__ import annotations

import threading
from pathlib import Path

from reportlab.pdfbase import pdfmetrics

from adapters.statements import cjk_font
from adapters.statements.cjk_font import ENV, FALLBACK_CID_FONT, find_and_register

UMING = Path("/usr/share/fonts/truetype/arphic/uming.ttc")  # installed by scripts/with-test-services


def test_the_taiwan_face_of_uming_is_registered_and_embedded():
    font = find_and_register(environ={})
    assert font.path == UMING and font.embedded
    assert pdfmetrics.getFont(font.name).face.name == b"UMingTW"


def test_an_operators_font_path_comes_first(tmp_path):
    copy = tmp_path / "mine.ttc"
    copy.symlink_to(UMING)
    font = find_and_register(environ={ENV: str(copy)})
    assert font.path == copy and font.embedded


def test_an_unusable_path_is_skipped_and_without_fonts_the_cid_fallback_is_used(tmp_path):
    broken = tmp_path / "broken.ttf"
    broken.write_bytes(b"not a font")
    font = find_and_register(environ={ENV: str(broken)}, candidates=[tmp_path / "missing.ttc", broken])
    assert font.name == FALLBACK_CID_FONT and not font.embedded and font.path is None
    assert FALLBACK_CID_FONT in pdfmetrics.getRegisteredFontNames()


def test_the_process_font_is_found_once_even_when_threads_race(monkeypatch):
    monkeypatch.setattr(cjk_font, "_chosen", None)
    calls = []
    real = cjk_font.find_and_register
    monkeypatch.setattr(cjk_font, "find_and_register", lambda: calls.append(1) or real(environ={}))
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(cjk_font.cjk_font())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(calls) == 1 and len(seen) == 8 and len({id(f) for f in seen}) == 1
    assert cjk_font.cjk_font_is_embedded() and cjk_font.cjk_font_name() == seen[0].name
