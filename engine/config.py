"""Search configuration: one frozen, typed :class:`Config`, the schema it is read with, its version and the
migrations that lift configs older Lineage stored.

Every key is declared once, as a field of a section class with its default, help and check; the sections
nest as the TOML tables do. Reading a config (a TOML file, overrides, a stored dict) refuses unknown keys
and impossible values with the key named (and the file, when there is one), and fills in every default.

Resolving never reads the user's data. Where the labels of a file decide the task (``data.task = "auto"``
on a csv or npz file), the task, and the metric that follows from it, stay unknown until the data is
checked (``trainers.datasets.check_data``), which fixes them with :func:`with_task` before a run starts.

``SearchStarted``, ``SearchForked`` and ``SearchResumed`` store :meth:`Config.to_dict`, which carries the
config's :data:`CONFIG_VERSION`: a new option bumps that version and adds a migration here, never an event
version. :meth:`Config.from_dict` reads any stored config, migrating it first.

Example::

    >>> config = load_config("examples/nb201.toml", overrides=["search.trials=50"])
    >>> config.search.trials, config.search.beam.k, config.space.kind
    (50, 8, 'nb201')
    >>> Config.from_dict(config.to_dict()) == config
    True
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

from engine.metrics import ENSEMBLE_METRICS, METRICS

#: The version of the config :meth:`Config.to_dict` writes; configs of earlier versions are migrated on read.
CONFIG_VERSION = 9

Check = Callable[[Any], str | None]


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key (and the file)."""


_TYPES: dict[type, tuple[type, ...]] = {bool: (bool,), int: (int,), float: (int, float), str: (str,),
                                        tuple: (list, tuple), dict: (dict, MappingProxyType)}
_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list",
               dict: "a table"}


@dataclass(frozen=True)
class Option:
    """One configuration key: its default, help text, allowed choices and check. The types it accepts
    follow from the default (a float option takes integers too; a list is kept as a tuple)."""

    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    check: Check | None = None

    @property
    def types(self) -> tuple[type, ...]:
        return _TYPES[type(self.default)]

    def validate(self, key: str, value: Any) -> Any:
        """The value, frozen (lists become tuples, tables read-only), or ConfigError naming ``key``."""
        if isinstance(value, bool) and bool not in self.types:
            raise ConfigError(f"{key} must be {_type_names(self.types)}, not a boolean")
        if not isinstance(value, self.types):
            raise ConfigError(f"{key} must be {_type_names(self.types)}, not {type(value).__name__} {value!r}")
        if float in self.types and isinstance(value, int):
            value = float(value)
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{key} must be one of {list(self.choices)}, not {value!r}")
        if self.check is not None:
            problem = self.check(value)
            if problem:
                raise ConfigError(f"{key}{'' if problem.startswith('[') else ' '}{problem}")
        return _freeze(value)


def _type_names(types: tuple[type, ...]) -> str:
    return " or ".join(_TYPE_NAMES[t] for t in types if t in _TYPE_NAMES)


