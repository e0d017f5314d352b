"""Command-line options, ini keys, environment variables and the ``finetune`` marker.

Each source becomes a *layer*: ``(where, {keyword: value})``, checked and converted by
:func:`pytest_finetune.recipe.convert_value`. Priority, lowest first: ini file <
environment < command line < marker < ``pytest_finetune_adjust_recipe`` hook.

Relative model and data paths are resolved against the ini file's folder (ini file),
the rootdir (marker, hook) or the directory pytest was started in (command line,
environment); a value that neither exists there nor can only be a path stays as
written, a Hub id.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from .baselines.classes import CLASS_SETTINGS
from .cache import ResultCache, cache_warning
from .calibration import check_seed_count
from .dropout import DROPOUT_MASKS
from .errors import FinetuneError
from .precision import PRECISIONS
from .recipe import convert_value, looks_like_path, parse_bool
from .stats import DEFAULT_RESAMPLES, MAX_RESAMPLES
from .tolerances import (
    DEFAULT_AUTO_FLOOR,
    DEFAULT_AUTO_K,
    FloorSetting,
    RelativeSetting,
    Setting,
    check_floors,
    check_relative,
    check_setting,
    parse_floors,
    parse_relative,
    parse_setting,
)
from .verdicts import DEFAULT_ALPHA

Layer = tuple[str, dict[str, Any]]

MARKER = "finetune"
SKIP_REASON = "fine-tuning tests need --finetune"
MARKER_HELP = (
    "finetune(tolerance=None, floor=None, relative=None, collapse_guard=None, **overrides): a fine-tuning test, "
    "run only with --finetune and compared with its baseline after its body. tolerance: a number, 'auto' (the "
    "spread a calibrated baseline measured over seeds) or {metric: either}, e.g. {'f1': 'auto'}. floor: "
    "{metric: worst value}, e.g. {'accuracy': 0.8}. relative: the largest drop as a share of the baseline's "
    "value, 0.05 or '5%' or {metric: either}. collapse_guard: the share of one predicted class that fails "
    "a run (default 0.95), or False. Other "
    "keyword arguments override its recipe: task, model, data, seed, trust_remote_code, a task of your own's "
    "text_columns, label_column, labels and metrics, or any "
    "transformers.TrainingArguments field (num_train_epochs, max_steps, learning_rate, ...)."
)
#: The marker keyword that sets the gate's tolerance rather than the recipe.
TOLERANCE_KEYWORD = "tolerance"
#: The marker keywords of the gate's other rules (see :class:`MarkerSettings`).
FLOOR_KEYWORD = "floor"
RELATIVE_KEYWORD = "relative"
COLLAPSE_KEYWORD = "collapse_guard"


@dataclasses.dataclass(frozen=True)
class Option:
    """One setting of the plugin, declared once: its command-line option, ini key and environment variable
    (each where it has one), their help, and what the plugin derives from it."""

    #: The command-line option (``--finetune-model``), and the keywords of ``parser.addoption`` beside its help.
    flag: str | None = None
    flag_help: str = ""
    flag_keywords: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: The ini key (``finetune_model``), its help, and its kind: ``str`` (text), ``"linelist"`` or ``"args"``
    #: (a list), or the Python type a native ``[tool.pytest]`` table may give one number or true/false in.
    ini: str | None = None
    ini_help: str = ""
    ini_kind: type | str = str
    #: How a native ``[tool.pytest]`` table writes a list or a scalar ini key (an example value).
    toml_example: str = ""
    #: The environment variable that sets it.
    env: str | None = None
    #: The recipe field that the option, ini key and environment variable set (a layer of their own).
    recipe_field: str | None = None
    #: Whether it changes what a fine-tune computes: the command that records a baseline repeats the option.
    changes_recipe: bool = False
    #: Whether the option's value is a path (see :func:`check_path_options`).
    path: bool = False


#: Every option, ini key and environment variable of the plugin, in the order ``pytest --help`` lists them.
OPTIONS = (
    Option(
        flag="--finetune",
        flag_help="run the tests marked finetune (skipped otherwise)",
        flag_keywords={"action": "store_true"},
    ),
    Option(
        flag="--finetune-model",
        flag_help="checkpoint for every recipe: a Hub id or a local folder (default: bert-base-uncased)",
        flag_keywords={"metavar": "ID_OR_PATH"},
        ini="finetune_model",
        ini_help="checkpoint for every recipe: a Hub id or a folder (relative to the ini file)",
        env="PYTEST_FINETUNE_MODEL",
        recipe_field="model",
        changes_recipe=True,
        path=True,
    ),
    Option(
        flag="--finetune-data",
        flag_help="data for every recipe: a Hub dataset id, a GLUE TSV folder or a folder of "
        "train/validation csv, json, jsonl or parquet files (default: the task's Hub dataset)",
        flag_keywords={"metavar": "ID_OR_PATH"},
        ini="finetune_data",
        ini_help="data for every recipe: a Hub dataset id or a folder (relative to the ini file)",
        env="PYTEST_FINETUNE_DATA",
        recipe_field="data",
        changes_recipe=True,
        path=True,
    ),
    Option(
        flag="--finetune-task",
        flag_help="task for every recipe (default: mrpc)",
        flag_keywords={"metavar": "TASK"},
        ini="finetune_task",
        ini_help="task for every recipe: a GLUE task, or the name of your own (default: mrpc)",
        recipe_field="task",
        changes_recipe=True,
    ),
    Option(
        ini="finetune_text_columns",
        ini_help="a task of your own: its one or two text columns, comma-separated (e.g. sentence)",
        recipe_field="text_columns",
        changes_recipe=True,
    ),
    Option(
        ini="finetune_label_column",
        ini_help="a task of your own: the column holding its labels (default: label)",
        recipe_field="label_column",
        changes_recipe=True,
    ),
    Option(
        ini="finetune_labels",
        ini_help="a task of your own: its class names in class id order (e.g. neg, pos), or regression "
        "(default: the class names its data holds, sorted)",
        recipe_field="labels",
        changes_recipe=True,
    ),
    Option(
        ini="finetune_metrics",
        ini_help="a task of your own: the metrics it computes and gates on, comma-separated (default: accuracy; "
        "pearson, spearmanr for a regression)",
        recipe_field="metrics",
        changes_recipe=True,
    ),
    Option(
        flag="--finetune-set",
        flag_help="set a recipe keyword for every recipe, e.g. --finetune-set max_steps=50 (repeatable)",
        flag_keywords={"action": "append", "default": [], "metavar": "KEY=VALUE"},
        ini="finetune_training_args",
        ini_help="recipe keywords for every recipe, one KEY=VALUE per line (e.g. num_train_epochs=1)",
        ini_kind="linelist",
        toml_example='["max_steps=50", "learning_rate=2e-5"]',
        changes_recipe=True,
    ),
    Option(
        flag="--finetune-tolerance",
        flag_help="allowed change of the gated metrics against their baselines: 0.02 for all, METRIC=0.02 for one, "
        "or auto / f1=auto: the spread over seeds that a baseline recorded with --finetune-calibrate measured "
        "(repeatable; default accuracy=0.01 f1=0.01)",
        flag_keywords={"action": "append", "default": [], "metavar": "TOLERANCE"},
        ini="finetune_tolerance",
        ini_help="allowed change of gated metrics: 0.02 for all, METRIC=0.02 for one, or auto / f1=auto: the spread "
        "over seeds that a baseline recorded with --finetune-calibrate measured (several allowed)",
        ini_kind="args",
        toml_example='["0.02"] or ["f1=0.015", "eval_loss=0.05"]',
    ),
    Option(
        flag="--finetune-floor",
        flag_help="the worst value a metric may take whatever its baseline says: a minimum for a score, a maximum "
        "for a loss, e.g. accuracy=0.8 (repeatable)",
        flag_keywords={"action": "append", "default": [], "metavar": "METRIC=VALUE"},
        ini="finetune_floor",
        ini_help="the worst value of a metric whatever its baseline says (a maximum for a loss): METRIC=VALUE "
        "(several allowed)",
        ini_kind="args",
        toml_example='["accuracy=0.8", "f1=0.85"]',
    ),
    Option(
        flag="--finetune-relative",
        flag_help="the largest drop of the gated metrics as a share of the baseline's value: 5%% or 0.05 for all, "
        "METRIC=5%% for one (repeatable)",
        flag_keywords={"action": "append", "default": [], "metavar": "SHARE"},
        ini="finetune_relative",
        ini_help="the largest drop of gated metrics as a share of the baseline's value: 5% or 0.05 for all, "
        "METRIC=5% for one (several allowed)",
        ini_kind="args",
        toml_example='["5%"] or ["accuracy=5%"]',
    ),
    Option(
        flag="--finetune-warn-only",
        flag_help="report regressions (tolerance, floor, relative threshold, collapsed model) as warnings and in the "
        "reports without failing the session; recipe changes under strict recipe mode, runs not comparable and "
        "usage errors still fail",
        flag_keywords={"action": "store_true"},
        ini="finetune_warn_only",
        ini_help="report regressions as warnings without failing the session (default false)",
        ini_kind=bool,
        toml_example="true",
    ),
    Option(
        ini="finetune_collapse_guard",
        ini_help="fail a classifier run whose predictions are this share or more one class while its labels are not "
        "(default 0.95); false turns the guard off",
        ini_kind=float,
        toml_example="0.95",
    ),
    Option(
        flag="--finetune-strict",
        flag_help="fail on any change beyond tolerance, improvements included",
        flag_keywords={"action": "store_true"},
    ),
    Option(
        flag="--finetune-strict-recipe",
        flag_help="fail a test whose recipe changed since its baseline even where quality held, until the baseline "
        "is recorded again (default: such a test passes with a note)",
        flag_keywords={"action": "store_true"},
        ini="finetune_strict_recipe",
        ini_help="fail a test whose recipe changed since its baseline even where quality held (default false)",
        ini_kind=bool,
        toml_example="true",
    ),
    Option(
        flag="--finetune-no-cache",
        flag_help="neither read nor write the result cache: fine-tune every recipe anew",
        flag_keywords={"action": "store_true"},
    ),
    Option(
        flag="--finetune-precision",
        flag_help="arithmetic precision of every fine-tune: auto (default: bf16 where the hardware computes it "
        "natively, else fp32), fp32, bf16 or fp16 (a CUDA GPU)",
        flag_keywords={"choices": PRECISIONS},
        ini="finetune_precision",
        ini_help="arithmetic precision: auto (default), fp32, bf16 or fp16",
        changes_recipe=True,
    ),
    Option(
        flag="--finetune-calibrate",
        flag_help="with --snapshot-update: fine-tune each recipe with N seeds (its own and the next N-1) and store "
        "each metric's spread in its baseline, for tolerance auto",
        flag_keywords={"metavar": "N"},
    ),
    Option(
        flag="--finetune-alpha",
        flag_help="significance level of the paired test against the baseline's run, in (0, 1) "
        f"(default {DEFAULT_ALPHA})",
        flag_keywords={"metavar": "ALPHA"},
        ini="finetune_alpha",
        ini_help=f"significance level of the paired test against the baseline (default {DEFAULT_ALPHA})",
        ini_kind=float,
        toml_example="0.05",
    ),
    Option(
        flag="--finetune-report",
        flag_help="write the fine-tuning report as JSON to PATH",
        flag_keywords={"metavar": "PATH"},
        path=True,
    ),
    Option(
        flag="--finetune-report-md",
        flag_help="write the fine-tuning report as Markdown (a CI job summary)",
        flag_keywords={"metavar": "PATH"},
        path=True,
    ),
    Option(
        flag="--finetune-history",
        flag_help="append one JSON line per fine-tuning test to PATH: time, commit, recipe, environment, metrics, "
        "outcome",
        flag_keywords={"metavar": "PATH"},
        ini="finetune_history",
        ini_help="append one JSON line per fine-tuning test and session to this file (relative to the ini file)",
        path=True,
    ),
    Option(
        flag="--finetune-html",
        flag_help="write the fine-tuning report as one self-contained HTML page to PATH: the verdicts, each test's "
        "per-epoch curves and, with a history, each gated metric's trend",
        flag_keywords={"metavar": "PATH"},
        ini="finetune_html",
        ini_help="write the HTML report to this file (relative to the ini file)",
        path=True,
    ),
    Option(
        ini="finetune_runtime_tuning",
        ini_help="while training on a CPU, keep freed memory for reuse and few oneDNN kernels, fit torch's threads to "
        "the CPUs the process may use and let idle OpenMP threads sleep: faster, less memory (default true)",
        ini_kind=bool,
        toml_example="false",
    ),
    Option(
        ini="finetune_dropout_masks",
        ini_help="who draws dropout's random masks while training on a CPU: auto (default: numpy where torch would "
        "draw them one by one, as on AMD CPUs), torch or numpy",
    ),
    Option(
        ini="finetune_auto_k",
        ini_help=f"tolerance auto allows max(k * std, floor): k (default {DEFAULT_AUTO_K:g})",
        ini_kind=float,
        toml_example="3",
    ),
    Option(
        ini="finetune_auto_floor",
        ini_help=f"tolerance auto allows max(k * std, floor): floor (default {DEFAULT_AUTO_FLOOR:g})",
        ini_kind=float,
        toml_example="0.005",
    ),
    Option(
        ini="finetune_bootstrap_resamples",
        ini_help=f"resamples of each metric's bootstrap interval, at most {MAX_RESAMPLES}; 0 for none "
        f"(default {DEFAULT_RESAMPLES})",
        ini_kind=int,
        toml_example="1000",
    ),
    Option(
        ini="finetune_cache_dir",
        ini_help="folder of the result cache (relative to the ini file; default: the pytest cache, "
        ".pytest_cache/d/finetune)",
    ),
    Option(
        flag="--finetune-baseline-classes",
        flag_help="one baseline per test (none, the default), or one entry per hardware class in each baseline file "
        "(hardware: device, CPU vendor and instruction set or GPU model, dtype, processes); a run compares with its "
        "own class's entry and records only that",
        flag_keywords={"choices": CLASS_SETTINGS},
        ini="finetune_baseline_classes",
        ini_help="none (default: one baseline per test) or hardware (one entry per hardware class in each file)",
        changes_recipe=True,
    ),
    Option(
        ini="finetune_baseline_dir",
        ini_help="folder of the baseline files (relative to the ini file; default: baselines/ at the rootdir)",
    ),
)

# The recipe fields with their own ini key, environment variable and option.
_NAMED_SETTINGS = {
    option.recipe_field: (option.ini, option.env, option.flag)
    for option in OPTIONS
    if option.recipe_field and option.ini and option.flag
}
_PATH_KEYS = ("model", "data")
#: The recipe fields set by an ini key alone (those that declare a task of the user's, see docs/tasks.md).
_INI_ONLY_SETTINGS = {
    option.recipe_field: option.ini for option in OPTIONS if option.recipe_field and option.ini and not option.flag
}

#: ini keys of one number or true/false: the Python type a native ``[tool.pytest]`` table (pytest 9)
#: may give one in, and an example value.
_SCALAR_INI_KEYS = {
    option.ini: (option.ini_kind, option.toml_example)
    for option in OPTIONS
    if option.ini and isinstance(option.ini_kind, type) and option.ini_kind is not str
}
#: ini keys of a list of strings, and how a native ``[tool.pytest]`` table writes one.
_LIST_INI_KEYS = {
    option.ini: option.toml_example for option in OPTIONS if option.ini and option.ini_kind in ("linelist", "args")
}
#: Command-line options that change what a fine-tune computes (a command that records a baseline repeats them).
RECIPE_CHANGING_OPTIONS = tuple(option.flag for option in OPTIONS if option.flag and option.changes_recipe)
#: pytest 9.2 and newer register an ini key as ``str | float`` (say): a native ``[tool.pytest]``
#: table may then give a TOML number, and ini files and ``-o`` text as before. pytest 9.0 and 9.1
#: read that table too, but take the text form only (``"0.05"``); pytest 8 reads no such table.
_INI_UNIONS = pytest.version_tuple >= (9, 2)


def add_options(parser: pytest.Parser) -> None:
    """Register the plugin's command-line options and ini keys (:data:`OPTIONS`)."""
    group = parser.getgroup("finetune", "fine-tuning regression tests (pytest-finetune)")
    for option in OPTIONS:
        if option.flag:
            group.addoption(option.flag, help=option.flag_help, **option.flag_keywords)
    for option in OPTIONS:
        if option.ini in _SCALAR_INI_KEYS:
            _add_scalar_ini(parser, option.ini, option.ini_help)
        elif option.ini:
            kind = option.ini_kind if isinstance(option.ini_kind, str) else None
            parser.addini(option.ini, option.ini_help, type=kind)  # type: ignore[arg-type]


