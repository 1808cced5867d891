"""Load and validate a workflow config against ``workflow/schemas/config.schema.yaml``.

The Snakefile and the command line use the same function, so a config is
either valid everywhere or rejected everywhere, with a message that names the
file and the key at fault. Validation fills in the schema's defaults, then
checks every rule that spans several keys (:func:`cross_key_faults`: names
resolve to declared benchmarks, the checkpoint grid fits the training length,
the claims' k is among the analyses' ks, model shapes are consistent, seeds are
distinct), so a bad config is refused before any job starts.

YAML is read strictly (:class:`StrictLoader`): a key given twice in one mapping
is refused (plain YAML keeps the last silently), and a number in exponent
notation without a dot (``1e-3``, which YAML 1.1 reads as text) is a float.
Configs that reach :func:`validate_config` through another loader (Snakemake's)
get the same reading: a string that spells a number, at a key whose schema
type is a number, is read as that number.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match

from effopd.methods import ANALYSABLE_ROLES, EFFOPD, OPD, RL, declared_methods

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A config that does not satisfy the schema or a rule across its keys."""


# A number in exponent notation that YAML 1.1 (PyYAML) reads as text: 1e-3, 2E5, 1.5e3.
_EXPONENT = re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$")
# Any number a config may spell as text (YAML 1.1 floats and integers included).
_NUMBER = re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$")


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses a key given twice in one mapping (line named)
    and reads ``1e-3`` as a float (YAML 1.2), as a reader of the config expects."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' appears twice (lines {seen[key]} and {line}); "
                    "YAML would keep the last silently", key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT,
                                   list("-+0123456789."))


def read_yaml(path: str | Path) -> Any:
    """Read a YAML file with :class:`StrictLoader`; a fault names the file and the line."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as handle:
            return yaml.load(handle, Loader=StrictLoader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the config: {err}") from err


def _types(schema: Any) -> set[str]:
    kind = schema.get("type", ()) if isinstance(schema, dict) else ()
    return {kind} if isinstance(kind, str) else set(kind)


def _as_number(value: Any, schema: Any) -> Any:
    """``value`` read as a number when it is text spelling one and ``schema`` wants a
    number, not text (``lr: 1e-3`` loaded by YAML 1.1); otherwise ``value`` unchanged."""
    kinds = _types(schema)
    if (isinstance(value, str) and "number" in kinds and "string" not in kinds
            and _NUMBER.match(value.strip())):
        return float(value)
    return value


def _is_integer(checker, instance) -> bool:
    """JSON schema's integer without floats: ``steps: 4.0`` is refused, not read as 4."""
    return isinstance(instance, int) and not isinstance(instance, bool)