def _freeze(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    return value


def option(default: Any, help: str, choices: tuple[Any, ...] | None = None, check: Check | None = None) -> Any:
    """A dataclass field declaring one key of a section."""
    spec = Option(_freeze(default) if isinstance(default, list) else default, help, choices, check)
    return field(default_factory=lambda: _freeze(spec.default), metadata={"option": spec})


def section(cls: type) -> Any:
    """A dataclass field holding a nested table."""
    return field(default_factory=cls, metadata={"section": cls})


def positive(value: float) -> str | None:
    return None if value > 0 else f"must be greater than 0, not {value}"


def non_negative(value: float) -> str | None:
    return None if value >= 0 else f"must be 0 or more, not {value}"


def probability(value: float) -> str | None:
    return None if 0 <= value <= 1 else f"must be between 0 and 1, not {value}"


def fraction(value: float) -> str | None:
    return None if 0 <= value < 0.5 else f"must be at least 0 and below 0.5, not {value}"


# -- [search] --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BeamOptions:
    k: int = option(8, "beam width: parents are drawn from the top-k completed trials", check=positive)
    initial: int = option(6, "random candidates proposed before the beam starts mutating", check=non_negative)
    explore: float = option(0.0, "share of the proposals after the initial ones that are fresh random members of "
                            "the whole space rather than mutations, so one lineage cannot fill the beam",
                            check=probability)
    explore_draws: int = option(32, "random members an exploring proposal draws; with screen = gp the surrogate "
                                "keeps one, as explore_pick says (1: a plain random draw)", check=positive)
    explore_pick: str = option("thompson", "which draw an exploring proposal keeps: thompson (the best under one "
                               "sample of the surrogate's posterior, so every family keeps a chance) or ei (the "
                               "highest expected improvement, which can collapse onto one family)",
                               ("thompson", "ei"))
    screen: str = option("gp", "how to choose among the beam's mutations: gp (a Gaussian-process surrogate ranks "
                         "them by expected improvement) or none (uniform)", ("gp", "none"))
    candidates: int = option(256, "most mutations the surrogate ranks per proposal", check=positive)
    history: int = option(256, "most completed trials the surrogate is fitted on", check=positive)
    depth_start: int = option(2, "allowed tower depth at the start", check=positive)
    grow_every: int = option(10, "completed trials per +1 of allowed depth", check=positive)


@dataclass(frozen=True)
class EvolutionOptions:
    population: int = option(10, "aging-evolution population (the last N completed trials)", check=positive)
    sample: int = option(3, "tournament size drawn from the population", check=positive)


@dataclass(frozen=True)
class MutationWeights:
    add: float = option(0.3, "weight of the add-a-block mutation", check=non_negative)
    replace: float = option(0.4, "weight of the replace-a-block mutation", check=non_negative)
    remove: float = option(0.1, "weight of the remove-a-block mutation", check=non_negative)
    hparam: float = option(0.2, "weight of the change-a-hyperparameter mutation", check=non_negative)

    def weights(self) -> dict[str, float]:
        """Mutation kind -> weight, in a stable order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class AshaOptions:
    min_epochs: int = option(2, "the first rung: epochs a trial trains before it is first compared", check=positive)
    eta: int = option(3, "rungs at min_epochs * eta**k; a trial goes past a rung only in the top 1/eta of the trials "
                      "that reached it", check=lambda v: None if v >= 2 else f"must be 2 or more, not {v}")


@dataclass(frozen=True)
class MedianOptions:
    warmup: int = option(2, "epochs a trial trains before the rule judges it", check=non_negative)
    min_trials: int = option(5, "other trials that must have reached an epoch before a trial is compared there",
                             check=positive)


@dataclass(frozen=True)
class SearchOptions:
    algorithm: str = option("beam", "beam (default), random or evolution", ("beam", "random", "evolution"))
    trials: int = option(100, "trial budget: candidates proposed and finished", check=positive)
    minutes: float = option(0.0, "wall-clock budget: no new candidate after this many minutes since the run "
                            "began (0: none); search.at_deadline says what becomes of candidates in flight",
                            check=non_negative)
    at_deadline: str = option("stop", "candidates in flight when search.minutes runs out: stop (trainers that report "
                              "epochs stop each at the end of its current epoch, kept as a trial stopped there, so "
                              "the search ends about one epoch after its budget) or finish (they train to the end, "
                              "as runs before config v8 did)", ("stop", "finish"))
    seed: int = option(0, "run seed; every proposal's rng derives from it and the proposal's position")
    metric: str = option("", "metric the search optimises (default: the space's own)")
    mode: str = option("", "max or min (default: the space's own)", ("", "max", "min"))
    tie_break: str = option("val_loss", "which of two trials with the same score ranks higher: val_loss (the lower "
                            "validation loss; a small validation split ties often on accuracy) or first (the "
                            "earlier trial)", ("val_loss", "first"))
    stopping: str = option("none", "stop hopeless trials early, from their epoch reports (keras): none; asha "
                           "(asynchronous successive halving, search.asha); median (a trial whose best so far is "
                           "below the median of the others at the same epoch, search.median); asha-promote (every "
                           "trial pauses at each rung of search.asha with a checkpoint and yields its trainer; the "
                           "top 1/eta there are resumed later, on any trainer)",
                           ("none", "asha", "median", "asha-promote"))
    asha: AshaOptions = section(AshaOptions)
    median: MedianOptions = section(MedianOptions)
    beam: BeamOptions = section(BeamOptions)
    evolution: EvolutionOptions = section(EvolutionOptions)
    mutations: MutationWeights = section(MutationWeights)


# -- [space], one section class per kind -------------------------------------------------------------------

DEFAULT_BLOCKS = (
    "conv1d_16_k3", "conv1d_32_k3", "conv1d_32_k5", "conv1d_64_k3", "residual_conv1d_32", "maxpool1d",
    "gru_32", "dense_32", "dense_64", "dense_128", "residual_dense_64", "bottleneck_dense_128",
)


def _check_choices(kind: type) -> Check:
    def check(values: tuple) -> str | None:
        if not values:
            return "needs at least one value"
        if len(set(map(repr, values))) != len(values):
            return f"has repeated values {list(values)}"
        for value in values:
            if kind is str and not isinstance(value, str):
                return f"values must be strings, not {value!r}"
            if kind is not str and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
                return f"values must be numbers of 0 or more, not {value!r}"
        return None

    return check


def _check_dropout(values: tuple) -> str | None:
    problem = _check_choices(float)(values)
    too_high = [v for v in values if isinstance(v, int | float) and v >= 1]
    return problem or (f"values must be below 1, not {too_high[0]}" if too_high else None)


def _check_blocks(values: tuple) -> str | None:
    if not values:
        return "needs at least one block"
    for i, name in enumerate(values):
        if not isinstance(name, str):
            return f"[{i}] must be a block name, not {name!r}"
    if len(set(values)) != len(values):
        return f"lists a block twice: {sorted({n for n in values if values.count(n) > 1})}"
    return None


@dataclass(frozen=True)
class HparamChoices:
    learning_rate: tuple[float, ...] = option([0.0003, 0.001, 0.003], "learning rates to choose from",
                                              check=_check_choices(float))
    dropout: tuple[float, ...] = option([0.0, 0.1, 0.25], "dropout rates to choose from", check=_check_dropout)
    batch_size: tuple[int, ...] = option([32, 64, 128], "batch sizes to choose from", check=_check_choices(int))
    optimizer: tuple[str, ...] = option(["adam", "sgd"], "optimizers to choose from", check=_check_choices(str))

    def choices(self) -> dict[str, tuple]:
        """Hyperparameter name -> its choices, in a stable order (proposals draw them in this order)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class TowerOptions:
    """``space.kind = "tower"``: towers of registered blocks."""

    default_metric: ClassVar[str] = "val_accuracy"
    default_mode: ClassVar[str] = "max"
    default_evaluator: ClassVar[str] = "synthetic"

    kind: str = option("tower", "search space", ("tower",))
    block_paths: tuple[str, ...] = option([], "folders of user block modules (relative to the config file)")
    blocks: tuple[str, ...] = option(list(DEFAULT_BLOCKS), "block names the search may use; module:object names "
                                     "a user block", check=_check_blocks)
    min_depth: int = option(1, "fewest blocks in a tower", check=positive)
    max_depth: int = option(6, "most blocks in a tower", check=positive)
    draw: str = option("blocks", "how random towers are drawn: 'blocks' draws each block uniformly and then orders "
                       "them so the tower builds (convolutions before dense blocks); 'positions' draws left to "
                       "right among the blocks that fit, which rarely puts many order-keeping blocks in a tower",
                       ("blocks", "positions"))
    max_params: int = option(0, "most trainable parameters a candidate may have (0: no limit); trainers fail "
                             "larger ones without training them", check=non_negative)
    hparams: HparamChoices = section(HparamChoices)


NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NB201_DATASETS = ("cifar10", "cifar100", "imagenet")


def _check_ops(ops: tuple) -> str | None:
    unknown = [op for op in ops if op not in NB201_OPS]
    if unknown:
        return f"has unknown operation(s) {unknown}; operations are {list(NB201_OPS)}"
    if len(set(ops)) < 2:
        return "needs at least two distinct operations to search over"
    return None


@dataclass(frozen=True)
class NB201Options:
    """``space.kind = "nb201"``: the NAS-Bench-201 cell, looked up in its tables."""

    default_metric: ClassVar[str] = "val_acc"
    default_mode: ClassVar[str] = "max"
    default_evaluator: ClassVar[str] = "table"

    kind: str = option("nb201", "search space", ("nb201",))
    dataset: str = option("cifar10", "NAS-Bench-201 table to evaluate on", NB201_DATASETS)
    ops: tuple[str, ...] = option(list(NB201_OPS), "operations an edge may take", check=_check_ops)


SpaceOptions = TowerOptions | NB201Options
SPACE_KINDS: dict[str, type[TowerOptions] | type[NB201Options]] = {"tower": TowerOptions, "nb201": NB201Options}


# -- the other sections -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvaluatorOptions:
    kind: str = option("auto", "how trainers evaluate a candidate: keras (real training), table (NAS-Bench-201 "
                       "look-up) or synthetic (a cheap stand-in for training); auto: table for nb201, keras for "
                       "a tower with a [data] table, synthetic without one", ("auto", "keras", "table", "synthetic"))
    delay: float = option(0.0, "seconds a synthetic or table evaluation sleeps (demos, crash tests)",
                          check=non_negative)


DATASETS = ("mnist1d", "digits", "diabetes", "csv", "npz", "images", "idx")
NEEDS_PATH = ("csv", "npz", "images", "idx")
CLASSIFICATION, REGRESSION = "classification", "regression"
#: The datasets whose kind alone fixes the task; a csv or npz file's labels decide it.
FIXED_TASKS = {"mnist1d": CLASSIFICATION, "digits": CLASSIFICATION, "images": CLASSIFICATION,
               "idx": CLASSIFICATION, "diabetes": REGRESSION}


def _check_size(value: tuple) -> str | None:
    if value and (len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                             for v in value)):
        return f"must be [height, width] in pixels, not {list(value)}"
    return None


