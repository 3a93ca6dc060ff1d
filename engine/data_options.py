"""The ``[data]`` section: which dataset a Keras search trains on, how it is split, and the settings of each
kind of data (``[data.audio]`` for folders of WAV clips, ``[data.text]`` for a csv column of sentences).

Example::

    >>> data = read_section(DataOptions, {"dataset": "audio", "path": "clips", "audio": {"duration": 0.5}}, "data")
    >>> data.audio.sample_rate, data.audio.duration
    (16000, 0.5)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from engine.options import fraction, non_negative, option, positive, section

DATASETS = ("mnist1d", "digits", "diabetes", "csv", "npz", "images", "idx", "audio")
NEEDS_PATH = ("csv", "npz", "images", "idx", "audio")
CLASSIFICATION, REGRESSION = "classification", "regression"
#: The datasets whose kind alone fixes the task; a csv or npz file's labels decide it.
FIXED_TASKS = {"mnist1d": CLASSIFICATION, "digits": CLASSIFICATION, "images": CLASSIFICATION,
               "idx": CLASSIFICATION, "audio": CLASSIFICATION, "diabetes": REGRESSION}
FRONT_ENDS = ("log-mel", "mfcc")


def _check_size(value: tuple) -> str | None:
    if value and (len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                             for v in value)):
        return f"must be [height, width] in pixels, not {list(value)}"
    return None


COLUMN_KINDS = ("numeric", "categorical", "text", "ignore")


def _check_columns(value: Mapping) -> str | None:
    bad = {k: v for k, v in value.items() if v not in COLUMN_KINDS}
    return f"values must be one of {list(COLUMN_KINDS)}, not {bad}" if bad else None


@dataclass(frozen=True)
class AudioOptions:
    sample_rate: int = option(16000, "Hz every clip is resampled to", check=positive)
    duration: float = option(1.0, "seconds every clip is cut to (its start) or padded to (silence after it)",
                             check=positive)
    noise: float = option(0.1, "most volume of the background noise mixed into a training clip, from the clips of a "
                          "_background_noise_ folder beside the class folders (0: none); validation and test stay "
                          "clean", check=non_negative)
    front_end: str = option("log-mel", "what the model computes from the waveform, as its first layers (so an "
                            "exported model takes raw audio): log-mel (a log-mel spectrogram) or mfcc (its "
                            "cepstral coefficients)", FRONT_ENDS)
    mels: int = option(40, "mel bands of the spectrogram", check=positive)
    mfccs: int = option(10, "cepstral coefficients kept by the mfcc front end (at most mels)", check=positive)
    frame_ms: float = option(40.0, "milliseconds of audio in each spectrogram frame", check=positive)
    hop_ms: float = option(20.0, "milliseconds between the starts of two frames", check=positive)


@dataclass(frozen=True)
class TextOptions:
    tokens: str = option("words", "what a text column is cut into: words (split at white space) or characters; "
                         "text is lower-cased and stripped of punctuation first", ("words", "characters"))
    ngrams: int = option(1, "tokens also include the runs of up to this many words or characters (2: bigrams too)",
                         check=positive)
    vocabulary: int = option(20000, "most distinct tokens kept, the most frequent in the training split (the "
                             "rest read as one unknown token)", check=lambda v: None if v >= 3 else
                             f"must be 3 or more, not {v}")
    length: int = option(64, "tokens per example the model sees: longer texts are cut, shorter ones padded",
                         check=positive)


@dataclass(frozen=True)
class DataOptions:
    dataset: str = option("mnist1d", "mnist1d, digits, diabetes (built in), csv, npz, images, idx (MNIST's "
                          "file format) or audio (a folder of WAV clips, one sub-folder per class)", DATASETS)
    path: str = option("", "the file (csv, npz) or folder (images, audio; idx: the four "
                       "train-/t10k- files, plain or .gz); relative to the config file")
    label: str = option("", "the label column of a csv file")
    task: str = option("auto", "classification, regression, or auto (guessed from the labels)",
                       ("auto", CLASSIFICATION, REGRESSION))
    validation: float = option(0.15, "share of the examples the search is scored on", check=fraction)
    test: float = option(0.15, "share held out for `engine evaluate` (mnist1d and idx have their own)",
                         check=fraction)
    seed: int = option(0, "seed of the split (and of mnist1d's generator, idx's subset and audio's noise)")
    samples: int = option(5000, "examples mnist1d generates (80% train, 20% test); idx: the most "
                         "examples read from the training files (a stratified subset; more than they hold: all)",
                         check=positive)
    missing: str = option("impute", "csv missing values: impute (training mean / unknown category) or refuse",
                          ("impute", "refuse"))
    image_size: tuple[int, ...] = option([], "[height, width] images are resized to (default: the first image's)",
                                         check=_check_size)
    columns: Mapping[str, str] = option({}, "csv column kinds, e.g. {zip = 'categorical', review = 'text', "
                                        "id = 'ignore'} (default: guessed; text is a column of sentences, "
                                        "learned from as tokens, data.text)", check=_check_columns)
    audio: AudioOptions = section(AudioOptions)
    text: TextOptions = section(TextOptions)
