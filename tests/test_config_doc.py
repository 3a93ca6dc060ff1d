"""The configuration's documentation comes from its schema: `engine config --explain` and the README's table."""

from __future__ import annotations

import pytest
from support import ROOT

from engine.config_doc import entries, explain, markdown_table
from engine.options import ConfigError

START = "<!-- generated from the schema by engine/config_doc.py: tests/test_config_doc.py fails when it differs -->\n"
END = "\n<!-- end of the generated table -->"


def test_the_readme_table_is_the_schema() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index(START) + len(START): readme.index(END)]
    assert table == markdown_table(), "regenerate the README's table from engine.config_doc.markdown_table()"


def test_every_key_is_explained_once() -> None:
    rows = entries()
    keys = [row.key for row in rows]
    assert len(keys) == len(set(keys)) and all(row.meaning and row.allowed for row in rows)
    assert {"search.beam.k", "space.kind", "space.hparams.dropout", "ensemble.replicas", "engine.lease_timeout"} \
        <= set(keys)


def test_explain_shows_a_key_or_a_table_and_names_near_keys_for_a_typo(engine_cli) -> None:
    assert explain("search.beam.k").splitlines() == [
        "search.beam.k = 8  (an integer, above 0)", "  beam width: parents are drawn from the top-k completed trials"]
    table = engine_cli("config", "--explain", "search.mutations").stdout
    assert [line.split(" = ")[0] for line in table.splitlines() if not line.startswith(" ")] == [
        "search.mutations.add", "search.mutations.replace", "search.mutations.remove", "search.mutations.hparam"]
    with pytest.raises(ConfigError, match="did you mean search.beam.k"):
        explain("search.beam.kk")
    assert "every key" in engine_cli("config", "--help").stdout