def _check_columns(value: Mapping) -> str | None:
    bad = {k: v for k, v in value.items() if v not in ("numeric", "categorical")}
    return f"values must be 'numeric' or 'categorical', not {bad}" if bad else None


@dataclass(frozen=True)
class DataOptions:
    dataset: str = option("mnist1d", "mnist1d, digits, diabetes (built in), csv, npz, images or idx (MNIST's "
                          "file format)", DATASETS)
    path: str = option("", "the file (csv, npz) or folder (images; idx: the four "
                       "train-/t10k- files, plain or .gz); relative to the config file")
    label: str = option("", "the label column of a csv file")
    task: str = option("auto", "classification, regression, or auto (guessed from the labels)",
                       ("auto", CLASSIFICATION, REGRESSION))
    validation: float = option(0.15, "share of the examples the search is scored on", check=fraction)
    test: float = option(0.15, "share held out for `engine evaluate` (mnist1d and idx have their own)",
                         check=fraction)
    seed: int = option(0, "seed of the split (and of mnist1d's generator and idx's subset)")
    samples: int = option(5000, "examples mnist1d generates (80% train, 20% test); idx: the most "
                         "examples read from the training files (a stratified subset; more than they hold: all)",
                         check=positive)
    missing: str = option("impute", "csv missing values: impute (training mean / unknown category) or refuse",
                          ("impute", "refuse"))
    image_size: tuple[int, ...] = option([], "[height, width] images are resized to (default: the first image's)",
                                         check=_check_size)
    columns: Mapping[str, str] = option({}, "csv column types, e.g. {zip = 'categorical'} (default: guessed)",
                                        check=_check_columns)


