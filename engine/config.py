"""Search configuration: one frozen, typed :class:`Config` and the sections it is made of, read from TOML,
overrides or a stored dict, with the rules between keys.

Every key is declared once, as a field of a section class with its default, help and check
(``engine/options.py``; the ``[space]`` section, one class per kind, is ``engine/space_options.py``); the
sections nest as the TOML tables do. Reading a config (a TOML file, overrides, a stored dict) refuses unknown keys
and impossible values with the key named (and the file, when there is one), and fills in every default.

Resolving never reads the user's data. Where the labels of a file decide the task (``data.task = "auto"``
on a csv or npz file), the task, and the metric that follows from it, stay unknown until the data is
checked (``trainers.datasets.check_data``), which fixes them with :func:`with_task` before a run starts.

``SearchStarted``, ``SearchForked`` and ``SearchResumed`` store :meth:`Config.to_dict`, which carries the
config's version (``engine/config_versions.py``): a new option bumps that version and adds a migration there,
never an event version. :meth:`Config.from_dict` reads any stored config, migrating it first.

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from engine.config_versions import CONFIG_VERSION, migrate
from engine.data_options import CLASSIFICATION, FIXED_TASKS, NEEDS_PATH, REGRESSION, AudioOptions, DataOptions
from engine.metrics import ENSEMBLE_METRICS, METRICS
from engine.options import (
    ConfigError,
    as_dict,
    non_negative,
    option,
    positive,
    probability,
    read_section,
    section,
    thaw,
)
from engine.space_options import SPACE_KINDS, HparamChoices, SpaceOptions, TowerOptions, space_options

# -- [search] --------------------------------------------------------------------------------------------


def _check_sweep(names: tuple) -> str | None:
    known = [f.name for f in fields(HparamChoices)]
    for i, name in enumerate(names):
        if name not in known:
            return f"[{i}] must be one of {known}, not {name!r}"
    twice = sorted({name for name in names if names.count(name) > 1})
    return f"lists {twice[0]!r} twice" if twice else None


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
    niches: int = option(0, "families (towers that start with the same block) besides the best tower's that "
                         "exploring proposals keep mutating, each from its own best towers, so a family is judged "
                         "by its best member rather than by random draws stopped at the first rung; an exploring "
                         "proposal goes to one of them or founds a family (a child of the beam that starts with "
                         "another block), uniformly (0: exploring proposals are fresh random towers)",
                         check=non_negative)
    founding: str = option("fewest", "which family a founding proposal of niches starts: fewest (one of the families "
                           "with the fewest towers so far, uniformly, so every first block is tried from the beam "
                           "early; the surrogate picks the child within it) or screened (any family other than the "
                           "best tower's, the surrogate's pick, as before config v16)", ("fewest", "screened"))
    sweep: tuple[str, ...] = option(["learning_rate"], "hyperparameters whose every value is tried on each new best "
                                    "tower before anything else is proposed (the surrogate orders them), so a "
                                    "lineage cannot keep the value its first tower was drawn with ([]: none, as "
                                    "before config v19)", check=_check_sweep)
    screen: str = option("gp", "how to choose among the beam's mutations: gp (a Gaussian-process surrogate ranks "
                         "them by expected improvement) or none (uniform)", ("gp", "none"))
    cost: float = option(0.0, "how much a candidate's predicted cost (seconds per epoch, learned from the times "
                         "the trials reported) discounts its promise: expected improvement / seconds**cost; "
                         "0 ignores cost, 1 is expected improvement per second", check=non_negative)
    budget: str = option("learn", "how the surrogate treats space.max_params: learn (once a trainer described the "
                         "data, towers its blocks count over it are never proposed; for towers with a block that "
                         "cannot count its own, a model of the parameter counts trainers report, of failed towers "
                         "too, gives each its probability of fitting the budget, which weighs its promise) or "
                         "ignore (towers over it fail when built and count as poor results)", ("learn", "ignore"))
    size_model: str = option("blocks", "what the size model of budget = learn reads of a tower: blocks (how many "
                             "of each block and which follows which, so a tower one block deeper is predicted near "
                             "its parent's size) or positions (which block sits at each depth, as before config v14)",
                             ("blocks", "positions"))
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
    children: str = option("population", "how stopping = asha judges a mutated tower at a rung: population (in the "
                           "top 1/eta of all trials there, like any trial), parent (it also goes on while its value "
                           "there is within parent_margin of its parent's value at the same rung, so a good tower's "
                           "children are not stopped for the noise of early epochs) or beam (a child of one of the "
                           "search.beam.k best towers goes past the first rung whatever its value there, and later "
                           "rungs judge it like any trial)", ("population", "parent", "beam"))
    parent_margin: float = option(0.2, "with children = parent: how far below its parent's value at a rung a child "
                                  "may be and go on, as a fraction of the parent's value", check=non_negative)


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


# -- the other sections -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvaluatorOptions:
    kind: str = option("auto", "how trainers evaluate a candidate: keras (real training), table (NAS-Bench-201 "
                       "look-up) or synthetic (a cheap stand-in for training); auto: table for nb201, keras for "
                       "a tower with a [data] table, synthetic without one", ("auto", "keras", "table", "synthetic"))
    delay: float = option(0.0, "seconds a synthetic or table evaluation sleeps (demos, crash tests)",
                          check=non_negative)


@dataclass(frozen=True)
class TrainingOptions:
    epochs: int = option(20, "most epochs a candidate trains for", check=positive)
    patience: int = option(5, "epochs without validation improvement before stopping (0: never early)",
                           check=non_negative)
    schedule: str = option("constant", "learning rate over a candidate's epochs: constant (the trial's rate "
                           "throughout) or cosine (from the trial's rate down towards 0 at `training.epochs`)",
                           ("constant", "cosine"))
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
    top: bool = option(True, "adaptive: also try the average of the leaderboard's best `width` towers each time "
                       "they change, so later, better towers replace early members of a full ensemble")
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
        if data.dataset == "audio":
            _check_audio(data.audio)
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


def _check_audio(audio: AudioOptions) -> None:
    if audio.front_end == "mfcc" and audio.mfccs > audio.mels:
        raise ConfigError(f"data.audio.mfccs ({audio.mfccs}) must be at most data.audio.mels ({audio.mels})")
    frame = round(audio.sample_rate * audio.frame_ms / 1000)
    if frame < 2 or round(audio.sample_rate * audio.hop_ms / 1000) < 1:
        raise ConfigError(f"data.audio.frame_ms ({audio.frame_ms}) and hop_ms ({audio.hop_ms}) must each hold "
                          f"samples at {audio.sample_rate} Hz")
    if audio.sample_rate * audio.duration < frame:
        raise ConfigError(f"data.audio.duration ({audio.duration} s) is shorter than one frame "
                          f"(data.audio.frame_ms = {audio.frame_ms})")


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
    result = config.to_dict() if isinstance(config, Config) else thaw(dict(config))
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