def _add_scalar_ini(parser: pytest.Parser, name: str, help: str) -> None:
    """Register ini key ``name`` (of :data:`_SCALAR_INI_KEYS`): text, and where pytest can say so
    (:data:`_INI_UNIONS`), its TOML type too."""
    if _INI_UNIONS:
        kind = _SCALAR_INI_KEYS[name][0]
        parser.addini(name, help, type=str | kind, default="")  # type: ignore[arg-type]
    else:
        parser.addini(name, help)


def _ini(config: pytest.Config, name: str) -> Any:
    """ini key ``name`` as pytest reads it; a value of a type pytest refuses (from a native
    ``[tool.pytest]`` table) is an error saying how to write it there."""
    try:
        return config.getini(name)
    except pytest.UsageError as error:
        raise FinetuneError(f"{error}; {_toml_form(name)}") from None


def _ini_text(config: pytest.Config, name: str) -> str:
    """ini key ``name`` of one value as text, stripped: a TOML ``false`` or ``0.05`` as ``False``, ``0.05``."""
    return str(_ini(config, name)).strip()


def _toml_form(name: str) -> str:
    """How a native ``[tool.pytest]`` table writes ini key ``name``, with this pytest."""
    if name in _LIST_INI_KEYS:
        return f"in a [tool.pytest] table write a list of strings: {name} = {_LIST_INI_KEYS[name]}"
    if name not in _SCALAR_INI_KEYS:
        return f'in a [tool.pytest] table write a string: {name} = "..."'
    example = _SCALAR_INI_KEYS[name][1]
    if _INI_UNIONS:
        return f"in a [tool.pytest] table write e.g. {name} = {example}"
    return (
        f'pytest {pytest.__version__} takes it quoted in a [tool.pytest] table: {name} = "{example}" '
        f"(pytest 9.2 and newer also take {name} = {example})"
    )