@dataclass(frozen=True)
class TrainingOptions:
    epochs: int = option(20, "most epochs a candidate trains for", check=positive)
    patience: int = option(5, "epochs without validation improvement before stopping (0: never early)",
                           check=non_negative)
    threads: int = option(1, "CPU threads each trainer's TensorFlow uses", check=positive)
    tensorboard: str = option("", "folder for per-trial TensorBoard logs ('' = none)")


@dataclass(frozen=True)
class SharingOptions:
    mode: str = option("off", "weight sharing: off, parent (a mutated child starts from its parent's weights where "
                       "its layers match) or average (from the average over the best completed trials that share "
                       "a layer)", ("off", "parent", "average"))
    weighting: str = option("uniform", "how average mode weighs its sources: uniform, or loss (lower validation "
                            "loss, more weight)", ("uniform", "loss"))
    sources: int = option(4, "most completed trials average mode draws on (the best first)", check=positive)


@dataclass(frozen=True)
class DistillationOptions:
    teacher: str = option("none", "knowledge distillation from none, the best completed trial (best) or the "
                          "current best ensemble (ensemble; the best tower while no ensemble beats it)",
                          ("none", "best", "ensemble"))
    loss: str = option("soft", "soft: cross-entropy with the teacher's temperature-softened probabilities; "
                       "logits: mean squared error to the teacher's logits", ("soft", "logits"))
    temperature: float = option(4.0, "softening temperature of the soft loss", check=positive)
    weight: float = option(0.5, "share of the loss given to the teacher term", check=probability)
    adaptive: bool = option(False, "ramp the teacher's weight up with the number of completed trials")
    ramp: int = option(20, "completed trials until an adaptive weight is fully on", check=positive)


