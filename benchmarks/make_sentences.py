"""Text datasets from Debian's ``fortunes-*`` packages, made on this machine (nothing is downloaded at run time).

- ``languages.csv`` (``sentence``, ``language``): text language identification in 8 languages, from
  ``fortunes`` (English), ``fortunes-de``, ``-es``, ``-it``, ``-br`` (Portuguese), ``-pl``, ``-cs`` (Czech; its
  Slovak files left out) and ``-ru``;
- ``topics.csv`` (``text``, ``topic``): topic classification, the English collection's files as topics
  (computers, science, politics, work, law, food).

Each fortune becomes one row: its attribution lines (``-- Someone``) dropped, white space and terminal escapes
collapsed, kept when 30 to 300 characters long and seen once. At most ``--rows`` per class, drawn with
``--seed``; the rows are shuffled.

Usage::

    python benchmarks/make_sentences.py                  # examples/text/languages.csv and topics.csv
    python benchmarks/make_sentences.py --rows 200 --out /tmp/text

Installs the fortune packages with apt when they are missing.
"""

from __future__ import annotations

import argparse
import csv
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FORTUNES = Path("/usr/share/games/fortunes")
PACKAGES = ("fortunes", "fortunes-de", "fortunes-es", "fortunes-it", "fortunes-br", "fortunes-pl", "fortunes-cs",
            "fortunes-ru")
#: Where each language's fortunes are: a folder of files, or a list of files.
LANGUAGES = {"de": "de", "es": "es", "it": "it", "pl": "pl", "cs": "cs", "ru": "ru", "pt": ["brasil"]}
TOPICS = ("computers", "science", "politics", "work", "law", "food")
ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|[\x00-\x08\x0b-\x1f\x7f]")


def english_files() -> list[str]:
    """The text files of the English collection (the ``fortunes`` package's own)."""
    listing = subprocess.run(["dpkg", "-L", "fortunes"], capture_output=True, text=True, check=True).stdout
    return sorted(Path(line).name for line in listing.split() if re.fullmatch(rf"{FORTUNES}/[a-z-]+", line)
                  and Path(line).name not in ("art", "ascii-art", "translate-me"))


def ensure_packages() -> None:
    if not (FORTUNES / "ru").is_dir() or not (FORTUNES / "computers").exists():
        subprocess.run(["apt-get", "update", "-q"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-q", *PACKAGES], check=True)


def fortunes(path: Path) -> list[str]:
    """The fortunes of one file as clean one-line texts of 30 to 300 characters."""
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return []
    out = []
    for entry in re.split(r"^%\s*$", text, flags=re.MULTILINE):
        lines = [line for line in entry.splitlines() if not line.strip().startswith("--")]
        clean = " ".join(ESCAPES.sub(" ", " ".join(lines)).split())
        if 30 <= len(clean) <= 300:
            out.append(clean)
    return out


def files_of(where: str | list[str]) -> list[Path]:
    if isinstance(where, list):
        return [FORTUNES / name for name in where]
    return sorted(p for p in (FORTUNES / where).rglob("*") if p.is_file() and p.suffix not in (".dat", ".u8")
                  and not p.name.endswith("-sk") and "/sk/" not in str(p))


def draw(texts: list[str], rows: int, rng: np.random.Generator) -> list[str]:
    unique = sorted(set(texts))
    return [unique[i] for i in rng.permutation(len(unique))[:rows]]


def write(path: Path, header: tuple[str, str], rows: list[tuple[str, str]], rng: np.random.Generator) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows[i] for i in rng.permutation(len(rows)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "examples" / "text")
    parser.add_argument("--rows", type=int, default=1000, help="most rows per class (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    ensure_packages()
    rng = np.random.default_rng(args.seed)
    sources: dict[str, str | list[str]] = {"en": english_files(), **LANGUAGES}
    languages = []
    for language, where in sources.items():
        texts = draw([t for path in files_of(where) for t in fortunes(path)], args.rows, rng)
        languages += [(text, language) for text in texts]
        print(f"{language}: {len(texts)} rows", file=sys.stderr)
    write(args.out / "languages.csv", ("sentence", "language"), languages, rng)
    topics = []
    for topic in TOPICS:
        texts = draw(fortunes(FORTUNES / topic), args.rows, rng)
        topics += [(text, topic) for text in texts]
        print(f"{topic}: {len(texts)} rows", file=sys.stderr)
    write(args.out / "topics.csv", ("text", "topic"), topics, rng)
    print(f"wrote {len(languages)} rows to {args.out / 'languages.csv'} and {len(topics)} to {args.out / 'topics.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
