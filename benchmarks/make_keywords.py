"""A keyword-spotting dataset spoken by Debian's ``espeak-ng`` on this machine, in the layout of Speech Commands.

Ten keywords (yes, no, up, down, left, right, on, off, stop, go), an ``unknown`` class (twenty other
words) and a ``silence`` class (background noise only), ``--clips`` one-second 16 kHz clips each. Every
clip is a fresh draw of an English accent (8), a voice variant (30), speed, pitch and volume; the word is
trimmed of silence, put at a random offset in the second (time shift) and mixed with a random stretch of
one of five noise recordings (white, pink, brown, mains hum, and babble: three voices reading at once) at
a random volume. The noise recordings (10 s each, other draws) go to ``_background_noise_``, which the
``audio`` dataset mixes into training clips (``data.audio.noise``). All draws come from ``--seed``.

Usage::

    python benchmarks/make_keywords.py                       # examples/keywords: 12 classes x 300 clips
    python benchmarks/make_keywords.py --clips 40 --out /tmp/kws

Installs ``espeak-ng`` with apt when it is missing (nothing is downloaded at run time otherwise).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy.io import wavfile
from scipy.signal import resample_poly

ROOT = Path(__file__).resolve().parent.parent
RATE = 16000
KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
OTHER_WORDS = ("bed", "bird", "cat", "dog", "happy", "house", "tree", "wow", "zero", "one", "two", "three", "four",
               "five", "six", "seven", "eight", "nine", "marvin", "sheila")
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
           "en-us-nyc")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2",
            "klatt3", "adam", "Alex", "Alicia", "Andrea", "Andy", "Annie", "david", "ed", "grandma", "grandpa",
            "linda", "max", "steph", "travis")
BABBLE = ("the quick brown fox jumps over the lazy dog", "she sells sea shells by the sea shore",
          "a stitch in time saves nine", "every cloud has a silver lining", "all that glitters is not gold")
UNKNOWN, SILENCE, NOISE = "unknown", "silence", "_background_noise_"


def ensure_espeak() -> None:
    if shutil.which("espeak-ng") is None:
        subprocess.run(["apt-get", "update", "-q"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "espeak-ng"], check=True)


def speak(text: str, rng: np.random.Generator, scratch: Path, language: str | None = None) -> np.ndarray:
    """``text`` in a random voice (of ``language``, or of a random English accent), as a float waveform at
    :data:`RATE`."""
    language = language or ACCENTS[rng.integers(len(ACCENTS))]
    voice = f"{language}+{VARIANTS[rng.integers(len(VARIANTS))]}"
    out = scratch / "speech.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(rng.integers(110, 230)), "-p", str(rng.integers(15, 85)),
                    "-a", str(rng.integers(60, 180)), "-w", str(out), text], check=True, capture_output=True)
    rate, samples = wavfile.read(out)
    return resample_poly(samples.astype("float64") / 32768, RATE // 50, rate // 50)  # 22050 Hz -> 16000 Hz


def trimmed(waveform: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    loud = np.flatnonzero(np.abs(waveform) > threshold)
    return waveform[loud[0]:loud[-1] + 1] if len(loud) else waveform[:0]


def noises(rng: np.random.Generator, seconds: float, scratch: Path) -> dict[str, np.ndarray]:
    """Five noise recordings of ``seconds``, each scaled to a peak of 1."""
    n = round(seconds * RATE)
    white = rng.standard_normal(n)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    pink = np.fft.irfft(spectrum / np.sqrt(np.maximum(np.arange(len(spectrum)), 1)), n)
    brown = np.cumsum(white)
    brown -= np.convolve(brown, np.ones(RATE // 10) / (RATE // 10), mode="same")  # no slow drift
    t = np.arange(n) / RATE
    hum = sum(np.sin(2 * np.pi * 50 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in (1, 2, 3, 5))
    babble = np.zeros(n)
    for _ in range(3):
        speech = np.concatenate([speak(BABBLE[rng.integers(len(BABBLE))], rng, scratch) for _ in range(4)])
        babble += np.resize(speech, n)
    recordings = {"white": white, "pink": pink, "brown": brown, "hum": hum, "babble": babble}
    return {name: x / np.abs(x).max() for name, x in recordings.items()}


def clip(speech: np.ndarray | None, rng: np.random.Generator, background: list[np.ndarray],
         seconds: float = 1.0) -> np.ndarray:
    """``seconds`` of audio: ``speech`` (None: nothing) at a random offset (a random stretch of it where it is
    longer), over a random stretch of noise."""
    length = round(seconds * RATE)
    out = np.zeros(length)
    if speech is not None:
        if len(speech) > length:
            start = rng.integers(len(speech) - length + 1)
            speech = speech[start:start + length]
        start = rng.integers(length - len(speech) + 1)
        out[start:start + len(speech)] = speech
    noise = background[rng.integers(len(background))]
    offset = rng.integers(len(noise) - length + 1)
    volume = rng.uniform(0.0, 0.3) if speech is None else rng.uniform(0.0, 0.08)
    return np.clip(out + volume * noise[offset:offset + length], -1, 1)


def write(path: Path, waveform: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    wavfile.write(path, RATE, np.round(waveform * 32767).astype("int16"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "examples" / "keywords")
    parser.add_argument("--clips", type=int, default=300, help="clips per class (default 300)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    ensure_espeak()
    if args.out.exists():
        shutil.rmtree(args.out)
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for name, recording in noises(rng, 10.0, scratch).items():
            write(args.out / NOISE / f"{name}.wav", recording)
        mixing = list(noises(rng, 10.0, scratch).values())  # other draws than the training noise
        classes = [*KEYWORDS, UNKNOWN, SILENCE]
        for number, name in enumerate(classes, 1):
            for i in range(args.clips):
                word = {UNKNOWN: OTHER_WORDS[rng.integers(len(OTHER_WORDS))], SILENCE: None}.get(name, name)
                speech = None if word is None else trimmed(speak(word, rng, scratch))
                write(args.out / name / f"{i:04d}.wav", clip(speech, rng, mixing))
            print(f"{number}/{len(classes)} {name}: {args.clips} clips", file=sys.stderr, flush=True)
    print(f"wrote {len(classes) * args.clips} clips in {len(classes)} classes to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