def session_layers(config: pytest.Config) -> list[Layer]:
    """The ini, environment and command-line layers, lowest priority first."""
    ini: dict[str, Any] = {}
    for line in _ini(config, "finetune_training_args"):
        key, value = _split_assignment(line, "ini finetune_training_args")
        ini[key] = value
    env: dict[str, Any] = {}
    cli: dict[str, Any] = {}
    for key, (ini_name, env_name, option) in _NAMED_SETTINGS.items():
        if configured := _ini(config, ini_name):
            ini[key] = _checked_value(key, configured, f"ini {ini_name} = {configured}")
        if env_name and os.environ.get(env_name):
            env[key] = _checked_value(key, os.environ[env_name], f"{env_name}={os.environ[env_name]}")
        value = config.getoption(option)
        if value is not None:
            cli[key] = _checked_value(key, value, f"{option}={value}")
    for key, ini_name in _INI_ONLY_SETTINGS.items():
        if configured := _ini_text(config, ini_name):
            ini[key] = configured
    for assignment in config.getoption("--finetune-set"):
        key, value = _split_assignment(assignment, "--finetune-set")
        cli[key] = _checked_value(key, value, f"--finetune-set {assignment}")
    ini_folder = config.inipath.parent if config.inipath else config.rootpath
    return [
        _text_layer("ini file", ini, ini_folder),
        _text_layer("environment", env, config.invocation_params.dir),
        _text_layer("command line", cli, config.invocation_params.dir),
    ]