def _with_defaults(validator_class: type) -> type:
    """Extend a validator so that ``properties`` fills in each subschema's ``default``
    and reads numbers written as text (:func:`_as_number`); ``integer`` excludes floats.

    Defaults are deep-copied: a default object is never shared between configs.
    """
    validate_properties = validator_class.VALIDATORS["properties"]
    validate_items = validator_class.VALIDATORS["items"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if isinstance(subschema, dict) and "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
                if name in instance:
                    instance[name] = _as_number(instance[name], subschema)
        yield from validate_properties(validator, properties, instance, schema)

    def read_items(validator, items, instance, schema):
        if isinstance(instance, list):
            instance[:] = [_as_number(value, items) for value in instance]
        yield from validate_items(validator, items, instance, schema)

    type_checker = validator_class.TYPE_CHECKER.redefine("integer", _is_integer)
    return validators.extend(validator_class, {"properties": set_defaults, "items": read_items},
                             type_checker=type_checker)


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@functools.lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    return load_schema()


def block_defaults(block: str, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The config's top-level block ``block`` (e.g. ``"speedup"``) with the schema's
    defaults filled in wherever ``given`` lacks a key, exactly as validation fills them.

    The one source of defaults for code handed a block (or nothing) rather than a
    validated config, and for the keyword defaults of pure functions: no default is
    written twice. Values are not checked here; :func:`validate_config` does that.
    """
    schema = _schema()
    subschema = {**schema["properties"][block], "$defs": schema.get("$defs", {})}
    instance = copy.deepcopy(dict(given or {}))
    for _ in _with_defaults(Draft202012Validator)(subschema).iter_errors(instance):
        pass  # iterating fills the defaults; faults are validate_config's to report
    return instance


def schema_default(block: str, key: str) -> Any:
    """The schema's default of ``<block>.<key>`` (:func:`block_defaults`)."""
    return block_defaults(block)[key]


def _describe(error: ValidationError) -> str:
    key = "/".join(str(part) for part in error.absolute_path) or "<top level>"
    return f"key '{key}': {error.message}"


def validate_config(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Validate ``config`` in place, filling defaults; return it.

    Raises ``ConfigError`` naming ``source`` and the key path of the most
    relevant error (and how many errors there were in all): first the schema's,
    then :func:`cross_key_faults`.
    """
    if not isinstance(config, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got "
                          f"{type(config).__name__}")
    validator = _with_defaults(Draft202012Validator)(load_schema())
    errors = list(validator.iter_errors(config))
    if errors:
        main = best_match(errors)
        more = f" (and {len(errors) - 1} more error(s))" if len(errors) > 1 else ""
        raise ConfigError(f"{source}: invalid config: {_describe(main)}{more}")
    faults = cross_key_faults(config)
    if faults:
        more = f" (and {len(faults) - 1} more error(s))" if len(faults) > 1 else ""
        raise ConfigError(f"{source}: invalid config: {faults[0]}{more}")
    return config


def _duplicates(values: list[Any]) -> list[Any]:
    return sorted({v for v in values if values.count(v) > 1}, key=str)


def cross_key_faults(config: dict[str, Any]) -> list[str]:
    """Every rule across keys that the schema cannot state, on a schema-valid config
    with defaults filled; one message per fault, each naming the key(s), in the
    order a reader meets them. Empty when the config is consistent."""
    faults: list[str] = []
    training, analysis = config["training"], config["analysis"]
    try:
        runs = declared_methods(training, config["ablation"])
    except ValueError as err:
        return [f"key 'training/methods': {err}"]
    methods = [name for name, method in runs.items() if method.role == "main"]

    for key, seeds in (("seeds", config["seeds"]), ("ablation/seeds", config["ablation"]["seeds"])):
        if seeds and _duplicates(seeds):
            faults.append(f"key '{key}': seed(s) {_duplicates(seeds)} appear more than once; "
                          "a repeated seed trains the same run twice and fakes replication")

    for role, model in config["models"].items():
        arch = model.get("arch")
        if arch and arch["num_attention_heads"] % arch["num_key_value_heads"]:
            faults.append(f"key 'models/{role}/arch': num_attention_heads "
                          f"{arch['num_attention_heads']} is not a multiple of "
                          f"num_key_value_heads {arch['num_key_value_heads']}")
    task = config["task"]
    if task["min_ops"] > task["max_ops"]:
        faults.append(f"key 'task/min_ops': {task['min_ops']} is above task/max_ops "
                      f"{task['max_ops']}")
    code = task["code"]
    if task["kind"] == "code":
        if code["input_max"] - code["input_min"] + 1 < code["n_tests"]:
            faults.append(f"key 'task/code/n_tests': {code['n_tests']} distinct inputs do not "
                          f"fit [{code['input_min']}, {code['input_max']}]")
        if training["engine"] != "local":
            faults.append(f"key 'task/kind': code is graded in the sandbox by the local "
                          f"engine only; training/engine is {training['engine']!r}")
    for beta in training["betas"]:
        if not 0 <= beta < 1:
            faults.append(f"key 'training/betas': {beta} is outside [0, 1) "
                          "(AdamW's moment decays)")

    declared = list(config["benchmarks"])
    base = config["evaluation"]["base_benchmarks"]
    series = config["evaluation"]["series_benchmarks"]
    # OPD's learning-rate baselines may be analysed too (a sensitivity pair at OPD's best lr)
    analysable = [name for name, method in runs.items() if method.role in ANALYSABLE_ROLES]
    analysed = [m for m in (analysis["methods"] or methods) if m in analysable]
    analysing = analysis["enabled"] and bool(analysed)
    named = [("evaluation/base_benchmarks", name) for name in base or []]
    named += [("evaluation/series_benchmarks", name) for name in series or []]
    searching = any(method.algorithm.searches for method in runs.values())
    if searching or (analysing and not analysis["selection_benchmark"]):
        named.append(("training/effopd/validation_benchmark",
                      training["effopd"]["validation_benchmark"]))
    if analysing and analysis["selection_benchmark"]:
        named.append(("analysis/selection_benchmark", analysis["selection_benchmark"]))
    for key, name in named:
        if name not in declared:
            faults.append(f"key '{key}': benchmark '{name}' is not declared under "
                          f"benchmarks (declared: {', '.join(declared)})")
    for key, names in (("evaluation/base_benchmarks", base),
                       ("evaluation/series_benchmarks", series)):
        if names is not None and (not names or _duplicates(names)):
            faults.append(f"key '{key}': expected distinct benchmark names, got {names}")

    steps, every = training["steps"], training["save_every"]
    if every > steps:
        faults.append(f"key 'training/save_every': {every} is beyond training/steps {steps}; "
                      "the checkpoint grid must fit the training length")
    elif analysing and every == steps and not (training["save_powers_of_two"] and steps > 1):
        faults.append(f"key 'training/save_every': {every} equals training/steps: one "
                      "checkpoint, but the analyses need an early and a final one")

    if training["data"]["source"] == "task":
        for block in dict.fromkeys(m.algorithm.block for m in runs.values()):
            need = training[block]["prompts_per_step"]
            if task["n_train"] < need:
                faults.append(f"key 'task/n_train': {task['n_train']} training problems, "
                              f"fewer than training/{block}/prompts_per_step {need}")
                break

    if analysing and {OPD, RL} <= set(analysed) and EFFOPD in methods:
        k = config["claims"]["k"]
        for key in ("spectra_ks", "alignment_ks"):
            if k not in analysis[key]:
                faults.append(f"key 'claims/k': {k} is not among analysis/{key} "
                              f"{analysis[key]}; the claims read the analyses' k")
    for i, pair in enumerate(config["claims"]["sensitivity"]):
        for algorithm, name in ((OPD, pair["opd"]), (RL, pair["rl"])):
            if name not in runs or runs[name].algorithm.name != algorithm:
                faults.append(f"key 'claims/sensitivity/{i}/{algorithm}': '{name}' is not a "
                              f"declared method of algorithm {algorithm}")
            elif name not in analysed:
                faults.append(f"key 'claims/sensitivity/{i}/{algorithm}': '{name}' is not "
                              f"analysed (analysis/methods: {analysed})")
    if analysing and min(analysis["alignment_ks"]) > analysis["plot_k"]:
        faults.append(f"key 'analysis/plot_k': {analysis['plot_k']} is below every "
                      f"analysis/alignment_ks {analysis['alignment_ks']}")
    for name in config["line_scan"]["methods"]:
        if name not in runs or runs[name].algorithm.name != OPD:
            faults.append(f"key 'line_scan/methods': '{name}' is not a declared method of "
                          "algorithm opd (the scan follows an OPD run's own steps)")
    if not training["save_powers_of_two"] and config["line_scan"]["methods"]:
        faults.append("key 'line_scan/methods': the scan reads the checkpoints of the search "
                      "steps 1, 2, 4, ...; set training/save_powers_of_two: true")
    faults += scale_faults(config)
    return faults


def scale_faults(config: dict[str, Any]) -> list[str]:
    """The model-scale sweep's rules across keys (``scales``): the sweep varies a built
    student under one built teacher, and names each scale <experiment>/<scale>."""
    if not config["scales"]:
        return []
    faults = []
    models = config["models"]
    for role in ("teacher", "student"):
        if models.get(role, {}).get("source") != "build":
            faults.append(f"key 'scales': a sweep needs models/{role} with source build "
                          "(the first scale builds both; the others build their student "
                          "and copy the teacher)")
    if "/" in config["experiment"]:
        faults.append(f"key 'experiment': '{config['experiment']}' has a '/'; a sweep's "
                      "scales are named <experiment>/<scale>, one level below it")
    return faults


def scaled_learning_rates(training: dict[str, Any], multiplier: float) -> dict[str, Any]:
    """The training block with every learning rate it names times ``multiplier``:
    ``training.lr``, each block's own ``lr`` (``training.rl.lr``) and each method
    mapping's ``lr`` (a method's ``lr_multiplier`` scales the already-scaled algorithm lr,
    so it is left as it is). Warm-up and schedule are unchanged."""
    if multiplier == 1:
        return training
    scaled = copy.deepcopy(training)
    scaled["lr"] = training["lr"] * multiplier
    for block in scaled.values():
        if isinstance(block, dict) and isinstance(block.get("lr"), (int, float)):
            block["lr"] = block["lr"] * multiplier
    for entry in scaled.get("methods", []):
        if isinstance(entry, dict) and entry.get("lr") is not None:
            entry["lr"] = entry["lr"] * multiplier
    return scaled


def scale_configs(config: dict[str, Any], source: str = "config") -> dict[str, dict[str, Any]]:
    """Each scale's config of a validated sweep config (key ``scales``), in order.

    A scale's config is ``config`` without ``scales``, with experiment
    ``<experiment>/<scale>``, ``models/student/arch`` updated by the scale's
    ``student_arch`` and every learning rate times its ``lr_multiplier``
    (:func:`scaled_learning_rates`); every scale after the first copies the first scale's teacher
    (``models/teacher``: source local, path ``artifacts/<experiment>/<first>/models/teacher``)
    so that the teacher is built once. Each is validated; an error names the scale.
    """
    names = list(config["scales"])
    scales = {}
    for name in names:
        scale = copy.deepcopy({key: value for key, value in config.items() if key != "scales"})
        scale["experiment"] = f"{config['experiment']}/{name}"
        scale["models"]["student"]["arch"].update(config["scales"][name]["student_arch"])
        scale["training"] = scaled_learning_rates(scale["training"],
                                                  config["scales"][name]["lr_multiplier"])
        if name != names[0]:
            path = f"artifacts/{config['experiment']}/{names[0]}/models/teacher"
            scale["models"]["teacher"] = {"source": "local", "path": path}
        scales[name] = validate_config(scale, source=f"{source}, scale '{name}' "
                                                     f"(key 'scales/{name}')")
    return scales


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file strictly, validate it, and return it with defaults filled in."""
    config = read_yaml(path)
    return validate_config({} if config is None else config, source=str(path))


def dataclass_from_block(cls: type, block: dict[str, Any], **overrides: Any) -> Any:
    """Build dataclass ``cls`` from a config block, ignoring keys that are not its fields."""
    values = {key: value for key, value in block.items() if key in cls.__dataclass_fields__}
    return cls(**{**values, **overrides})
