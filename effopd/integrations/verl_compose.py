"""Check verl overrides against verl's own packaged config, before any GPU is touched.

:func:`compose_verl_config` composes verl's ``ppo_trainer`` Hydra config (the
yaml files shipped in the ``verl`` package) with the overrides that
:func:`effopd.integrations.verl_engine.verl_command` emits, then

- lets Hydra reject keys that do not exist (a misspelt key without ``+``);
- rejects a value whose type differs from the default's (a string where verl
  has a number or a bool, a number where it has a bool): Hydra itself takes
  any value;
- builds verl's config dataclasses from the composed config
  (``omega_conf_to_dataclass`` on the algorithm, actor, rollout and
  distillation groups, whose ``__post_init__`` checks the values) and runs
  verl's own ``validate_config``, as ``verl.trainer.main_ppo`` does first.

Needs verl (the ``[verl]`` extra); nothing below imports this module.
"""

from __future__ import annotations

from typing import Any

NUMBER = (int, float)


def _type_clash(key: str, default: Any, value: Any) -> str | None:
    """A message when ``value`` cannot stand where verl's default is ``default``."""
    if default is None or value is None:
        return None
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(default, bool) and isinstance(value, bool)
    elif isinstance(default, NUMBER):
        ok = isinstance(value, NUMBER)  # verl's yaml writes 1 for float fields
    elif isinstance(default, str):
        ok = isinstance(value, str)
    else:  # lists and dicts: same container kind
        ok = isinstance(value, type(default)) or type(default).__name__ == type(value).__name__
    if ok:
        return None
    return (f"verl override {key}={value!r}: verl's default is {default!r} "
            f"({type(default).__name__}), got {type(value).__name__}")


def compose_verl_config(overrides: list[str]):
    """verl's composed and validated ``ppo_trainer`` config for these overrides.

    Raises ``ValueError`` naming the override on an unknown or mistyped key or
    a value verl's dataclasses reject.
    """
    from hydra import compose, initialize_config_module
    from hydra.errors import ConfigCompositionException, InstantiationException
    from omegaconf import OmegaConf
    from verl.trainer.config import AlgoConfig  # noqa: F401  (registers the dataclass targets)
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass, validate_config

    with initialize_config_module("verl.trainer.config", version_base=None):
        base = compose("ppo_trainer")
        try:
            config = compose("ppo_trainer", overrides=list(overrides))
        except ConfigCompositionException as err:
            raise ValueError(f"verl 0.9.1 rejects an override: {err.__cause__ or err}") from err
    problems = []
    for override in overrides:
        key = override.split("=", 1)[0]
        if key.startswith("+"):
            continue
        default = OmegaConf.select(base, key, throw_on_missing=False)
        value = OmegaConf.select(config, key, throw_on_missing=False)
        if OmegaConf.is_config(default):
            default = OmegaConf.to_container(default)
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value)
        clash = _type_clash(key, default, value)
        if clash:
            problems.append(clash)
    if problems:
        raise ValueError("; ".join(problems))
    try:
        for group in ("algorithm", "actor_rollout_ref.actor", "actor_rollout_ref.rollout",
                      "distillation"):
            omega_conf_to_dataclass(OmegaConf.select(config, group))
        validate_config(config, use_reference_policy=need_reference_policy(config),
                        use_critic=need_critic(config))
    except (AssertionError, TypeError, ValueError, InstantiationException) as err:
        raise ValueError(f"verl 0.9.1 rejects the configuration: {err}") from err
    return config