#: Options whose value is a path: written apart from the flag, an existing path misleads pytest.
_PATH_OPTIONS = tuple(option.flag for option in OPTIONS if option.path)


def check_path_options(config: pytest.Config) -> None:
    """Refuse ``--finetune-model /elsewhere``: ask for ``--finetune-model=/elsewhere``.

    pytest looks for the rootdir and ini file before it loads plugins, so it takes the
    value of a plugin option written apart for a test path. A path below the directory
    pytest runs in is harmless; one outside it can make pytest miss the project's ini
    file, and with it the project's settings.
    """
    here = config.invocation_params.dir
    args = [str(arg) for arg in config.invocation_params.args]
    for flag, value in zip(args, args[1:], strict=False):
        if flag not in _PATH_OPTIONS:
            continue
        path = (here / value).resolve()
        if path.exists() and not path.is_relative_to(here.resolve()):
            raise FinetuneError(
                f"write {flag}={value} (with '='): written apart, pytest takes {value!r} for a test path "
                f"when it looks for the rootdir and ini file (it chose rootdir {config.rootpath}, "
                f"ini file {config.inipath or 'none'})"
            )


def session_tolerances(config: pytest.Config) -> list[Setting]:
    """The tolerance settings of the ini file, then the command line."""
    ini = [parse_setting(text, "ini finetune_tolerance") for text in _joined(_ini(config, "finetune_tolerance"))]
    cli = [parse_setting(text, "--finetune-tolerance") for text in config.getoption("--finetune-tolerance")]
    return [*ini, *cli]


