"""A csv column of sentences: found, cut into tokens with the training split's vocabulary, embedded by the
tower, kept inside the exported model (raw strings in), and each bad input refused with one clear error."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from support import three_trial_search, write_toml

from blocks import lookup
from blocks.ordering import problem
from blocks.tower import BuildError, DataSpec, InputKind, build_tower
from engine.config import load_config, resolve_config
from engine.data_options import DataOptions
from engine.options import ConfigError, read_section
from trainers.datasets import DataError, check_data, load_dataset
from trainers.datasets.base import split_indices
from trainers.datasets.csv_file import csv_table

SYLLABLES = {"north": ["ka", "lo", "mi", "ta", "ne"], "south": ["sch", "ung", "ber", "ach", "ei"],
             "east": ["zo", "qui", "ra", "vex", "ul"]}


def sentences(rows: int, seed: int = 0) -> list[tuple[str, str]]:
    """Sentences of 3-8 made-up words; each language builds its words from syllables of its own."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(rows):
        language = list(SYLLABLES)[i % 3]
        syllables = SYLLABLES[language]
        words = ["".join(rng.choice(syllables, size=rng.integers(1, 4))) for _ in range(rng.integers(3, 9))]
        out.append((" ".join(words).capitalize() + ".", language))
    return out


def write_csv(path: Path, rows: list[tuple], header: tuple = ("sentence", "language")) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def text_options(path: Path, **settings) -> DataOptions:
    text = settings.pop("text", {})
    return read_section(DataOptions, {"dataset": "csv", "path": str(path), "label": "language", "text": text,
                                      **settings}, "data")


def test_a_column_of_sentences_is_text_and_becomes_token_ids(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "s.csv", sentences(90))
    raw = csv_table(text_options(path, text={"length": 12}))
    assert raw.describe["columns"] == {"sentence": "text"} and raw.input_kind == InputKind.TOKENS
    pytest.importorskip("keras")
    data = load_dataset(text_options(path, text={"length": 12}))
    assert data.features["train"].shape[1:] == (12,) and data.spec.tokens == data.tokens > 10
    ids = data.features["train"]
    assert np.all(ids == np.round(ids)) and ids.min() >= 0 and ids.max() < data.tokens


def test_the_vocabulary_comes_from_the_training_split_only(tmp_path: Path) -> None:
    pytest.importorskip("keras")
    from trainers.datasets.base import apply_model

    rows = sentences(60)
    rows[0] = ("zyzzyva zyzzyva zyzzyva", "north")  # words no other row has
    rows[-1] = ("quokka quokka quokka", "north")
    seed = next(s for s in range(100) if 0 in split_indices(60, 0.15, 0.15, s)["train"]
                and 59 in split_indices(60, 0.15, 0.15, s)["test"])
    data = load_dataset(text_options(write_csv(tmp_path / "s.csv", rows), seed=seed))
    vocabulary = next(layer for layer in data.preprocessing.layers if hasattr(layer, "get_vocabulary"))
    assert "zyzzyva" in vocabulary.get_vocabulary(), "a word of a training row is a token"
    assert "quokka" not in vocabulary.get_vocabulary(), "a word of a test row alone is not"
    unknown = apply_model(data.preprocessing, {"col_sentence": np.array([["qwertyuiop kalo"], [""]], dtype=object)})
    assert unknown[0, 0] == 1, "a token outside the vocabulary reads as the unknown token (1)"
    assert not unknown[1].any(), "an empty text is all padding (0)"


def test_characters_and_their_ngrams_are_tokens_too(tmp_path: Path) -> None:
    pytest.importorskip("keras")
    path = write_csv(tmp_path / "s.csv", sentences(60))
    words = load_dataset(text_options(path))
    characters = load_dataset(text_options(path, text={"tokens": "characters", "ngrams": 3, "length": 100}))
    layer = next(la for la in characters.preprocessing.layers if hasattr(la, "get_vocabulary"))
    assert {"k", "k a", "k a l"} <= set(layer.get_vocabulary()), "an n-gram is its characters joined by spaces"
    assert characters.tokens != words.tokens


def test_a_file_that_is_not_utf8_is_refused_at_its_line(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "s.csv", sentences(10))
    lines = path.read_bytes().splitlines(keepends=True)
    lines[4] = lines[4].replace(b"a", b"\xe9", 1)  # Latin-1 e-acute
    path.write_bytes(b"".join(lines))
    with pytest.raises(DataError, match=r"s.csv: line 5 is not UTF-8 text \(byte 0xe9\); save the file as UTF-8"):
        csv_table(text_options(path))


def test_text_is_learned_from_alone_and_other_columns_can_be_ignored(tmp_path: Path) -> None:
    rows = [(i, sentence, language) for i, (sentence, language) in enumerate(sentences(30))]
    path = write_csv(tmp_path / "s.csv", rows, header=("id", "sentence", "language"))
    with pytest.raises(DataError, match=r"column 'sentence' is text, which is learned from alone; leave out the "
                                        r"other columns \['id'\] with data.columns = \{id = 'ignore'\}"):
        csv_table(text_options(path))
    raw = csv_table(text_options(path, columns={"id": "ignore"}))
    assert raw.describe["columns"] == {"sentence": "text"}
    with pytest.raises(ConfigError, match="data.columns"):
        text_options(path, columns={"id": "skip"})


