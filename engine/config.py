"""Search configuration: TOML in, one frozen, fully resolved dict out.

Every key is declared in a schema with its default, type and help. Unknown keys and impossible
values are refused with the key named (and the file, when there is one). The resolved dict is what
``SearchStarted`` stores, so the log alone rebuilds the run.

Example::

    >>> config = load_config("examples/nb201.toml", overrides=["search.trials=50"])
    >>> config["search"]["trials"]
    50
"""

from __future__ import annotations

import copy
import difflib
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.metrics import METRICS

Check = Callable[[Any], str | None]


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key (and the file)."""


@dataclass(frozen=True)
class Option:
    """One configuration key: its default, accepted types, allowed choices and help text."""

    default: Any
    types: tuple[type, ...]
    help: str
    choices: tuple[Any, ...] | None = None
    check: Check | None = None

    def validate(self, key: str, value: Any) -> Any:
        if isinstance(value, bool) and bool not in self.types:
            raise ConfigError(f"{key} must be {_type_names(self.types)}, not a boolean")
        if not isinstance(value, self.types):
            raise ConfigError(f"{key} must be {_type_names(self.types)}, not {type(value).__name__} {value!r}")
        if float in self.types and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{key} must be one of {list(self.choices)}, not {value!r}")
        if self.check is not None:
            problem = self.check(value)
            if problem:
                raise ConfigError(f"{key}{'' if problem.startswith('[') else ' '}{problem}")
        return copy.deepcopy(value)


def _type_names(types: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def positive(value: float) -> str | None:
    return None if value > 0 else f"must be greater than 0, not {value}"


def non_negative(value: float) -> str | None:
    return None if value >= 0 else f"must be 0 or more, not {value}"


def probability(value: float) -> str | None:
    return None if 0 <= value <= 1 else f"must be between 0 and 1, not {value}"


# A schema is a dict of Option or nested schema dicts; "space" is filled in by the chosen space kind.
Schema = dict[str, Any]

SEARCH_SCHEMA: Schema = {
    "algorithm": Option("beam", (str,), "beam (default), random or evolution", ("beam", "random", "evolution")),
    "trials": Option(100, (int,), "trial budget: candidates proposed and finished", check=positive),
    "minutes": Option(0.0, (int, float), "wall-clock budget: no new candidate after this many minutes since the "
                      "run began (0: none); candidates in flight still finish", check=non_negative),
    "seed": Option(0, (int,), "run seed; every proposal's rng derives from it and the proposal's position"),
    "metric": Option("", (str,), "metric the search optimises (default: the space's own)"),
    "mode": Option("", (str,), "max or min (default: the space's own)", ("", "max", "min")),
    "tie_break": Option("val_loss", (str,), "which of two trials with the same score ranks higher: val_loss (the "
                        "lower validation loss; a small validation split ties often on accuracy) or first (the "
                        "earlier trial)", ("val_loss", "first")),
    "beam": {
        "k": Option(8, (int,), "beam width: parents are drawn from the top-k completed trials", check=positive),
        "initial": Option(6, (int,), "random candidates proposed before the beam starts mutating",
                          check=non_negative),
        "explore": Option(0.0, (int, float), "share of the proposals after the initial ones that are fresh random "
                          "members of the whole space rather than mutations, so one lineage cannot fill the beam",
                          check=probability),
        "explore_draws": Option(32, (int,), "random members an exploring proposal draws; with screen = gp the "
                                "surrogate keeps one, as explore_pick says (1: a plain random draw)",
                                check=positive),
        "explore_pick": Option("thompson", (str,), "which draw an exploring proposal keeps: thompson (the best "
                               "under one sample of the surrogate's posterior, so every family keeps a chance) or "
                               "ei (the highest expected improvement, which can collapse onto one family)",
                               ("thompson", "ei")),
        "screen": Option("gp", (str,), "how to choose among the beam's mutations: gp (a Gaussian-process "
                         "surrogate ranks them by expected improvement) or none (uniform)", ("gp", "none")),
        "candidates": Option(256, (int,), "most mutations the surrogate ranks per proposal", check=positive),
        "history": Option(256, (int,), "most completed trials the surrogate is fitted on", check=positive),
        "depth_start": Option(2, (int,), "allowed tower depth at the start", check=positive),
        "grow_every": Option(10, (int,), "completed trials per +1 of allowed depth", check=positive),
    },
    "evolution": {
        "population": Option(10, (int,), "aging-evolution population (the last N completed trials)",
                             check=positive),
        "sample": Option(3, (int,), "tournament size drawn from the population", check=positive),
    },
    "mutations": {
        "add": Option(0.3, (int, float), "weight of the add-a-block mutation", check=non_negative),
        "replace": Option(0.4, (int, float), "weight of the replace-a-block mutation", check=non_negative),
        "remove": Option(0.1, (int, float), "weight of the remove-a-block mutation", check=non_negative),
        "hparam": Option(0.2, (int, float), "weight of the change-a-hyperparameter mutation",
                         check=non_negative),
    },
}

EVALUATOR_SCHEMA: Schema = {
    "kind": Option("auto", (str,), "how trainers evaluate a candidate: keras (real training), table "
                   "(NAS-Bench-201 look-up) or synthetic (a cheap stand-in for training); auto: table for "
                   "nb201, keras for a tower with a [data] table, synthetic without one",
                   ("auto", "keras", "table", "synthetic")),
    "delay": Option(0.0, (int, float), "seconds a synthetic or table evaluation sleeps (demos, crash tests)",
                    check=non_negative),
}

DATASETS = ("mnist1d", "digits", "diabetes", "csv", "npz", "images")
NEEDS_PATH = ("csv", "npz", "images")


def fraction(value: float) -> str | None:
    return None if 0 <= value < 0.5 else f"must be at least 0 and below 0.5, not {value}"


def _check_size(value: list) -> str | None:
    if value and (len(value) != 2 or not all(isinstance(v, int) and v > 0 for v in value)):
        return f"must be [height, width] in pixels, not {value}"
    return None


def _check_columns(value: dict) -> str | None:
    bad = {k: v for k, v in value.items() if v not in ("numeric", "categorical")}
    return f"values must be 'numeric' or 'categorical', not {bad}" if bad else None


DATA_SCHEMA: Schema = {
    "dataset": Option("mnist1d", (str,), "mnist1d, digits, diabetes (built in), csv, npz or images", DATASETS),
    "path": Option("", (str,), "the file (csv, npz) or folder (images); relative to the config file"),
    "label": Option("", (str,), "the label column of a csv file"),
    "task": Option("auto", (str,), "classification, regression, or auto (guessed from the labels)",
                   ("auto", "classification", "regression")),
    "validation": Option(0.15, (int, float), "share of the examples the search is scored on", check=fraction),
    "test": Option(0.15, (int, float), "share held out for `engine evaluate` (mnist1d has its own)",
                   check=fraction),
    "seed": Option(0, (int,), "seed of the split (and of mnist1d's generator)"),
    "samples": Option(5000, (int,), "examples mnist1d generates (80% train, 20% test)", check=positive),
    "missing": Option("impute", (str,), "csv missing values: impute (training mean / unknown category) or refuse",
                      ("impute", "refuse")),
    "image_size": Option([], (list,), "[height, width] images are resized to (default: the first image's)",
                         check=_check_size),
    "columns": Option({}, (dict,), "csv column types, e.g. {zip = 'categorical'} (default: guessed)",
                      check=_check_columns),
}

TRAINING_SCHEMA: Schema = {
    "epochs": Option(20, (int,), "most epochs a candidate trains for", check=positive),
    "patience": Option(5, (int,), "epochs without validation improvement before stopping (0: never early)",
                       check=non_negative),
    "threads": Option(1, (int,), "CPU threads each trainer's TensorFlow uses", check=positive),
    "tensorboard": Option("", (str,), "folder for per-trial TensorBoard logs ('' = none)"),
}

SHARING_SCHEMA: Schema = {
    "mode": Option("off", (str,), "weight sharing: off, parent (a mutated child starts from its parent's weights "
                   "where its layers match) or average (from the average over the best completed trials that "
                   "share a layer)", ("off", "parent", "average")),
    "weighting": Option("uniform", (str,), "how average mode weighs its sources: uniform, or loss (lower "
                        "validation loss, more weight)", ("uniform", "loss")),
    "sources": Option(4, (int,), "most completed trials average mode draws on (the best first)", check=positive),
}

DISTILLATION_SCHEMA: Schema = {
    "teacher": Option("none", (str,), "knowledge distillation from none, the best completed trial (best) or the "
                      "current best ensemble (ensemble; the best tower while no ensemble beats it)",
                      ("none", "best", "ensemble")),
    "loss": Option("soft", (str,), "soft: cross-entropy with the teacher's temperature-softened probabilities; "
                   "logits: mean squared error to the teacher's logits", ("soft", "logits")),
    "temperature": Option(4.0, (int, float), "softening temperature of the soft loss", check=positive),
    "weight": Option(0.5, (int, float), "share of the loss given to the teacher term", check=probability),
    "adaptive": Option(False, (bool,), "ramp the teacher's weight up with the number of completed trials"),
    "ramp": Option(20, (int,), "completed trials until an adaptive weight is fully on", check=positive),
}

ENSEMBLE_SCHEMA: Schema = {
    "strategy": Option("none", (str,), "none; adaptive (after each good trial, try adding it to the best "
                       "ensemble; keep it only if the ensemble improves); intermixed (every n-th proposal is an "
                       "ensemble step instead of a new architecture)", ("none", "adaptive", "intermixed")),
    "combiner": Option("average", (str,), "average of member outputs, or weighted (weights learned on half of "
                       "the validation split and scored on the other half, then swapped)", ("average", "weighted")),
    "width": Option(5, (int,), "most members in an ensemble", check=positive),
    "criterion": Option("val_loss", (str,), "what an ensemble must beat every tower alone on to be kept: val_loss "
                        "(the validation loss, a proper score that does not saturate like accuracy on a small "
                        "validation split) or score (the search metric, ties broken by validation loss)",
                        ("val_loss", "score")),
    "every": Option(5, (int,), "intermixed: every n-th proposal is an ensemble step", check=positive),
    "replicas": Option(0, (int,), "times each tower the ensemble is built from (the tower it grows from, or "
                       "the best ensemble's members) is trained again with another seed and fresh weights, "
                       "so the ensemble can average independent mistakes (deep ensembles)", check=non_negative),
    "replica_wait": Option(6, (int,), "towers that must complete after a tower before it is replicated, so a "
                           "lucky early leader is not", check=non_negative),
    "start": Option("criterion", (str,), "the tower an adaptive ensemble grows from (and replicas retrain) while "
                    "no ensemble beats every tower: criterion (the tower an ensemble must beat, by "
                    "ensemble.criterion) or leader (the search's best tower, as runs before config v7 did)",
                    ("criterion", "leader")),
}

ENGINE_SCHEMA: Schema = {
    "lease_timeout": Option(30.0, (int, float), "seconds without a heartbeat before a lease is lost",
                            check=positive),
    "heartbeat": Option(2.0, (int, float), "seconds between trainer heartbeats", check=positive),
    "max_losses": Option(3, (int,), "leases a candidate may lose before it fails", check=positive),
}


#: The search `engine run` makes with no arguments (the same as examples/mnist1d.toml).
DEFAULT_SEARCH: dict[str, Any] = {
    "search": {"algorithm": "beam", "trials": 40, "seed": 0,
               "beam": {"k": 6, "initial": 6, "depth_start": 6, "explore": 0.5}},
    "space": {
        "kind": "tower",
        "blocks": ["conv1d_16_k3", "conv1d_32_k3", "conv1d_32_k5", "conv1d_64_k3", "conv1d_64_k5",
                   "residual_conv1d_32", "residual_conv1d_64", "maxpool1d", "avgpool1d", "gru_32",
                   "dense_32", "dense_64", "dense_128"],
        "min_depth": 1, "max_depth": 6,
        "hparams": {"learning_rate": [0.001, 0.003, 0.01], "dropout": [0.0, 0.1, 0.25],
                    "batch_size": [64, 128], "optimizer": ["adam"]},
    },
    "data": {"dataset": "mnist1d"},
    "training": {"epochs": 30, "patience": 6, "threads": 1},
}


def _space_schemas() -> dict[str, Schema]:
    from engine.spaces import SPACES

    return {kind: {"kind": Option(kind, (str,), "search space"), **cls.options} for kind, cls in SPACES.items()}


def _resolve(schema: Schema, given: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    if not isinstance(given, Mapping):
        raise ConfigError(f"[{prefix}] must be a table, not {type(given).__name__}")
    unknown = [k for k in given if k not in schema]
    if unknown:
        key = unknown[0]
        hint = difflib.get_close_matches(key, list(schema), n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(
            f"unknown key {_join(prefix, key)!r}{suggestion}; known keys in [{prefix}]: {sorted(schema)}"
        )
    resolved: dict[str, Any] = {}
    for key, spec in schema.items():
        path = _join(prefix, key)
        if isinstance(spec, Option):
            resolved[key] = spec.validate(path, given[key]) if key in given else copy.deepcopy(spec.default)
        else:
            resolved[key] = _resolve(spec, given.get(key, {}), path)
    return resolved


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def resolve_config(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Check a raw config dict against the schema and fill in every default.

    Raises :class:`ConfigError` naming the first bad key.
    """
    sections = {"search", "space", "evaluator", "engine", "data", "training", "sharing", "distillation", "ensemble"}
    unknown = [k for k in raw if k not in sections]
    if unknown:
        hint = difflib.get_close_matches(unknown[0], sections, n=1)
        suggestion = f" (did you mean [{hint[0]}]?)" if hint else ""
        raise ConfigError(f"unknown section [{unknown[0]}]{suggestion}; sections are {sorted(sections)}")
    space_raw = raw.get("space")
    if not isinstance(space_raw, Mapping) or "kind" not in space_raw:
        raise ConfigError("space.kind is required: one of " + str(sorted(_space_schemas())))
    schemas = _space_schemas()
    kind = space_raw["kind"]
    if kind not in schemas:
        raise ConfigError(f"space.kind must be one of {sorted(schemas)}, not {kind!r}")
    config = {
        "search": _resolve(SEARCH_SCHEMA, raw.get("search", {}), "search"),
        "space": _resolve(schemas[kind], space_raw, "space"),
        "evaluator": _resolve(EVALUATOR_SCHEMA, raw.get("evaluator", {}), "evaluator"),
        "engine": _resolve(ENGINE_SCHEMA, raw.get("engine", {}), "engine"),
        "data": _resolve(DATA_SCHEMA, raw.get("data", {}), "data"),
        "training": _resolve(TRAINING_SCHEMA, raw.get("training", {}), "training"),
        "sharing": _resolve(SHARING_SCHEMA, raw.get("sharing", {}), "sharing"),
        "distillation": _resolve(DISTILLATION_SCHEMA, raw.get("distillation", {}), "distillation"),
        "ensemble": _resolve(ENSEMBLE_SCHEMA, raw.get("ensemble", {}), "ensemble"),
    }
    from engine.spaces import make_space

    space = make_space(config["space"])  # the space checks its own cross-key rules (depth range, blocks)
    search = config["search"]
    metric, mode = space.default_metric, space.default_mode
    if config["evaluator"]["kind"] == "auto":
        with_data = space.kind == "tower" and "data" in raw
        config["evaluator"]["kind"] = "keras" if with_data else space.default_evaluator
    if config["evaluator"]["kind"] == "keras":
        if space.kind != "tower":
            raise ConfigError(f"evaluator.kind = 'keras' trains towers; space.kind is {space.kind!r}")
        _check_data(config["data"])
        if config["data"]["task"] == "regression":
            metric, mode = "val_mae", "min"
    search["metric"] = search["metric"] or metric
    search["mode"] = search["mode"] or mode
    reported = METRICS[config["evaluator"]["kind"]]
    if search["metric"] not in reported:
        raise ConfigError(f"search.metric = {search['metric']!r} is not a metric {config['evaluator']['kind']!r} "
                          f"trainers report; choose one of {sorted(reported)}")
    if config["engine"]["heartbeat"] >= config["engine"]["lease_timeout"]:
        raise ConfigError(
            f"engine.heartbeat ({config['engine']['heartbeat']}) must be shorter than "
            f"engine.lease_timeout ({config['engine']['lease_timeout']})"
        )
    uses_keras = config["evaluator"]["kind"] == "keras"
    for section, key, off in (("sharing", "mode", "off"), ("distillation", "teacher", "none"),
                              ("ensemble", "strategy", "none")):
        if config[section][key] != off and not uses_keras:
            raise ConfigError(f"{section}.{key} = {config[section][key]!r} needs trained networks "
                              f"(evaluator.kind = 'keras'), not {config['evaluator']['kind']!r}")
    if config["ensemble"]["replicas"] and config["ensemble"]["strategy"] == "none":
        raise ConfigError("ensemble.replicas trains towers again for an ensemble: set ensemble.strategy")
    if config["distillation"]["teacher"] == "ensemble" and config["ensemble"]["strategy"] == "none":
        raise ConfigError("distillation.teacher = 'ensemble' needs ensembles: set ensemble.strategy")
    if config["distillation"]["teacher"] != "none" and config["data"]["task"] != "classification":
        raise ConfigError(f"distillation.teacher = {config['distillation']['teacher']!r} needs a classification "
                          f"task (a teacher's class predictions); data.task is {config['data']['task']!r}")
    if config["ensemble"]["strategy"] != "none" and search["metric"] not in ENSEMBLE_METRICS:
        raise ConfigError(f"ensemble.strategy = {config['ensemble']['strategy']!r} scores ensembles by "
                          f"{sorted(ENSEMBLE_METRICS)}; search.metric is {search['metric']!r}")
    if sum(search["mutations"].values()) <= 0:
        raise ConfigError("search.mutations: at least one mutation weight must be greater than 0")
    return config