@dataclass(frozen=True)
class EnsembleOptions:
    strategy: str = option("none", "none; adaptive (after each good trial, try adding it to the best ensemble; "
                           "keep it only if the ensemble improves); intermixed (every n-th proposal is an ensemble "
                           "step instead of a new architecture)", ("none", "adaptive", "intermixed"))
    combiner: str = option("average", "average of member outputs, or weighted (weights learned on half of the "
                           "validation split and scored on the other half, then swapped)", ("average", "weighted"))
    width: int = option(5, "most members in an ensemble", check=positive)
    criterion: str = option("val_loss", "what an ensemble must beat every tower alone on to be kept: val_loss (the "
                            "validation loss, a proper score that does not saturate like accuracy on a small "
                            "validation split) or score (the search metric, ties broken by validation loss)",
                            ("val_loss", "score"))
    every: int = option(5, "intermixed: every n-th proposal is an ensemble step", check=positive)
    replicas: int = option(0, "times each tower the ensemble is built from (the tower it grows from, or the best "
                           "ensemble's members) is trained again with another seed and fresh weights, so the "
                           "ensemble can average independent mistakes (deep ensembles)", check=non_negative)
    replica_wait: int = option(6, "towers that must complete after a tower before it is replicated, so a lucky "
                               "early leader is not", check=non_negative)
    start: str = option("criterion", "the tower an adaptive ensemble grows from (and replicas retrain) while no "
                        "ensemble beats every tower: criterion (the tower an ensemble must beat, by "
                        "ensemble.criterion) or leader (the search's best tower, as runs before config v7 did)",
                        ("criterion", "leader"))


@dataclass(frozen=True)
class EngineOptions:
    lease_timeout: float = option(30.0, "seconds without a heartbeat before a lease is lost", check=positive)
    heartbeat: float = option(2.0, "seconds between trainer heartbeats", check=positive)
    max_losses: int = option(3, "leases a candidate may lose before it fails", check=positive)


@dataclass(frozen=True)
class Config:
    """A whole, resolved search configuration; ``config.search.beam.k`` reads a key."""

    search: SearchOptions
    space: SpaceOptions
    evaluator: EvaluatorOptions
    engine: EngineOptions
    data: DataOptions
    training: TrainingOptions
    sharing: SharingOptions
    distillation: DistillationOptions
    ensemble: EnsembleOptions
    version: int = CONFIG_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The msgpack- and JSON-ready form events store, with the config's version."""
        return {f.name: as_dict(getattr(self, f.name)) if f.name != "version" else self.version
                for f in fields(self)}

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any]) -> Config:
        """A config :meth:`to_dict` wrote, of this version or an earlier one (migrated first)."""
        return _read_config(migrate(stored))

    def __deepcopy__(self, memo: dict) -> Config:
        return self  # immutable: a copy of a state shares its config

    def __reduce__(self) -> tuple:
        return Config.from_dict, (self.to_dict(),)

    @property
    def task_known(self) -> bool:
        """Whether the task (and with it the metric) is fixed; it is not for Keras on a file whose labels
        decide it until the data has been checked (:func:`with_task`)."""
        return self.evaluator.kind != "keras" or self.data.task != "auto"


SECTIONS: dict[str, type] = {"search": SearchOptions, "evaluator": EvaluatorOptions, "engine": EngineOptions,
                             "data": DataOptions, "training": TrainingOptions, "sharing": SharingOptions,
                             "distillation": DistillationOptions, "ensemble": EnsembleOptions}


