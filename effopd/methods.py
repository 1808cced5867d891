"""Training methods, each declared once: the registry every engine, rule and report asks.

Two tables, read top to bottom (torch-free: the Snakefile reads it too):

- an **algorithm** (:data:`ALGORITHMS`) is what an engine runs: its objective (the loss),
  the config block its per-method knobs live in (``training.opd`` or ``training.rl``:
  prompts per step, clip ratios, RL's group size and own learning rate), whether it
  needs a teacher, whether its reward is the verifiable one, whether it runs EffOPD's
  line search (SPEC section 3), and its label;
- a **method** (:class:`Method`) is one DAG run name bound to an algorithm and to the
  training block it trains with: its learning rate (absolute, or a multiplier of
  ``training.lr``), its warm-up, its line-search overrides and its label.

The config declares methods as data (:func:`declared_methods`):

- ``training.methods``: each entry an algorithm's name (``opd``: the method ``opd``
  runs algorithm ``opd`` with the block as it is) or a mapping
  ``{name, algorithm, lr | lr_multiplier, warmup_steps, label, effopd}``;
- ``training.lr_baselines.multipliers``: each m declares ``opd-lr<m>x``, OPD at m x
  ``training.lr`` (the referee's compute-matched baseline);
- ``ablation.variants``: each declares ``effopd-<name>``, EffOPD with some
  ``training.effopd`` keys replaced.

Nothing outside this module compares a method's name to decide what to run: engines
read :attr:`Method.algorithm` (its flags) and :meth:`Method.training`; reports read
:attr:`Method.label`, :attr:`Method.role` and the learning rate. The names :data:`OPD`,
:data:`RL` and :data:`EFFOPD` are the identities of the suite's three main runs, which
the tables compare (EffOPD against OPD, OPD against RL).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

OPD, RL, EFFOPD = "opd", "rl", "effopd"  # the main runs' names (= their algorithms')


@dataclass(frozen=True)
class Algorithm:
    """What an engine runs (module docstring).

    ``objective``: ``k1`` = PPO-clip on the sampled-token advantage
    A_t = log p_T - log p_S (SPEC section 2); ``grpo`` = PPO-clip on the
    group-normalised 0/1 reward; ``full_kl`` = the per-position reverse KL over the whole
    vocabulary on the student's samples, sum_v p_S(v) (log p_S(v) - log p_T(v)), the exact
    expectation of the k1 gradient at each position
    (:func:`effopd.training.losses.full_reverse_kl`).
    """

    name: str
    objective: str
    block: str  # the training.<block> of its per-method knobs
    teacher: bool  # scores the student's tokens with a teacher
    reward: bool  # learns from the verifiable reward (groups of responses per prompt)
    searches: bool  # EffOPD's line search after the scheduled steps
    label: str


ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in (
    Algorithm(OPD, objective="k1", block="opd", teacher=True, reward=False, searches=False,
              label="OPD"),
    Algorithm(RL, objective="grpo", block="rl", teacher=False, reward=True, searches=False,
              label="RL (GRPO)"),
    Algorithm(EFFOPD, objective="k1", block="opd", teacher=True, reward=False, searches=True,
              label="EffOPD"),
    # the pilots' diagnostic, not the paper's objective (engine local)
    Algorithm("opd_fullkl", objective="full_kl", block="opd", teacher=True, reward=False,
              searches=False, label="OPD (full-vocabulary KL)"),
)}

# The roles analysis.methods may name: the main methods and OPD's learning-rate baselines
# (a claims sensitivity pair at OPD's best lr); ablation variants are never analysed.
ANALYSABLE_ROLES = ("main", "lr_baseline")

# Keys a method's mapping may hold (the schema checks their types).
METHOD_KEYS = ("name", "algorithm", "lr", "lr_multiplier", "warmup_steps", "label", "effopd")


@dataclass(frozen=True)
class Method:
    """One DAG run name and what it trains (module docstring). ``role``: ``main``
    (``training.methods``), ``lr_baseline`` (``training.lr_baselines``) or ``variant``
    (``ablation.variants``)."""

    name: str
    algorithm: Algorithm
    label: str
    role: str = "main"
    lr: float | None = None
    lr_multiplier: float | None = None
    warmup_steps: int | None = None
    search: Mapping[str, Any] = field(default_factory=dict)
    #: the peak learning rate it trains at, where known without the training block (a
    #: report command's ``--methods``, :func:`methods_as_json`); else :meth:`peak_lr`
    trains_at: float | None = None

    def training(self, training: dict[str, Any]) -> dict[str, Any]:
        """The training block this method trains with: its peak learning rate set (``lr``,
        or ``lr_multiplier`` x the algorithm's own, :func:`algorithm_lr`) both as
        ``training.lr`` and, where the algorithm's block has one (``training.rl.lr``), there
        too, so the engines read it; ``warmup_steps`` set when declared; ``training.effopd``
        updated by the method's search overrides."""
        block = dict(training)
        if self.lr is not None or self.lr_multiplier is not None:
            lr = self.lr if self.lr is not None else \
                algorithm_lr(training, self.algorithm) * self.lr_multiplier
            block["lr"] = lr
            own = training.get(self.algorithm.block)
            if isinstance(own, dict) and "lr" in own:
                block[self.algorithm.block] = {**own, "lr": lr}
        if self.warmup_steps is not None:
            block["warmup_steps"] = self.warmup_steps
        if self.search:
            block["effopd"] = {**training.get("effopd", {}), **self.search}
        return block

    def peak_lr(self, training: dict[str, Any]) -> float:
        """The method's peak learning rate (:func:`algorithm_lr` of its training block)."""
        return algorithm_lr(self.training(training), self.algorithm)

    def as_json(self) -> dict[str, Any]:
        """The declaration as plain data (what the report commands receive)."""
        return {"name": self.name, "algorithm": self.algorithm.name, "label": self.label,
                "role": self.role, "lr": self.lr, "lr_multiplier": self.lr_multiplier,
                "warmup_steps": self.warmup_steps, "effopd": dict(self.search)}


def algorithm_lr(training: dict[str, Any], algorithm: Algorithm) -> float:
    """The peak learning rate of ``algorithm`` under ``training``: its block's own ``lr``
    when set (``training.rl.lr``), else ``training.lr``."""
    return training.get(algorithm.block, {}).get("lr") or training["lr"]


def algorithm_named(name: str | Algorithm, where: str = "training method") -> Algorithm:
    """The algorithm ``name`` (an :class:`Algorithm` is returned as it is), or an error
    naming the known ones."""
    if isinstance(name, Algorithm):
        return name
    if name not in ALGORITHMS:
        raise ValueError(f"{where}: algorithm {name!r} is not one of {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name]


def lr_baseline_name(multiplier: float) -> str:
    """The method name of OPD at ``multiplier`` x the default lr: ``opd-lr<m>x`` (%g)."""
    return f"opd-lr{multiplier:g}x"


def variant_name(variant: str) -> str:
    """The method name of the ablation's variant ``variant``: ``effopd-<variant>``."""
    return f"{EFFOPD}-{variant}"


def declare(entry: str | Mapping[str, Any]) -> Method:
    """One ``training.methods`` entry as a :class:`Method` (an algorithm's name, or a
    mapping with at least ``name`` and ``algorithm``)."""
    if isinstance(entry, str):
        algorithm = algorithm_named(entry)
        return Method(entry, algorithm, algorithm.label)
    unknown = sorted(set(entry) - set(METHOD_KEYS))
    if unknown or "name" not in entry or "algorithm" not in entry:
        raise ValueError(f"training method {dict(entry)}: needs name and algorithm, may have "
                         f"{', '.join(METHOD_KEYS[2:])}" + (f"; unknown {unknown}" if unknown
                                                            else ""))
    algorithm = algorithm_named(entry["algorithm"], f"training method {entry['name']!r}")
    if entry.get("lr") is not None and entry.get("lr_multiplier") is not None:
        raise ValueError(f"training method {entry['name']!r}: give lr or lr_multiplier, "
                         "not both")
    if entry.get("effopd") and not algorithm.searches:
        raise ValueError(f"training method {entry['name']!r}: effopd overrides, but algorithm "
                         f"{algorithm.name!r} runs no line search")
    return Method(entry["name"], algorithm, entry.get("label") or entry["name"],
                  lr=entry.get("lr"), lr_multiplier=entry.get("lr_multiplier"),
                  warmup_steps=entry.get("warmup_steps"), search=dict(entry.get("effopd") or {}))


def declared_methods(training: dict[str, Any], ablation: dict[str, Any] | None = None
                     ) -> dict[str, Method]:
    """Every method the config declares, by name, in order: ``training.methods``, then
    the learning-rate baselines (only when OPD itself is trained: they are its
    baselines), then the ablation's variants (module docstring). A name given twice is
    refused."""
    methods = [declare(entry) for entry in training.get("methods", [OPD, RL, EFFOPD])]
    if OPD in [m.name for m in methods]:
        baselines = training.get("lr_baselines", {})
        warmup = baselines.get("warmup_steps")
        for multiplier in baselines.get("multipliers", []):
            methods.append(Method(
                lr_baseline_name(multiplier), ALGORITHMS[OPD], f"OPD lr x{multiplier:g}",
                role="lr_baseline", lr_multiplier=multiplier,
                warmup_steps=training.get("warmup_steps", 0) if warmup is None else warmup))
    for name, overrides in (ablation or {}).get("variants", {}).items():
        methods.append(Method(variant_name(name), ALGORITHMS[EFFOPD], variant_name(name),
                              role="variant", search=dict(overrides)))
    by_name: dict[str, Method] = {}
    for method in methods:
        if method.name in by_name:
            raise ValueError(f"training method {method.name!r} is declared twice")
        by_name[method.name] = method
    return by_name


def methods_as_json(declared: Mapping[str, Method], training: dict[str, Any]
                    ) -> list[dict[str, Any]]:
    """Every declaration as plain data (:meth:`Method.as_json`) with ``peak_lr``, the
    learning rate it trains at under ``training`` (:meth:`Method.peak_lr`): the report
    commands' ``--methods``."""
    return [{**method.as_json(), "peak_lr": method.peak_lr(training)}
            for method in declared.values()]


def methods_from_json(rows: list[dict[str, Any]]) -> dict[str, Method]:
    """Declarations given as :meth:`Method.as_json` rows (the report commands' input), with
    :attr:`Method.trains_at` from the rows' ``peak_lr`` (:func:`methods_as_json`)."""
    return {row["name"]: Method(row["name"], algorithm_named(row["algorithm"]), row["label"],
                                role=row["role"], lr=row.get("lr"),
                                lr_multiplier=row.get("lr_multiplier"),
                                warmup_steps=row.get("warmup_steps"),
                                search=dict(row.get("effopd") or {}),
                                trains_at=row.get("peak_lr"))
            for row in rows}


def algorithm_of(name: str, declared: Mapping[str, Method] | None = None) -> Algorithm | None:
    """The algorithm the method ``name`` runs: its declaration's, else the algorithm of that
    name, else None (a name neither declared nor an algorithm's)."""
    if declared and name in declared:
        return declared[name].algorithm
    return ALGORITHMS.get(name)


def method_label(name: str, declared: Mapping[str, Method] | None = None) -> str:
    """How tables and figures name the method ``name``: its declared label, else the
    label of the algorithm of that name (OPD, RL (GRPO), EffOPD), else the name."""
    if declared and name in declared:
        return declared[name].label
    return ALGORITHMS[name].label if name in ALGORITHMS else name