ENSEMBLE_METRICS = frozenset({"val_accuracy", "val_loss", "val_mae"})  # what an ensemble step reports


def _check_data(data: dict[str, Any]) -> None:
    """Check the data a Keras search needs is there, and freeze its task (auto is resolved here)."""
    from trainers.datasets import DataError, check_data

    if data["dataset"] in NEEDS_PATH:
        if not data["path"]:
            raise ConfigError(f"data.path is required for data.dataset = {data['dataset']!r}")
        if not Path(data["path"]).exists():
            raise ConfigError(f"data.path: {data['path']} does not exist")
    if data["dataset"] == "csv" and not data["label"]:
        raise ConfigError("data.label is required for a csv file: the name of the label column")
    try:
        data["task"] = check_data(data)
    except DataError as exc:
        raise ConfigError(f"data: {exc}") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"search.beam.k=4"`` -> (["search", "beam", "k"], 4). Values are read as TOML, else as text."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return key.split("."), parsed


def apply_overrides(config: Mapping[str, Any], overrides: Iterable[str] | Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a (raw or resolved) config with dotted-key overrides applied.

    ``overrides`` is either ``["a.b=1", ...]`` or ``{"a.b": 1, ...}``. The result is not resolved.
    """
    result = copy.deepcopy(dict(config))
    items = overrides.items() if isinstance(overrides, Mapping) else (
        (".".join(path), value) for path, value in map(parse_override, overrides)
    )
    for dotted, value in items:
        path = dotted.split(".")
        node = result
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {dotted!r}: {part!r} is not a table")
            node = child
        node[path[-1]] = value
    return result


def overrides_dict(overrides: Iterable[str]) -> dict[str, Any]:
    """``["search.seed=3"]`` -> ``{"search.seed": 3}``, the form stored in events."""
    return {".".join(path): value for path, value in map(parse_override, overrides)}


def read_toml(path: Path | str) -> dict[str, Any]:
    path = Path(path)
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def load_config(path: Path | str, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Read, override and resolve a TOML search config; errors name the file and the key."""
    raw = apply_overrides(read_toml(path), list(overrides))
    # Paths in a config are relative to the config file, so it works from any directory.
    base = Path(path).parent
    data, space = raw.get("data"), raw.get("space")
    if isinstance(data, dict) and isinstance(data.get("path"), str) and data["path"]:
        data["path"] = str((base / data["path"]).resolve())
    if isinstance(space, dict) and isinstance(space.get("block_paths"), list):
        space["block_paths"] = [str((base / p).resolve()) if isinstance(p, str) else p for p in space["block_paths"]]
    try:
        return resolve_config(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
