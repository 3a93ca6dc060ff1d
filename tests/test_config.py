"""Search configs: defaults filled in, bad input refused with the key named and nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import write_toml

from engine.config import load_config, resolve_config
from engine.options import ConfigError
from engine.runs import create_run
from engine.spaces import make_space

GOOD = """
[search]
trials = 30
[space]
kind = "tower"
blocks = ["dense_64", "conv1d_32_k3"]
max_depth = 3
"""


def test_defaults_are_filled_in_and_the_space_sets_the_metric(tmp_path: Path) -> None:
    config = load_config(write_toml(tmp_path / "c.toml", GOOD))
    assert config.search.algorithm == "beam"
    assert config.search.metric == "val_accuracy" and config.search.mode == "max"
    assert config.space.min_depth == 1
    assert config.evaluator.kind == "synthetic"
    assert resolve_config(config) == config  # resolving is idempotent: the log's config re-resolves to itself
    assert resolve_config(config.to_dict()) == config  # and so does the dict the log stores


def test_overrides_are_read_as_toml_values(tmp_path: Path) -> None:
    config = load_config(write_toml(tmp_path / "c.toml", GOOD), ["search.seed=7", "search.algorithm=random",
                                                                  "space.hparams.dropout=[0.0, 0.5]"])
    assert config.search.seed == 7
    assert config.search.algorithm == "random"
    assert config.space.hparams.dropout == (0.0, 0.5)


@pytest.mark.parametrize(("text", "named"), [
    ("[search]\nalgoritm = 'beam'\n[space]\nkind = 'nb201'", "search.algoritm"),
    ("[serach]\n[space]\nkind = 'nb201'", "[serach]"),
    ("[space]\nkind = 'nb201'\ndatset = 'cifar10'", "space.datset"),
    ("[space]\nkind = 'tower'\nmin_depth = 5\nmax_depth = 3", "space.min_depth"),
    ("[space]\nkind = 'tower'\nmax_depth = 0", "space.max_depth"),
    ("[search]\ntrials = 'many'\n[space]\nkind = 'nb201'", "search.trials"),
    ("[search]\nalgorithm = 'annealing'\n[space]\nkind = 'nb201'", "search.algorithm"),
    ("[space]\nkind = 'cells'", "space.kind"),
    ("[search]\nmetric = 'val_accuracy'\n[space]\nkind = 'nb201'", "search.metric"),
    ("[search]\ntrials = 5", "space.kind"),
    ("[engine]\nheartbeat = 40\n[space]\nkind = 'nb201'", "engine.heartbeat"),
    ("[space]\nkind = 'tower'\n[space.hparams]\ndropout = [0.1, 1.5]", "space.hparams.dropout"),
    ("[space]\nkind = 'tower'\n[space.hparams]\nmomentum = [0.9]", "space.hparams.momentum"),
    ("[search.beam]\nsweep = ['learning_rates']\n[space]\nkind = 'tower'", "search.beam.sweep[0] 'learning_rates'"),
    ("[search.beam]\nsweep = ['dropout', 'dropout']\n[space]\nkind = 'tower'", "search.beam.sweep 'dropout' twice"),
])
def test_bad_configs_name_the_key(tmp_path: Path, text: str, named: str) -> None:
    path = write_toml(tmp_path / "bad.toml", text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert str(path) in message
    for part in named.split(" "):
        assert part in message


def test_an_unknown_block_is_refused_when_the_space_is_made_naming_the_key(tmp_path: Path) -> None:
    """Resolving never looks blocks up; making the space does (create_run makes it before writing)."""
    config = load_config(write_toml(tmp_path / "c.toml", "[space]\nkind = 'tower'\nblocks = ['dense_64', 'conv9d']"))
    with pytest.raises(ConfigError, match=r"space\.blocks\[1\]: unknown block 'conv9d'"):
        make_space(config.space)
    with pytest.raises(ConfigError, match=r"space\.blocks\[1\]: unknown block 'conv9d'"):
        make_space({"kind": "tower", "blocks": ["dense_64", "conv9d"]})
    with pytest.raises(ConfigError, match=r"space\.blocks\[1\]: unknown block 'conv9d'"):
        create_run(tmp_path / "run", config, sync=False)
    assert not (tmp_path / "run").exists(), "nothing is written for a space that cannot be made"


def test_an_unknown_key_gets_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'algorithm'"):
        load_config(write_toml(tmp_path / "c.toml", "[search]\nalgoritm = 'beam'\n[space]\nkind = 'nb201'"))


def test_a_missing_or_broken_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write_toml(tmp_path / "broken.toml", "[search\n"))


@pytest.mark.parametrize(("command", "text", "named"), [
    ("run", "[space]\nkind = 'tower'\nblocks = ['dense_64', 'conv9d']", "space.blocks[1]: unknown block 'conv9d'"),
    ("serve", "[space]\nkind = 'tower'\nblocks = ['dense_64', 'conv9d']", "space.blocks[1]: unknown block 'conv9d'"),
    ("run", "[search]\nbeam_width = 4\n[space]\nkind = 'nb201'", "unknown key 'search.beam_width'"),
    ("serve", "[space]\nkind = 'tower'\nmin_depth = 4\nmax_depth = 2", "space.min_depth (4) is greater than"),
])
def test_the_cli_writes_nothing_for_a_bad_config(tmp_path: Path, engine_cli, command: str, text: str,
                                                 named: str) -> None:
    path = write_toml(tmp_path / "bad.toml", text)
    run = tmp_path / "runs" / "bad"
    result = engine_cli(command, "--run", str(run), "--config", str(path), check=False)
    assert result.returncode == 1
    assert named in result.stderr
    assert str(path) in result.stderr
    assert result.stderr.count("\n") == 1, "one clear error line, not a traceback"
    assert not run.exists() and not (tmp_path / "runs").exists()


def test_the_embedded_default_search_is_the_mnist1d_example() -> None:
    """`engine run` with no arguments runs what examples/mnist1d.toml says it runs."""
    from engine.config import DEFAULT_SEARCH

    example = load_config(Path(__file__).parent.parent / "examples" / "mnist1d.toml")
    assert resolve_config(DEFAULT_SEARCH) == resolve_config(example)