def as_dict(options: Any) -> dict[str, Any]:
    """A section (any options dataclass) as plain msgpack- and JSON-ready data."""
    return {f.name: as_dict(value) if dataclasses.is_dataclass(value) else _thaw(value)
            for f in fields(options) for value in (getattr(options, f.name),)}


def options_of(cls: type, prefix: str) -> Iterator[tuple[str, Option]]:
    """Every key of a section class, dotted, with its :class:`Option`, in declaration order."""
    for f in fields(cls):
        if "section" in f.metadata:
            yield from options_of(f.metadata["section"], f"{prefix}.{f.name}")
        else:
            yield f"{prefix}.{f.name}", f.metadata["option"]


def choices_of(cls: type, key: str) -> tuple[Any, ...]:
    """The values a key of a section class allows (``choices_of(SharingOptions, "mode")``)."""
    return next(f.metadata["option"].choices for f in fields(cls) if f.name == key)


def read_section(cls: type, given: Any, prefix: str) -> Any:
    """A raw table read as section class ``cls`` (keys under ``prefix``): defaults filled, values checked."""
    if not isinstance(given, Mapping):
        raise ConfigError(f"[{prefix}] must be a table, not {type(given).__name__}")
    names = [f.name for f in fields(cls)]
    unknown = [k for k in given if k not in names]
    if unknown:
        key = unknown[0]
        hint = difflib.get_close_matches(str(key), names, n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(f"unknown key {f'{prefix}.{key}'!r}{suggestion}; known keys in [{prefix}]: {sorted(names)}")
    values = {}
    for f in fields(cls):
        path = f"{prefix}.{f.name}"
        if "section" in f.metadata:
            values[f.name] = read_section(f.metadata["section"], given.get(f.name, {}), path)
        elif f.name in given:
            values[f.name] = f.metadata["option"].validate(path, given[f.name])
    return cls(**values)


def _read_config(raw: Mapping[str, Any]) -> Config:
    """Every section read against the schema (unknown keys refused, defaults filled); no cross-key rules."""
    sections = ["search", "space", *list(SECTIONS)[1:]]
    unknown = [k for k in raw if k not in sections and k != "version"]
    if unknown:
        hint = difflib.get_close_matches(str(unknown[0]), sections, n=1)
        suggestion = f" (did you mean [{hint[0]}]?)" if hint else ""
        raise ConfigError(f"unknown section [{unknown[0]}]{suggestion}; sections are {sorted(sections)}")
    space = raw.get("space")
    if not isinstance(space, Mapping) or "kind" not in space:
        raise ConfigError("space.kind is required: one of " + str(sorted(SPACE_KINDS)))
    read = {name: read_section(cls, raw.get(name, {}), name) for name, cls in SECTIONS.items()}
    return Config(space=space_options(space), **read)


def space_options(raw: Mapping[str, Any]) -> SpaceOptions:
    """A raw ``[space]`` table read with its kind's defaults and checks."""
    kind = raw.get("kind") if isinstance(raw, Mapping) else None
    if kind not in SPACE_KINDS:
        raise ConfigError(f"space.kind must be one of {sorted(SPACE_KINDS)}, not {kind!r}")
    return read_section(SPACE_KINDS[kind], raw, "space")


# -- resolution: defaults that follow from other keys, and the rules between keys ----------------------------


def resolve_config(raw: Mapping[str, Any] | Config) -> Config:
    """Check a raw config (a TOML table, or a stored config with its ``version``) against the schema, fill
    in every default and apply the rules between keys. Never reads data.

    Raises :class:`ConfigError` naming the first bad key.
    """
    if isinstance(raw, Config):
        raw = raw.to_dict()
    if "version" in raw:
        raw = migrate(raw)
    config = _read_config(raw)
    space = config.space
    evaluator = config.evaluator.kind
    if evaluator == "auto":
        evaluator = "keras" if space.kind == "tower" and "data" in raw else space.default_evaluator
    data = config.data
    if evaluator == "keras" and data.task == "auto" and data.dataset in FIXED_TASKS:
        data = dataclasses.replace(data, task=FIXED_TASKS[data.dataset])
    metric, mode = space.default_metric, space.default_mode
    if evaluator == "keras":
        # The task decides the default metric; unknown until the data is checked, where the labels decide it.
        metric, mode = {CLASSIFICATION: ("val_accuracy", "max"), REGRESSION: ("val_mae", "min")}.get(
            data.task, ("", ""))
    search = dataclasses.replace(config.search, metric=config.search.metric or metric, mode=config.search.mode or mode)
    config = dataclasses.replace(config, search=search, data=data,
                                 evaluator=dataclasses.replace(config.evaluator, kind=evaluator))
    _check_rules(config)
    return config


def with_task(config: Config, task: str) -> Config:
    """The config once its data has been read: the task fixed (where it was auto) and what follows from it."""
    if config.data.task != "auto":
        return config
    return resolve_config(apply_overrides(config, {"data.task": task}))


def _check_rules(config: Config) -> None:
    search, evaluator, data, space = config.search, config.evaluator.kind, config.data, config.space
    if evaluator == "keras" and space.kind != "tower":
        raise ConfigError(f"evaluator.kind = 'keras' trains towers; space.kind is {space.kind!r}")
    if isinstance(space, TowerOptions) and space.min_depth > space.max_depth:
        raise ConfigError(f"space.min_depth ({space.min_depth}) is greater than space.max_depth "
                          f"({space.max_depth}): no tower can satisfy both")
    if evaluator == "keras":
        if data.dataset in NEEDS_PATH and not data.path:
            raise ConfigError(f"data.path is required for data.dataset = {data.dataset!r}")
        if data.dataset == "csv" and not data.label:
            raise ConfigError("data.label is required for a csv file: the name of the label column")
    reported = METRICS[evaluator]
    if search.metric and search.metric not in reported:
        raise ConfigError(f"search.metric = {search.metric!r} is not a metric {evaluator!r} trainers report; "
                          f"choose one of {sorted(reported)}")
    if config.engine.heartbeat >= config.engine.lease_timeout:
        raise ConfigError(f"engine.heartbeat ({config.engine.heartbeat}) must be shorter than "
                          f"engine.lease_timeout ({config.engine.lease_timeout})")
    for key, value, off in (("search.stopping", search.stopping, "none"), ("sharing.mode", config.sharing.mode, "off"),
                            ("distillation.teacher", config.distillation.teacher, "none"),
                            ("ensemble.strategy", config.ensemble.strategy, "none")):
        if value != off and evaluator != "keras":
            raise ConfigError(f"{key} = {value!r} needs trained networks (evaluator.kind = 'keras'), "
                              f"not {evaluator!r}")
    ensembles = config.ensemble.strategy != "none"
    if config.ensemble.replicas and not ensembles:
        raise ConfigError("ensemble.replicas trains towers again for an ensemble: set ensemble.strategy")
    if config.distillation.teacher == "ensemble" and not ensembles:
        raise ConfigError("distillation.teacher = 'ensemble' needs ensembles: set ensemble.strategy")
    if config.distillation.teacher != "none" and data.task not in ("auto", CLASSIFICATION):
        raise ConfigError(f"distillation.teacher = {config.distillation.teacher!r} needs a classification task "
                          f"(a teacher's class predictions); data.task is {data.task!r}")
    if ensembles and search.metric and search.metric not in ENSEMBLE_METRICS:
        raise ConfigError(f"ensemble.strategy = {config.ensemble.strategy!r} scores ensembles by "
                          f"{sorted(ENSEMBLE_METRICS)}; search.metric is {search.metric!r}")
    if sum(search.mutations.weights().values()) <= 0:
        raise ConfigError("search.mutations: at least one mutation weight must be greater than 0")


# -- versions -----------------------------------------------------------------------------------------------


def _legacy(table: Mapping[str, Any], path: tuple[str, ...], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``table`` with ``values`` filled in where the sub-table at ``path`` lacks them: options added
    since, at the values that keep the behaviour older runs had."""
    if not path:
        return {**values, **table}
    return {**table, path[0]: _legacy(table[path[0]], path[1:], values)}


# The sections v2 added, as v1 runs had them: nothing shared, no teacher, no ensembles. Written out rather
# than read from the defaults, so a v1 config migrates the same whatever the defaults become.
_V2_SECTIONS: dict[str, dict[str, Any]] = {
    "sharing": {"mode": "off", "weighting": "uniform", "sources": 4},
    "distillation": {"teacher": "none", "loss": "soft", "temperature": 4.0, "weight": 0.5, "adaptive": False,
                     "ramp": 20},
    "ensemble": {"strategy": "none", "combiner": "average", "width": 5, "criterion": "val_loss", "every": 5,
                 "replicas": 0, "replica_wait": 6, "start": "criterion"},
}


def _v1_to_v2(config: dict[str, Any]) -> dict[str, Any]:
    """v2 configs always hold [sharing], [distillation] and [ensemble]."""
    return {**config, **{name: dict(values) for name, values in _V2_SECTIONS.items() if name not in config}}


def _v2_to_v3(config: dict[str, Any]) -> dict[str, Any]:
    """v3 configs always hold search.tie_break and search.beam.explore(_draws)."""
    config = _legacy(config, ("search",), {"tie_break": "first"})
    return _legacy(config, ("search", "beam"), {"explore": 0.0, "explore_draws": 1})


def _v3_to_v4(config: dict[str, Any]) -> dict[str, Any]:
    """v4 configs always hold ensemble.criterion; before it, ensembles were compared by score."""
    return _legacy(config, ("ensemble",), {"criterion": "score"})


def _v4_to_v5(config: dict[str, Any]) -> dict[str, Any]:
    """v5 tower spaces always hold space.draw; before it, random towers were drawn left to right."""
    return _legacy(config, ("space",), {"draw": "positions"}) if config["space"]["kind"] == "tower" else config


def _v5_to_v6(config: dict[str, Any]) -> dict[str, Any]:
    """v6 configs always hold search.beam.explore_pick and ensemble.replicas; before them, exploring
    proposals kept the draw with the highest expected improvement, and no tower was trained twice."""
    config = _legacy(config, ("search", "beam"), {"explore_pick": "ei"})
    return _legacy(config, ("ensemble",), {"replicas": 0, "replica_wait": 6})


def _v6_to_v7(config: dict[str, Any]) -> dict[str, Any]:
    """v7 configs always hold ensemble.start; before it, ensembles grew from the search's best tower even
    where another tower had the lower validation loss they had to beat."""
    return _legacy(config, ("ensemble",), {"start": "leader"})


def _v7_to_v8(config: dict[str, Any]) -> dict[str, Any]:
    """v8 configs always hold search.at_deadline; before it, candidates in flight at the deadline trained on."""
    return _legacy(config, ("search",), {"at_deadline": "finish"})


def _v8_to_v9(config: dict[str, Any]) -> dict[str, Any]:
    """v9 configs always hold search.stopping and its tables; before them, no trial was stopped by a rule."""
    return _legacy(config, ("search",), {"stopping": "none", "asha": {"min_epochs": 2, "eta": 3},
                                         "median": {"warmup": 2, "min_trials": 5}})


#: ``MIGRATIONS[n]`` lifts a version-``n`` config to version ``n + 1``. Configs up to version 7 were stored
#: by events of the same version, which say so on read (engine/events.py).
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4, 4: _v4_to_v5, 5: _v5_to_v6, 6: _v6_to_v7, 7: _v7_to_v8, 8: _v8_to_v9,
}


def migrate(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A stored config lifted to :data:`CONFIG_VERSION` (``version`` key included)."""
    version = stored.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ConfigError(f"a stored config's version must be a whole number from 1, not {version!r}")
    if version > CONFIG_VERSION:
        raise ConfigError(f"config version {version} is newer than this Lineage knows ({CONFIG_VERSION}); "
                          "upgrade Lineage to read it")
    config = {key: value for key, value in stored.items() if key != "version"}
    for step in range(version, CONFIG_VERSION):
        config = MIGRATIONS[step](config)
    return {**config, "version": CONFIG_VERSION}


# -- reading TOML and overrides ---------------------------------------------------------------------------


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


def apply_overrides(config: Mapping[str, Any] | Config,
                    overrides: Iterable[str] | Mapping[str, Any]) -> dict[str, Any]:
    """A raw copy of a config (raw or resolved) with dotted-key overrides applied, to resolve again.

    ``overrides`` is either ``["a.b=1", ...]`` or ``{"a.b": 1, ...}``.
    """
    result = config.to_dict() if isinstance(config, Config) else _thaw(dict(config))
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


def load_config(path: Path | str, overrides: Iterable[str] = ()) -> Config:
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