def test_blocks_that_cannot_take_the_data_are_refused_before_a_run(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "s.csv", sentences(30))

    def config(blocks: list[str], data: dict) -> None:
        check_data(resolve_config({"space": {"kind": "tower", "blocks": blocks}, "data": data}))

    text = {"dataset": "csv", "path": str(path), "label": "language"}
    with pytest.raises(ConfigError, match=r"space.blocks: \['conv2d_32', 'resnet_16'\] are image blocks, which "
                                          r"cannot take token ids .*s.csv\); here blocks of the families embedding, "
                                          r"dense, sequence, network fit"):
        config(["embedding_32", "conv2d_32", "conv1d_16_k3", "resnet_16"], text)
    config(["embedding_32", "conv1d_16_k3", "gru_32", "global_avg_pool1d", "dense_32"], text)
    with pytest.raises(ConfigError, match=r"\['embedding_32'\] are embedding blocks, which cannot take flat "
                                          r"features \(mnist1d\)"):
        config(["embedding_32", "conv1d_16_k3"], {"dataset": "mnist1d"})


def test_a_tower_over_tokens_embeds_them_first() -> None:
    pytest.importorskip("keras")
    tokens = DataSpec((20,), "classification", 3, tokens=500)
    plain = build_tower(["conv1d_16_k3", "global_avg_pool1d"], {}, tokens)
    assert plain.get_layer("tokens_embedding").output.shape[1:] == (20, 64), "64 dimensions by default"
    chosen = build_tower(["embedding_16", "global_avg_pool1d"], {}, tokens)
    assert chosen.get_layer("b0_embedding_16_embedding").output.shape[1:] == (20, 16)
    assert chosen.count_params() == 500 * 16 + 16 * 3 + 3, "a bag of embedded tokens: fastText's shape"
    with pytest.raises(BuildError, match="block 1 .'embedding_16'. is a token embedding: it must come first"):
        build_tower(["conv1d_16_k3", "embedding_16"], {}, tokens)
    with pytest.raises(BuildError, match=r"block 0 \(embedding_16\) takes token ids .*, but gets sequences"):
        build_tower(["embedding_16", "dense_32"], {}, DataSpec((20, 3), "classification", 3))


def test_a_bag_of_tokens_averages_the_texts_tokens_and_leaves_padding_out(tmp_path: Path) -> None:
    keras = pytest.importorskip("keras")
    import trainers.layers  # noqa: F401 - what a loader of exported models imports

    model = build_tower(["bag_of_tokens_32"], {}, DataSpec((6,), "classification", 3, tokens=20))
    assert model.count_params() == 20 * 32 + 32 * 3 + 3, "fastText: token vectors, their mean, a linear head"
    mean = keras.Model(model.inputs, model.get_layer("b0_bag_of_tokens_32_mean").output)
    vectors = model.get_layer("b0_bag_of_tokens_32_embedding").get_weights()[0]
    ids = np.array([[3, 4, 4, 0, 0, 0], [0] * 6])  # a text of three tokens; the empty text
    got = mean.predict(ids, verbose=0)
    assert np.allclose(got[0], vectors[[3, 4, 4]].mean(axis=0), atol=1e-6)
    assert np.allclose(got[1], 0.0), "the empty text is the zero vector, not NaN"
    model.save(tmp_path / "bag.keras")
    assert np.allclose(keras.saving.load_model(tmp_path / "bag.keras").predict(ids, verbose=0),
                       model.predict(ids, verbose=0), atol=1e-6)
    specs = {name: lookup(name) for name in ("bag_of_tokens_32", "conv1d_16_k3", "dense_32")}
    assert "needs ordered input, but 'bag_of_tokens_32' before it loses the order" in str(
        problem(["bag_of_tokens_32", "conv1d_16_k3"], specs))
    assert problem(["bag_of_tokens_32", "dense_32"], specs) is None


LANGUAGES = """
[data]
dataset = "csv"
path = "sentences.csv"
label = "language"
[data.text]
length = 10
"""


def test_an_exported_text_model_takes_raw_strings(tmp_path: Path, engine_cli, engine_here) -> None:
    pytest.importorskip("keras")
    from engine.runs import state_at
    from trainers.export import load_model, predict, rebuild

    write_csv(tmp_path / "sentences.csv", sentences(240))
    config_path = write_toml(tmp_path / "languages.toml", three_trial_search(
        ["embedding_16", "conv1d_16_k3", "global_avg_pool1d", "dense_32"], LANGUAGES, epochs=8))
    engine_cli("run", "--run", "run", "--config", str(config_path), "--quiet", timeout=300)
    state = state_at(tmp_path / "run")
    data = load_dataset(load_config(config_path).data)
    tower = rebuild(tmp_path / "run", state.best_trial(), data, "flatten")
    engine_here("export", "--run", "run", "--out", "model")
    expected = tower.predict(data.features["test"], verbose=0)

    fresh = sentences(30, seed=7)
    test_rows = [(text, language) for text, language in zip(data.raw["test"]["col_sentence"][:, 0],
                                                             data.targets["test"], strict=True)]
    write_csv(tmp_path / "new.csv", [(text,) for text, _ in test_rows[:5] + fresh], header=("sentence",))
    rows = predict(load_model(tmp_path / "model"), tmp_path / "new.csv")
    for row, probabilities in zip(rows[:5], expected[:5], strict=True):
        assert np.allclose(list(row["probabilities"].values()), probabilities, atol=1e-4)
    right = sum(row["class"] == language for row, (_, language) in zip(rows[5:], fresh, strict=True))
    assert right >= 24, f"made-up languages this far apart are told apart ({right} of 30)"
    lines = engine_here("predict", "--model", "model", "--input", str(tmp_path / "new.csv")).stdout.splitlines()
    assert [line for line in lines] == [row["class"] for row in rows]
