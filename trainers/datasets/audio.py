"""Audio clips: a folder with one sub-folder of WAV files per class (the layout of Speech Commands).

Clips of any sample rate, length and sample format (8-, 16-, 24- or 32-bit integers, 32- or 64-bit
floats) are read as waveforms in [-1, 1], averaged to one channel, resampled to ``data.audio.sample_rate``
and cut (their start kept) or padded with silence to ``data.audio.duration``. The model's first layers
are the front end (``data.audio.front_end``: a log-mel spectrogram, or its MFCCs) and a standardisation of
each band with training statistics, so an exported model takes raw waveforms, and ``engine predict`` WAV
files. The tower sees one (frames, bands) array per clip: a sequence for 1-D blocks, a one-channel image
for 2-D ones.

A ``_background_noise_`` folder beside the class folders holds long noise recordings (any WAV files). Each
training clip, with probability 0.8 (as the Speech Commands recipe does), gets a random stretch of a random
one mixed in at a random volume up to ``data.audio.noise``, drawn with ``data.seed``; validation and test
clips stay clean. The mixing is done once, when the data is loaded, so every epoch sees the same noisy clips.

Example::

    >>> raw = audio_folder(DataOptions(dataset="audio", path="clips"))   # clips/yes/*.wav, clips/no/*.wav
    >>> raw.inputs["train"].shape          # (clips, 16000): one second at 16 kHz
"""

from __future__ import annotations

from collections.abc import Callable
from math import gcd
from pathlib import Path
from typing import Any

import numpy as np

from blocks.tower import CLASSIFICATION, InputKind
from engine.config import DataOptions
from engine.data_options import AudioOptions
from trainers.datasets.base import DataError, RawData, apply_model, split_arrays, split_indices

NOISE_FOLDER = "_background_noise_"
NOISY_SHARE = 0.8  # the share of training clips that get noise