def session_floors(config: pytest.Config) -> list[FloorSetting]:
    """The floor settings of the ini file, then the command line."""
    ini = [parse_floors(text, "ini finetune_floor") for text in _joined(_ini(config, "finetune_floor"))]
    return [*ini, *(parse_floors(text, "--finetune-floor") for text in config.getoption("--finetune-floor"))]


def session_relative(config: pytest.Config) -> list[RelativeSetting]:
    """The relative-threshold settings of the ini file, then the command line."""
    ini = [parse_relative(text, "ini finetune_relative") for text in _joined(_ini(config, "finetune_relative"))]
    return [*ini, *(parse_relative(text, "--finetune-relative") for text in config.getoption("--finetune-relative"))]


def warn_only_setting(config: pytest.Config) -> bool:
    """``--finetune-warn-only``, else ini ``finetune_warn_only`` (default false)."""
    text = _ini_text(config, "finetune_warn_only")
    try:
        return config.getoption("--finetune-warn-only") or (parse_bool(text) if text else False)
    except ValueError:
        raise FinetuneError(f"ini finetune_warn_only = {text}: use true or false") from None


def collapse_guard_setting(config: pytest.Config) -> float | None:
    """ini ``finetune_collapse_guard``: a share in (0.5, 1], or false (off); default
    :data:`~pytest_finetune.metrics.DEFAULT_COLLAPSE_GUARD`."""
    text = _ini_text(config, "finetune_collapse_guard")
    return check_collapse_guard(text or None, "ini finetune_collapse_guard")


def check_collapse_guard(value: Any, where: str) -> float | None:
    """``value`` as the collapsed-model guard: ``None`` for the default, false (``False``, ``"false"``, ``"off"``)
    for none, else a share of one predicted class above one half and at most 1."""
    from .metrics import DEFAULT_COLLAPSE_GUARD  # numpy stays out of a plain pytest run

    if value is None:
        return DEFAULT_COLLAPSE_GUARD
    if value is False or (isinstance(value, str) and value.strip().lower() in ("false", "off", "no")):
        return None
    try:
        share = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        share = math.nan
    if not 0.5 < share <= 1:
        raise FinetuneError(
            f"{where}: collapse guard {value!r}: give the share of one predicted class that fails a run, above 0.5 "
            f"and at most 1 (default {DEFAULT_COLLAPSE_GUARD}), or false to turn the guard off"
        )
    return share


def _joined(words: list[str]) -> list[str]:
    """ini ``finetune_tolerance``'s words, each ``=`` joined to the words beside it: pytest splits
    ``f1 = 0.015`` (written as ``finetune_training_args`` lines are) into three words, which are one
    setting, ``f1=0.015``. A name and an amount hold no ``=``, so nothing else is joined."""
    settings: list[str] = []
    for word in words:
        if settings and (word.startswith("=") or settings[-1].endswith("=")):
            settings[-1] += word
        else:
            settings.append(word)
    return settings


def precision_setting(config: pytest.Config) -> str:
    """``--finetune-precision``, else ini ``finetune_precision``, else ``auto``."""
    return _ini_choice(config, "finetune_precision", PRECISIONS, "auto", config.getoption("--finetune-precision"))


def runtime_tuning_setting(config: pytest.Config) -> bool:
    """ini ``finetune_runtime_tuning`` (default true): see :mod:`pytest_finetune.runtime`."""
    text = _ini_text(config, "finetune_runtime_tuning")
    try:
        return parse_bool(text) if text else True
    except ValueError:
        raise FinetuneError(f"ini finetune_runtime_tuning = {text}: use true or false") from None


