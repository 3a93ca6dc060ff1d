"""Folders of WAV clips: read in any format, resampled, cut or padded, noise mixed into training clips only,
the front end inside the exported model, and one clear error for each kind of bad clip or folder."""

from __future__ import annotations

import re
import wave
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile
from support import three_trial_search, write_toml

from engine.config import load_config, resolve_config
from engine.data_options import AudioOptions, DataOptions
from engine.options import ConfigError, read_section
from trainers.datasets import DataError, check_data
from trainers.datasets.audio import NOISE_FOLDER, audio_folder, mix_noise, read_clips, read_wav, wav_files
from trainers.datasets.base import split_indices


def tone(frequency: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * frequency * np.arange(round(seconds * rate)) / rate)).astype("float32")


def write_pcm16(path: Path, waveform: np.ndarray, rate: int, channels: int = 1) -> Path:
    """A 16-bit PCM WAV file written with the standard library (as most recorders write them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.round(np.clip(waveform, -1, 1) * 32767).astype("<i2")
    if channels > 1:
        frames = np.repeat(frames[:, None], channels, axis=1)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames.tobytes())
    return path


def tone_folder(root: Path, clips: int = 16, noise: bool = False) -> Path:
    """Two classes of tones, low (300-500 Hz) and high (1.5-2.5 kHz), at 8 or 16 kHz and 0.3-1.2 s long."""
    rng = np.random.default_rng(0)
    for name, (low, high) in {"low": (300, 500), "high": (1500, 2500)}.items():
        for i in range(clips):
            rate = (8000, 16000)[i % 2]
            write_pcm16(root / name / f"{name}_{i:02d}.wav",
                        tone(rng.uniform(low, high), rng.uniform(0.3, 1.2), rate, rng.uniform(0.2, 0.8)), rate)
    if noise:
        write_pcm16(root / NOISE_FOLDER / "hiss.wav", rng.uniform(-1, 1, 20000).astype("float32"), 16000)
    return root


def audio_options(path: Path, seed: int = 0, **audio) -> DataOptions:
    settings = {"sample_rate": 8000, "duration": 0.5, "frame_ms": 32.0, "hop_ms": 16.0, "mels": 20, **audio}
    return read_section(DataOptions, {"dataset": "audio", "path": str(path), "seed": seed, "audio": settings}, "data")


def test_clips_are_resampled_then_cut_or_padded_to_the_duration(tmp_path: Path) -> None:
    short = write_pcm16(tmp_path / "short.wav", tone(440, 0.25, 8000), 8000)
    long = write_pcm16(tmp_path / "long.wav", tone(1000, 2.0, 22050), 22050)
    audio = AudioOptions(sample_rate=16000, duration=0.5)
    clips = read_clips([short, long], audio)
    assert clips.shape == (2, 8000) and clips.dtype == np.float32
    assert np.abs(clips[0, 4100:]).max() == 0, "a short clip is padded with silence after it"
    for clip, frequency, seconds in ((clips[0, :4000], 440, 0.25), (clips[1], 1000, 0.5)):
        spectrum = np.abs(np.fft.rfft(clip))
        assert abs(np.argmax(spectrum) / seconds - frequency) <= 2, "resampling keeps the pitch"
    assert np.abs(clips[1]).max() == pytest.approx(0.5, abs=0.02), "and the volume"


def test_every_sample_format_reads_as_a_mono_waveform_in_the_unit_range(tmp_path: Path) -> None:
    wave_ = tone(200, 0.1, 8000, amplitude=0.9)
    formats = {
        "pcm8": ((wave_ * 127 + 128).astype("uint8"), 1),
        "pcm16": ((wave_ * 32767).astype("int16"), 1),
        "pcm32": ((wave_ * 2147483647).astype("int32"), 1),
        "float32": (wave_, 1),
        "stereo": (np.stack([wave_, wave_], axis=1), 2),
    }
    for name, (samples, channels) in formats.items():
        wavfile.write(tmp_path / f"{name}.wav", 8000, samples)
        waveform, rate, found = read_wav(tmp_path / f"{name}.wav")
        assert (rate, found) == (8000, channels)
        assert np.allclose(waveform, wave_, atol=0.02), name  # 8 bits: steps of 1/128


def test_noise_goes_into_training_clips_only_and_the_same_way_for_a_seed(tmp_path: Path) -> None:
    root = tone_folder(tmp_path / "clips", noise=True)
    clean, noisy, again = (audio_folder(audio_options(root, noise=level)) for level in (0.0, 0.3, 0.3))
    for split in ("validation", "test"):
        assert np.array_equal(noisy.inputs[split], clean.inputs[split]), f"{split} clips stay clean"
    changed = np.any(noisy.inputs["train"] != clean.inputs["train"], axis=1)
    assert 0.5 < changed.mean() < 1.0, "most training clips get noise, not all"
    assert np.array_equal(noisy.inputs["train"], again.inputs["train"]), "data.seed fixes the draws"
    assert np.abs(noisy.inputs["train"]).max() <= 1.0
    assert noisy.describe["noise_files"] == 1 and noisy.classes == ["high", "low"]
    other = audio_folder(audio_options(root, seed=1, noise=0.3))
    assert not np.array_equal(other.inputs["train"], noisy.inputs["train"])


def test_noise_shorter_than_a_clip_is_repeated() -> None:
    clips = np.zeros((50, 100), dtype="float32")
    mixed = mix_noise(clips, [np.ones(7, dtype="float32")], 0.5, seed=0)
    noisy = mixed[np.any(mixed != 0, axis=1)]
    assert len(noisy) > 25 and np.all(noisy == noisy[:, :1]), "a constant noise stays constant over the clip"


def _empty(root: Path) -> str:
    with wave.open(str(root / "low" / "low_00.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
    return "low_00.wav: the clip is empty"


def _garbage(root: Path) -> str:
    (root / "high" / "high_03.wav").write_bytes(b"RIFF this is not audio")
    return "high_03.wav: not a readable WAV file"


def _stereo(root: Path) -> str:
    write_pcm16(root / "low" / "low_05.wav", tone(400, 0.5, 8000), 8000, channels=2)
    return "low_05.wav: the clip has 2 channel(s) where the others have 1"


def _no_clips(root: Path) -> str:
    for path in wav_files(root / "high"):
        path.unlink()
    (root / "high" / "notes.txt").write_text("not a clip")
    return "the class folder 'high' has no .wav clips"


def _one_class(root: Path) -> str:
    for path in wav_files(root / "high"):
        path.unlink()
    (root / "high").rmdir()
    return "only one class folder ('low')"


@pytest.mark.parametrize("damage", [_empty, _garbage, _stereo, _no_clips, _one_class],
                         ids=["empty", "garbage", "mixed-channels", "no-clips", "one-class"])
def test_a_bad_clip_or_folder_is_refused_with_its_name(tmp_path: Path, damage) -> None:
    root = tone_folder(tmp_path / "clips", clips=6)
    message = damage(root)
    with pytest.raises(DataError, match=re.escape(message)):
        audio_folder(audio_options(root))
    config = resolve_config({"space": {"kind": "tower"}, "data": {"dataset": "audio", "path": str(root)}})
    with pytest.raises(ConfigError, match="data: .*" + re.escape(message)):
        check_data(config), "a new run refuses it before anything is written"


def test_audio_settings_that_cannot_work_are_refused_by_key() -> None:
    def config(**audio) -> None:
        resolve_config({"space": {"kind": "tower"}, "data": {"dataset": "audio", "path": "clips", "audio": audio}})

    with pytest.raises(ConfigError, match="data.audio.mfccs"):
        config(front_end="mfcc", mels=8, mfccs=13)
    with pytest.raises(ConfigError, match="data.audio.duration"):
        config(duration=0.01)
    with pytest.raises(ConfigError, match="data.audio.front_end"):
        config(front_end="wavelets")
    assert config(duration=0.5) is None


KEYWORDS = """
[data]
dataset = "audio"
path = "clips"
[data.audio]
sample_rate = 8000
duration = 0.5
frame_ms = 32.0
hop_ms = 16.0
mels = 20
front_end = "mfcc"
"""


def test_the_log_mel_front_end_gives_each_clip_the_same_features_alone_or_in_a_batch(tmp_path: Path) -> None:
    pytest.importorskip("keras")
    from trainers.datasets.audio import front_end
    from trainers.datasets.base import apply_model

    raw = audio_folder(audio_options(tone_folder(tmp_path / "clips", clips=8)))
    model = front_end(audio_options(tmp_path).audio)(raw.inputs["train"])
    batch = apply_model(model, raw.inputs["train"])
    assert batch.shape == (len(raw.inputs["train"]), 32, 20), "(clips, frames, mel bands)"
    alone = apply_model(model, raw.inputs["train"][3:4])
    assert np.allclose(alone[0], batch[3], atol=1e-4), "nothing in the front end depends on the other clips"
    assert abs(batch.mean()) < 0.1 and abs(batch.std() - 1) < 0.1, "bands standardised on the training clips"
    silence = apply_model(model, np.zeros((1, raw.inputs["train"].shape[1]), dtype="float32"))
    assert np.all(np.isfinite(silence)), "silence is floored, not minus infinity"


def test_an_exported_model_takes_wav_files_and_predicts_what_training_saw(tmp_path: Path, engine_cli,
                                                                          engine_here) -> None:
    """The MFCC front end (log-mel, then the cepstrum) inside the exported model: a WAV file in, the prediction
    the trained tower gives the clip's features out; towers end by pooling (space.head), in export too."""
    pytest.importorskip("keras")
    from engine.runs import state_at
    from trainers.datasets import load_dataset
    from trainers.export import load_model, predict, rebuild

    root = tone_folder(tmp_path / "clips", clips=20, noise=True)
    config_path = write_toml(tmp_path / "keywords.toml", three_trial_search(
        ["conv1d_16_k3", "maxpool1d", "conv1d_32_k3"], KEYWORDS, epochs=4, head="pool"))
    engine_cli("run", "--run", "run", "--config", str(config_path), "--quiet", timeout=300)
    state = state_at(tmp_path / "run")
    assert state.config.data.task == "classification" and state.config.data.audio.front_end == "mfcc"
    data = load_dataset(load_config(config_path).data)
    frames = data.features["train"].shape[1:]
    assert frames == (32, 10), "(frames, cepstral coefficients) per clip"

    # A clip of the test split, given to `engine predict` as the WAV file it was read from.
    paths = [p for name in data.classes for p in wav_files(root / name)]
    test = split_indices(len(paths), 0.15, 0.15, 0)["test"]
    assert state.config.space.head == "pool"
    tower = rebuild(tmp_path / "run", state.best_trial(), data, state.config.space.head)
    engine_here("export", "--run", "run", "--out", "model")
    assert tower.get_layer("head_pool") is not None
    expected = tower.predict(data.features["test"], verbose=0)
    exported = load_model(tmp_path / "model")
    for position in (0, 1):
        row = predict(exported, paths[test[position]])[0]
        assert row["file"] == str(paths[test[position]])
        assert np.allclose(list(row["probabilities"].values()), expected[position], atol=1e-4)
    assert [r["file"] for r in predict(exported, root / "low")] == list(map(str, wav_files(root / "low")))
    lines = engine_here("predict", "--model", "model", "--input", str(root / "high")).stdout.splitlines()
    assert len(lines) == 20 and all(line.startswith(str(root / "high")) for line in lines)
    right = sum(line.endswith(": high") for line in lines)
    assert right >= 15, f"tones this far apart are told apart ({right} of 20)"
    bad = engine_here("predict", "--model", "model", "--input", str(tmp_path / "keywords.toml"), check=False)
    assert bad.returncode != 0 and "no .wav clips to predict" in bad.stderr