def wav_files(folder: Path) -> list[Path]:
    """The WAV files in ``folder`` (not its sub-folders), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".wav")


def read_wav(path: Path) -> tuple[np.ndarray, int, int]:
    """A WAV file as (mono float32 waveform in [-1, 1], its sample rate, its channel count)."""
    from scipy.io import wavfile

    try:
        rate, samples = wavfile.read(path)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable WAV file ({exc})") from None
    if samples.size == 0:
        raise DataError(f"{path}: the clip is empty (no samples)")
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    if samples.dtype.kind == "f":
        waveform = samples.astype("float32")
    elif samples.dtype == np.uint8:  # 8-bit WAV is unsigned, centred on 128
        waveform = (samples.astype("float32") - 128) / 128
    else:
        waveform = samples.astype("float32") / float(np.iinfo(samples.dtype).max)
    if channels > 1:
        waveform = waveform.mean(axis=1)
    if not np.all(np.isfinite(waveform)):
        raise DataError(f"{path}: the clip has samples that are not finite")
    return waveform, int(rate), channels


def resample(waveform: np.ndarray, rate: int, target: int) -> np.ndarray:
    """``waveform`` at ``rate`` Hz resampled to ``target`` Hz (polyphase filtering)."""
    if rate == target:
        return waveform
    from scipy.signal import resample_poly

    common = gcd(rate, target)
    return resample_poly(waveform, target // common, rate // common).astype("float32")


def fit_length(waveform: np.ndarray, length: int) -> np.ndarray:
    """The first ``length`` samples, padded with silence where the clip is shorter."""
    if len(waveform) >= length:
        return waveform[:length]
    return np.pad(waveform, (0, length - len(waveform)))


def read_clips(paths: list[Path], audio: AudioOptions) -> np.ndarray:
    """Clips as one (clips, samples) float32 array at the configured rate and duration.

    Every clip must have as many channels as the first.
    """
    length = clip_length(audio)
    clips = np.zeros((len(paths), length), dtype="float32")
    channels = None
    for i, path in enumerate(paths):
        waveform, rate, found = read_wav(path)
        channels = channels or found
        if found != channels:
            raise DataError(f"{path}: the clip has {found} channel(s) where the others have {channels}; "
                            "give every clip the same number of channels")
        clips[i] = fit_length(resample(waveform, rate, audio.sample_rate), length)
    return clips


def clip_length(audio: AudioOptions) -> int:
    return round(audio.sample_rate * audio.duration)


def mix_noise(clips: np.ndarray, noises: list[np.ndarray], level: float, seed: int) -> np.ndarray:
    """A copy of ``clips`` where a share of them (:data:`NOISY_SHARE`) have a random stretch of a random noise
    recording added at a random volume up to ``level``, kept in [-1, 1]; the draws come from ``seed``."""
    if not noises or level <= 0:
        return clips
    rng = np.random.default_rng([seed, 0x6E6F6973])  # a stream of its own, apart from the split's
    mixed = clips.copy()
    length = clips.shape[1]
    for i in range(len(clips)):
        if rng.random() >= NOISY_SHARE:
            continue
        noise = noises[rng.integers(len(noises))]
        if len(noise) < length:
            noise = np.tile(noise, -(-length // len(noise)))
        start = rng.integers(len(noise) - length + 1)
        mixed[i] = np.clip(clips[i] + rng.uniform(0, level) * noise[start:start + length], -1.0, 1.0)
    return mixed


def audio_folder(config: DataOptions) -> RawData:
    root, audio = Path(config.path), config.audio
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    if not classes:
        raise DataError(f"{root}: no class folders; put each class's WAV clips in a sub-folder named after it")
    if len(classes) < 2:
        raise DataError(f"{root}: only one class folder ({classes[0]!r}); classification needs at least 2")
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        found = wav_files(root / name)
        if not found:
            raise DataError(f"{root / name}: the class folder {name!r} has no .wav clips")
        paths += found
        labels += [label] * len(found)
    x = read_clips(paths, audio)
    y = np.array(labels, dtype="int32")
    noises: list[np.ndarray] = []
    if (root / NOISE_FOLDER).is_dir():
        for path in wav_files(root / NOISE_FOLDER):
            waveform, rate, _ = read_wav(path)
            noises.append(resample(waveform, rate, audio.sample_rate))
    split = split_indices(len(x), config.validation, config.test, config.seed)
    raw = split_arrays(root.name, CLASSIFICATION, x, y, split, front_end(audio), classes,
                       {"source": str(root), "sample_rate": audio.sample_rate, "samples": clip_length(audio),
                        "noise_files": len(noises)})
    raw.inputs["train"] = mix_noise(raw.inputs["train"], noises, audio.noise, config.seed)
    raw.kind = InputKind.SEQUENCE  # spectrograms: frames x bands
    return raw


def front_end(audio: AudioOptions) -> Callable[[np.ndarray], Any]:
    """Makes the preprocessing model: waveform -> log-mel spectrogram (or MFCCs), frames first -> each band
    standardised with the statistics of the training clips it is given."""

    def make(train: np.ndarray) -> Any:
        import keras

        from trainers.layers import MelCepstrum

        frame = round(audio.sample_rate * audio.frame_ms / 1000)
        hop = round(audio.sample_rate * audio.hop_ms / 1000)
        inputs = keras.Input(shape=(clip_length(audio),), name="waveform", dtype="float32")
        # top_db clips at the loudest value of the whole batch, which would make a clip's features depend on
        # the clips batched with it; at 1000 dB it never binds (min_power already floors silence at -100 dB).
        spectrogram = keras.layers.MelSpectrogram(
            fft_length=1 << (frame - 1).bit_length(), sequence_stride=hop, sequence_length=frame,
            sampling_rate=audio.sample_rate, num_mel_bins=audio.mels, power_to_db=True, top_db=1000.0,
            name="log_mel")(inputs)
        x = keras.layers.Permute((2, 1), name="frames_first")(spectrogram)
        if audio.front_end == "mfcc":
            x = MelCepstrum(audio.mfccs, name="mfcc")(x)
        standardise = keras.layers.Normalization(axis=-1, name="standardise")
        standardise.adapt(apply_model(keras.Model(inputs, x), train))
        return keras.Model(inputs, standardise(x), name="preprocessing")

    return make