def strict_recipe_setting(config: pytest.Config) -> bool:
    """``--finetune-strict-recipe``, else ini ``finetune_strict_recipe`` (default false): a changed recipe fails
    even where quality held."""
    text = _ini_text(config, "finetune_strict_recipe")
    try:
        return config.getoption("--finetune-strict-recipe") or (parse_bool(text) if text else False)
    except ValueError:
        raise FinetuneError(f"ini finetune_strict_recipe = {text}: use true or false") from None


def baseline_classes_setting(config: pytest.Config) -> bool:
    """``--finetune-baseline-classes``, else ini ``finetune_baseline_classes`` (default ``none``): whether a baseline
    file holds one entry per hardware class (see :mod:`pytest_finetune.baselines.classes`)."""
    command_line = config.getoption("--finetune-baseline-classes")
    return _ini_choice(config, "finetune_baseline_classes", CLASS_SETTINGS, "none", command_line) == "hardware"


def dropout_masks_setting(config: pytest.Config) -> str:
    """ini ``finetune_dropout_masks`` (default ``auto``): see :mod:`pytest_finetune.dropout`."""
    return _ini_choice(config, "finetune_dropout_masks", DROPOUT_MASKS, "auto")


def _ini_choice(
    config: pytest.Config, name: str, choices: tuple[str, ...], default: str, command_line: str | None = None
) -> str:
    """``command_line`` (already checked by its option), else ini ``name``, else ``default``; an ini
    value that is not one of ``choices`` is an error naming them."""
    setting = command_line or _ini_text(config, name) or default
    if setting not in choices:
        raise FinetuneError(f"ini {name}: {setting!r} is not one of {', '.join(choices)}")
    return setting


def update_setting(config: pytest.Config, enabled: bool) -> bool:
    """syrupy's ``--snapshot-update``. The baselines are kept through syrupy's plugin: with it
    disabled (``-p no:syrupy``) a run without ``--finetune`` goes on, one with it is a usage error."""
    if config.pluginmanager.has_plugin("syrupy"):
        return bool(config.getoption("--snapshot-update"))
    if enabled:
        raise FinetuneError(
            "--finetune keeps its baselines through syrupy's pytest plugin, which is disabled here "
            "(-p no:syrupy): remove -p no:syrupy"
        )
    return False


def calibration_setting(config: pytest.Config) -> int | None:
    """``--finetune-calibrate N``: the number of seeds (checked; it needs ``--snapshot-update``)."""
    value = config.getoption("--finetune-calibrate")
    if value is None:
        return None
    count = check_seed_count(value)
    if not config.getoption("--snapshot-update", False):
        raise FinetuneError(
            f"--finetune-calibrate {value} stores a calibration in the baselines: add --snapshot-update"
        )
    return count


def alpha_setting(config: pytest.Config) -> float:
    """``--finetune-alpha``, else ini ``finetune_alpha``, else :data:`DEFAULT_ALPHA`; in (0, 1)."""
    where, text = _number_setting(config, "--finetune-alpha", "finetune_alpha")
    if text is None:
        return DEFAULT_ALPHA
    alpha = _float(text, where)
    if not 0 < alpha < 1:
        raise FinetuneError(f"{where} = {text}: a significance level is between 0 and 1 (exclusive), e.g. 0.01")
    return alpha


def auto_settings(config: pytest.Config) -> tuple[float, float]:
    """ini ``finetune_auto_k`` (> 0) and ``finetune_auto_floor`` (>= 0): ``auto`` = max(k * std, floor)."""
    k_text, floor_text = _ini_text(config, "finetune_auto_k"), _ini_text(config, "finetune_auto_floor")
    k = _float(k_text, "ini finetune_auto_k") if k_text else DEFAULT_AUTO_K
    floor = _float(floor_text, "ini finetune_auto_floor") if floor_text else DEFAULT_AUTO_FLOOR
    if not k > 0 or not floor >= 0:
        raise FinetuneError(
            f"ini finetune_auto_k = {k_text or k}, finetune_auto_floor = {floor_text or floor}: "
            "k must be above 0 and floor 0 or more (e.g. 3 and 0.005)"
        )
    return k, floor


def bootstrap_setting(config: pytest.Config) -> int:
    """ini ``finetune_bootstrap_resamples``: an integer from 0 (no intervals) to :data:`MAX_RESAMPLES`."""
    text = _ini_text(config, "finetune_bootstrap_resamples")
    if not text:
        return DEFAULT_RESAMPLES
    if not text.isdecimal():
        raise FinetuneError(
            f"ini finetune_bootstrap_resamples = {text}: give a whole number of resamples such as 1000, or 0 for none"
        )
    if len(text.lstrip("0")) > len(str(MAX_RESAMPLES)) or int(text) > MAX_RESAMPLES:  # int() takes 4300 digits
        raise FinetuneError(
            f"ini finetune_bootstrap_resamples = {text}: give at most {MAX_RESAMPLES} resamples (the default, "
            f"{DEFAULT_RESAMPLES}, is plenty: more only smooth the interval's ends)"
        )
    return int(text)


