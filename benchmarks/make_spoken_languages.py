"""A spoken language identification dataset: ``espeak-ng`` reading fortunes in 8 languages, made on this machine.

One sub-folder per language (en, de, es, it, pt, pl, cs, ru), ``--clips`` clips each, in the layout the ``audio``
dataset reads. Each clip is a fortune of that language (from Debian's ``fortunes-*`` packages, as
``make_sentences.py`` reads them) spoken by that language's ``espeak-ng`` voice with a random voice variant,
speed, pitch and volume, trimmed of silence, cut to a random ``--seconds`` stretch (or put at a random offset
where it is shorter) and mixed with one of the noise recordings of ``make_keywords.py``; those recordings (other
draws) go to ``_background_noise_``. All draws come from ``--seed``.

Usage::

    python benchmarks/make_spoken_languages.py         # examples/spoken_languages: 8 x 300 clips of 3 s
    python benchmarks/make_spoken_languages.py --clips 20 --out /tmp/lid
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from make_keywords import NOISE, ROOT, clip, ensure_espeak, noises, speak, trimmed, write
from make_sentences import LANGUAGES, english_files, ensure_packages, files_of, fortunes

VOICES = {"en": "en", "de": "de", "es": "es", "it": "it", "pt": "pt-br", "pl": "pl", "cs": "cs", "ru": "ru"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "examples" / "spoken_languages")
    parser.add_argument("--clips", type=int, default=300, help="clips per language (default 300)")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of a clip (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    ensure_espeak()
    ensure_packages()
    if args.out.exists():
        shutil.rmtree(args.out)
    rng = np.random.default_rng(args.seed)
    sources = {"en": english_files(), **LANGUAGES}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for name, recording in noises(rng, 10.0, scratch).items():
            write(args.out / NOISE / f"{name}.wav", recording)
        mixing = list(noises(rng, 10.0, scratch).values())
        for number, (language, voice) in enumerate(VOICES.items(), 1):
            texts = sorted({t for path in files_of(sources[language]) for t in fortunes(path)})
            for i, index in enumerate(rng.permutation(len(texts))[:args.clips]):
                speech = trimmed(speak(texts[index], rng, scratch, language=voice))
                write(args.out / language / f"{i:04d}.wav", clip(speech, rng, mixing, seconds=args.seconds))
            print(f"{number}/{len(VOICES)} {language}: {min(args.clips, len(texts))} clips", file=sys.stderr,
                  flush=True)
    print(f"wrote {len(VOICES)} languages to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
