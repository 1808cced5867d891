"""Load and validate a workflow config against ``workflow/schemas/config.schema.yaml``.

The Snakefile and the command line use the same function, so a config is
either valid everywhere or rejected everywhere, with a message that names the
file and the key at fault. Validation fills in the schema's defaults.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A config that does not satisfy the schema."""


def _with_defaults(validator_class: type) -> type:
    """Extend a validator so that ``properties`` fills in each subschema's ``default``.

    Defaults are deep-copied: a default object is never shared between configs.
    """
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if isinstance(subschema, dict) and "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _describe(error: ValidationError) -> str:
    key = "/".join(str(part) for part in error.absolute_path) or "<top level>"
    return f"key '{key}': {error.message}"


def validate_config(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Validate ``config`` in place, filling defaults; return it.

    Raises ``ConfigError`` naming ``source`` and the key path of the most
    relevant error (and how many errors there were in all).
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
    return config


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file, validate it, and return it with defaults filled in."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as handle:
            config = yaml.safe_load(handle) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    return validate_config(config, source=str(path))


def dataclass_from_block(cls: type, block: dict[str, Any], **overrides: Any) -> Any:
    """Build dataclass ``cls`` from a config block, ignoring keys that are not its fields."""
    values = {key: value for key, value in block.items() if key in cls.__dataclass_fields__}
    return cls(**{**values, **overrides})
