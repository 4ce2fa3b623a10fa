"""Rebuild static/fonts/normlab-hangul-*.woff2, the Hangul web font the dashboard serves, from NanumGothic.

The source is Debian's fonts-nanum (NanumGothic.ttf and NanumGothicBold.ttf, SIL OFL 1.1); the output
keeps the Hangul blocks only (Latin text stays in Streamlit's own font) as WOFF2, about 0.5 MB a face.
OFL reserves the name "NanumGothic" for the original, so the subset carries its own family name.
Needs fontTools and brotli, which the app itself does not (a throwaway virtualenv will do):

    apt-get download fonts-nanum && dpkg-deb -x fonts-nanum_*.deb nanum
    pip install fonttools brotli
    python scripts/hangul_font.py nanum/usr/share/fonts/truetype/nanum
"""

from __future__ import annotations

import sys
from pathlib import Path

from fontTools import subset
from fontTools.ttLib import TTFont

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "static" / "fonts"
FAMILY = "normlab-hangul"  # the @font-face family in .streamlit/config.toml and ui/figures/style.py
# Hangul Jamo, CJK symbols and punctuation, Hangul compatibility Jamo, the 11,172 Hangul syllables.
UNICODES = "U+1100-11FF,U+3000-303F,U+3131-318E,U+AC00-D7A3"
FACES = {"NanumGothic.ttf": "regular", "NanumGothicBold.ttf": "bold"}
# name IDs that carry the family's name (family, unique ID, full name, PostScript, typographic names)
NAME_IDS = (1, 3, 4, 6, 16, 17, 18, 21, 22)


def build(source: Path, style: str) -> Path:
    options = subset.Options()
    options.hinting = False  # browsers scale Hangul well unhinted; the hints would double the file
    options.layout_features = ["*"]
    options.name_IDs = ["*"]
    options.name_languages = ["*"]
    font = TTFont(source)
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=subset.parse_unicodes(UNICODES))
    subsetter.subset(font)
    name = font["name"]
    name.names = [record for record in name.names if record.nameID not in NAME_IDS]
    title = style.capitalize()
    for name_id, value in {1: FAMILY, 2: title, 3: f"{FAMILY}-{style}", 4: f"{FAMILY} {title}",
                           6: f"{FAMILY}-{title}"}.items():
        name.setName(value, name_id, 3, 1, 0x409)  # Windows, Unicode BMP, en-US
    out = OUT / f"{FAMILY}-{style}.woff2"
    font.flavor = "woff2"
    font.save(out)
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    for file, style in FACES.items():
        out = build(Path(argv[0]) / file, style)
        print(f"{out.relative_to(ROOT)}: {out.stat().st_size / 1e3:.0f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