def _number_setting(config: pytest.Config, option: str, ini: str) -> tuple[str, str | None]:
    """Where a setting with an option and an ini key comes from, and its text (``None``: unset)."""
    if config.getoption(option) is not None:
        return option, str(config.getoption(option))
    text = _ini_text(config, ini)
    return f"ini {ini}", text or None


def _float(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FinetuneError(f"{where} = {text}: not a number") from None
    if not math.isfinite(value):
        raise FinetuneError(f"{where} = {text}: not a finite number")
    return value


def baseline_dir(config: pytest.Config) -> Path:
    """The baseline folder: ini ``finetune_baseline_dir`` (relative to the ini file), else
    ``baselines/`` at the rootdir."""
    configured = _ini(config, "finetune_baseline_dir")
    if not configured:
        return config.rootpath / "baselines"
    return _ini_path(config, "finetune_baseline_dir", configured)


def cache_dir(config: pytest.Config) -> Path | None:
    """The result cache's folder: ini ``finetune_cache_dir``, else ``finetune`` in pytest's cache;
    ``None`` with ``--finetune-no-cache``, without pytest's cache plugin, or when the folder
    cannot be made (with a warning: the session runs without the cache)."""
    if config.getoption("--finetune-no-cache"):
        return None
    configured = _configured_cache_dir(config)
    if configured is not None:
        return configured
    cache = getattr(config, "cache", None)
    if cache is None:
        return None
    try:
        return cache.mkdir("finetune")  # pytest empties its own cache on --cache-clear
    except OSError as error:
        config.issue_config_time_warning(
            cache_warning(f"cannot make the result cache folder in pytest's cache ({error}); results are not cached"),
            stacklevel=2,
        )
        return None


def clear_result_cache(config: pytest.Config) -> bool:
    """``--cache-clear``: remove the entries of the ``finetune_cache_dir`` folder, and only
    them (the folder may hold other files), whether or not fine-tuning runs (a later
    ``--finetune`` run must not find old entries), in the controlling process only: not in
    pytest-xdist's workers (which start after it has cleared, and may store meanwhile).
    pytest's own cache folder, the default, is emptied by pytest.

    ``False`` when entries could not be removed (with a warning): the cache must then not be
    used, or it would serve them.
    """
    folder = _configured_cache_dir(config)
    if folder is None or not config.getoption("cacheclear", False) or hasattr(config, "workerinput"):
        return True
    try:
        ResultCache(folder).clear()
    except OSError as error:
        config.issue_config_time_warning(
            cache_warning(
                f"--cache-clear cannot remove the result cache's entries in {folder} ({error}); results are not cached"
            ),
            stacklevel=2,
        )
        return False
    return True


def history_path(config: pytest.Config) -> Path | None:
    """``--finetune-history`` (relative to where pytest was started), else ini ``finetune_history`` (relative to the
    ini file), else ``None``."""
    return _file_setting(config, "--finetune-history", "finetune_history")


def html_path(config: pytest.Config) -> Path | None:
    """``--finetune-html`` (relative to where pytest was started), else ini ``finetune_html`` (relative to the ini
    file), else ``None``."""
    return _file_setting(config, "--finetune-html", "finetune_html")


def _file_setting(config: pytest.Config, flag: str, ini: str) -> Path | None:
    """The file that option ``flag`` (relative to where pytest was started) or else ini key ``ini`` (relative to the
    ini file) names, ``~`` expanded; ``None`` when neither is set."""
    option = config.getoption(flag)
    if option:
        return config.invocation_params.dir / _expand_user(option, f"{flag}={option}")
    configured = _ini(config, ini)
    return _ini_path(config, ini, configured) if configured else None


def _configured_cache_dir(config: pytest.Config) -> Path | None:
    """ini ``finetune_cache_dir`` resolved against the ini file's folder, ``None`` when unset."""
    configured = _ini(config, "finetune_cache_dir")
    return _ini_path(config, "finetune_cache_dir", configured) if configured else None


def _ini_path(config: pytest.Config, name: str, configured: str) -> Path:
    """The folder ini key ``name`` gives as ``configured``, ``~`` expanded, resolved against the ini file's folder."""
    ini_folder = config.inipath.parent if config.inipath else config.rootpath
    return (ini_folder / _expand_user(configured, f"ini {name} = {configured}")).resolve()


class MarkerSettings(NamedTuple):
    """What ``item``'s ``finetune`` markers say, farthest first so that the closest marker wins."""

    layer: Layer
    tolerances: list[Setting]
    floors: list[FloorSetting]
    relative: list[RelativeSetting]
    #: The collapsed-model guards the markers give (see :func:`check_collapse_guard`; ``None``: off).
    collapse_guards: list[float | None]


_MARKER_SETTINGS = pytest.StashKey[tuple[list[pytest.Mark], MarkerSettings]]()


def marker_settings(item: pytest.Item) -> MarkerSettings:
    """The recipe layer and the gate's rules of ``item``'s ``finetune`` markers,
    farthest first so that the closest marker wins.

    Read again whenever the markers changed since the last call: a conftest's
    ``pytest_collection_modifyitems`` may add one after collection checked them.
    """
    marks = list(item.iter_markers(MARKER))
    stored = item.stash.get(_MARKER_SETTINGS, None)
    if stored is not None and list(map(id, stored[0])) == list(map(id, marks)):  # the stash keeps them alive
        return stored[1]
    where = f"{item.nodeid}: @pytest.mark.{MARKER}"
    overrides: dict[str, Any] = {}
    settings = MarkerSettings(("", {}), [], [], [], [])
    for mark in reversed(marks):
        if mark.args:
            raise FinetuneError(f"{where} takes keyword arguments only, got {mark.args!r}")
        keywords = dict(mark.kwargs)
        if TOLERANCE_KEYWORD in keywords:
            settings.tolerances.append(check_setting(keywords.pop(TOLERANCE_KEYWORD), where))
        if FLOOR_KEYWORD in keywords:
            settings.floors.append(check_floors(keywords.pop(FLOOR_KEYWORD), where))
        if RELATIVE_KEYWORD in keywords:
            settings.relative.append(check_relative(keywords.pop(RELATIVE_KEYWORD), where))
        if COLLAPSE_KEYWORD in keywords:
            settings.collapse_guards.append(check_collapse_guard(keywords.pop(COLLAPSE_KEYWORD), where))
        overrides.update(keywords)
    settings = settings._replace(layer=python_layer(where, overrides, item.config.rootpath))
    item.stash[_MARKER_SETTINGS] = (marks, settings)
    return settings


def recipe_group(item: pytest.Item) -> str | None:
    """A name shared by the marked tests whose markers set the same recipe (``finetune-`` and a digest), so that
    one pytest-xdist worker runs them (:mod:`.scheduling`); ``None`` for a test without a valid marker."""
    if item.get_closest_marker(MARKER) is None:
        return None
    try:
        _, overrides = marker_settings(item)[0]
    except FinetuneError:
        return None  # pytest_collection_modifyitems reports it
    described = json.dumps(overrides, sort_keys=True, default=str)
    return "finetune-" + hashlib.sha256(described.encode()).hexdigest()[:12]


def python_layer(where: str, overrides: Mapping[str, Any], base: Path) -> Layer:
    """A layer of Python values (marker, hook): types are checked, not parsed."""
    converted = {key: convert_value(key, value, where=where) for key, value in overrides.items()}
    return where, _resolve_paths(converted, base, where)


def _text_layer(where: str, overrides: Mapping[str, str], base: Path) -> Layer:
    converted = {key: convert_value(key, value, where=where, from_text=True) for key, value in overrides.items()}
    return where, _resolve_paths(converted, base, where)


def _split_assignment(text: str, where: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise FinetuneError(f"{where}: {text!r} is not KEY=VALUE (e.g. learning_rate=2e-5)")
    return key.strip(), value.strip()


def _checked_value(key: str, value: str, given: str) -> str:
    """``value``, a model or data path's leading ``~`` expanded (:func:`_expand_user`); a usage error
    naming ``given`` (the option and its value) when a model, data or task value is empty (an unset
    shell variable, say): it would otherwise be ignored, or taken for the folder a relative path is
    resolved against."""
    if key in _NAMED_SETTINGS and not value.strip():
        raise FinetuneError(f"{given} gives an empty {key}: {_EMPTY_HELP[key]}, or leave it out")
    return _expand_user(value, given) if key in _PATH_KEYS else value


def _expand_user(path: str, given: str) -> str:
    """``path`` with a leading ``~`` or ``~user`` expanded to that home folder; a usage error naming
    ``given`` (where ``path`` was set) when it cannot be: no such user, or ``~`` while ``HOME`` is unset
    for a user the system does not know."""
    if not path.startswith("~"):
        return path
    try:
        return str(Path(path).expanduser())
    except RuntimeError:  # pathlib: "Could not determine home directory."
        home = Path(path).parts[0]
        raise FinetuneError(
            f"{given}: cannot expand {home!r} (no such user, or HOME unset); write the full path"
        ) from None


_EMPTY_HELP = {
    "model": "give a Hub id or a checkpoint folder",
    "data": "give a Hub dataset id or a data folder",
    "task": "give a task such as mrpc",
}


def _resolve_paths(overrides: dict[str, Any], base: Path, where: str) -> dict[str, Any]:
    """Make relative model and data paths absolute against ``base``.

    A value is a path when it exists under ``base`` or can only be a path (``./x``,
    ``a/b/c``); anything else (``bert-base-uncased``, ``org/name``) stays a Hub id. An
    empty value is an error naming ``where`` (it would resolve to ``base`` itself).
    """
    for key in _PATH_KEYS:
        value = overrides.get(key)
        if not isinstance(value, str):
            continue
        candidate = base / _checked_value(key, value, f"{where}: {key}={value!r}")
        if candidate.exists() or looks_like_path(value):
            overrides[key] = str(candidate.resolve())
    return overrides
