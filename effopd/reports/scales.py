"""The cross-scale table of the model-scale sweep (config key ``scales``): one row per
student size, drawn from that scale's own tables, in the spirit of the paper's Table 3.

Every number is read from a table the scale's experiment already wrote, or is the mean of
its seeds with :func:`effopd.reports.stats.mean_ci95`; no statistic is defined here. For a
scale ``s`` with student parameters ``P_s`` (the first scale's: ``P_1``), the teacher's and
the base student's avg@n ``T_s`` and ``B_s`` (``base_models.csv``), and a method's final
accuracy of seed ``i`` ``A_m,i`` (``training_curves.csv``, the method's last step), the
columns are:

- ``student_parameters`` = ``P_s``, ``teacher_parameters``: ``n_parameters`` of the
  student's and teacher's manifests (``provenance.json``; the teacher, built by one scale
  and copied by the others, must have the same weights' sha256 in every scale);
  ``parameter_ratio`` = ``P_s / P_1``;
- ``teacher_accuracy`` = ``T_s``, ``student_base_accuracy`` = ``B_s``;
- ``<m>_lr`` (m = opd, rl, effopd): the peak learning rate the scale trained method m
  at (the method as its experiment's ``training`` block in ``provenance.json`` declares
  it, after the scale's ``lr_multiplier``; :meth:`effopd.methods.Method.peak_lr`);
- ``<m>_final_accuracy`` (m = opd, rl, effopd) = mean over seeds of ``A_m,i``, with its
  ``_ci95_low`` / ``_ci95_high`` (Student t over seeds, :func:`mean_ci95`); ``n_seeds``:
  OPD's seeds;
- ``opd_gain`` = claims row 0a (OPD's final accuracy minus the base student's, paired
  per problem, crossed seeds x problems interval) with ``opd_gain_ci95_low`` / ``_high``
  and ``opd_gain_verdict``; ``opd_gap_closed`` = its ``gap_closed``,
  ``opd_gain / (T_s - B_s)``, with its interval;
- ``<m>_embedding_cosine`` (m = opd, rl) = ``embedding_shift.csv``'s
  ``mean_cosine_mean``: mean over seeds of the mean cosine between the base and final
  embedding rows of the generated tokens (the paper's Table 3 metric), with its interval;
- ``embedding_shift_diff`` = claims row 4: (1 - OPD's mean cosine) - (1 - RL's), Welch
  interval over seeds; negative means OPD moved the embeddings less (the paper's claim),
  with ``embedding_shift_verdict``;
- ``effopd_speedup_<u>`` (u = steps, tokens, cpu_s) = the ``effopd_vs_opd`` summary row of
  ``effopd_speedup.csv``: median over seed pairs of OPD's cost to reach its plateau target
  divided by EffOPD's, bootstrap interval (``_censored``: below / above when the median
  itself is censored); ``effopd_timescale_steps``: the time-scale
  speed-up (EffOPD's curve at x equals OPD's at s x; geometric mean over pairs) and its
  interval; ``effopd_reached``: pairs in which EffOPD reached the target;
  ``null_timescale_steps``: the same time-scale estimate of OPD against OPD (must
  contain 1).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from effopd.errors import InputError
from effopd.methods import EFFOPD, OPD, RL, declared_methods
from effopd.reports.speedup import interval_text, summary_row
from effopd.reports.stats import mean_ci95
from effopd.tables import BASE_MODELS, read_table

FINAL_METHODS = (OPD, RL, EFFOPD)
SPEEDUP_UNITS = ("steps", "tokens", "cpu_s")


@dataclass(frozen=True)
class ScaleTables:
    """One scale's tables, as written by its experiment (``results/<sweep>/<scale>/``)."""

    scale: str
    base_models: pd.DataFrame
    curves: pd.DataFrame
    claims: pd.DataFrame
    speedup: pd.DataFrame
    embedding: pd.DataFrame
    provenance: dict[str, Any]


def _base(tables: ScaleTables, model: str, benchmark: str) -> float:
    rows = tables.base_models[(tables.base_models["model"] == model)
                              & (tables.base_models["benchmark"] == benchmark)]
    if len(rows) != 1:
        raise InputError(f"scale {tables.scale}: base_models has {len(rows)} rows for "
                         f"model {model!r} on benchmark {benchmark!r}, expected one")
    return float(rows["avg@n"].iloc[0])


def final_accuracies(curves: pd.DataFrame, method: str, benchmark: str) -> pd.Series:
    """Each seed's accuracy at the method's last step on ``benchmark`` (index: seed)."""
    rows = curves[(curves["method"] == method) & (curves["benchmark"] == benchmark)]
    if rows.empty:
        return pd.Series(dtype=float)
    final = rows[rows["step"] == rows["step"].max()]
    return final.set_index("seed")["avg@n"].sort_index()


def _claim(tables: ScaleTables, claim: str) -> pd.Series:
    claims = tables.claims
    if "comparison" in claims:  # the primary comparison (opd vs rl), not a sensitivity row
        claims = claims[claims["comparison"] == "primary"]
    rows = claims[claims["claim"].astype(str) == claim]
    if len(rows) != 1:
        raise InputError(f"scale {tables.scale}: claims has {len(rows)} rows for claim "
                         f"{claim}, expected one")
    return rows.iloc[0]


def _embedding(tables: ScaleTables, method: str) -> pd.Series:
    rows = tables.embedding[tables.embedding["method"] == method]
    if len(rows) != 1:
        raise InputError(f"scale {tables.scale}: embedding_shift has {len(rows)} rows for "
                         f"method {method!r}, expected one")
    return rows.iloc[0]


def _model(tables: ScaleTables, role: str) -> dict[str, Any]:
    try:
        return tables.provenance["models"][role]
    except KeyError:
        raise InputError(f"scale {tables.scale}: provenance.json has no models.{role}") from None


def _lr(tables: ScaleTables, method: str) -> float:
    """The peak learning rate the scale trained ``method`` at, as the method is declared in
    its experiment's ``training`` block (``provenance.json``)."""
    try:
        training = tables.provenance["config"]["training"]
    except KeyError:
        raise InputError(f"scale {tables.scale}: provenance.json has no config.training") from None
    methods = declared_methods(training)
    if method not in methods:
        raise InputError(f"scale {tables.scale}: provenance.json's training declares no "
                         f"method {method!r} (it has {', '.join(methods)})")
    return float(methods[method].peak_lr(training))


def scale_row(tables: ScaleTables, benchmark: str) -> dict[str, Any]:
    """One scale's row of the cross-scale table (columns in the module docstring), without
    ``parameter_ratio`` (which needs the first scale)."""
    row: dict[str, Any] = {"scale": tables.scale,
                           "student_parameters": int(_model(tables, "student")["n_parameters"]),
                           "teacher_parameters": _model(tables, "teacher").get("n_parameters"),
                           "teacher_accuracy": _base(tables, "teacher", benchmark),
                           "student_base_accuracy": _base(tables, "student", benchmark)}
    row |= {f"{method}_lr": _lr(tables, method) for method in FINAL_METHODS}
    for method in FINAL_METHODS:
        mean, low, high = mean_ci95(final_accuracies(tables.curves, method, benchmark))
        row |= {f"{method}_final_accuracy": mean, f"{method}_final_accuracy_ci95_low": low,
                f"{method}_final_accuracy_ci95_high": high}
    row["n_seeds"] = len(final_accuracies(tables.curves, OPD, benchmark))
    gain = _claim(tables, "0a")
    row |= {"opd_gain": gain["estimate"], "opd_gain_ci95_low": gain["ci95_low"],
            "opd_gain_ci95_high": gain["ci95_high"], "opd_gain_verdict": gain["verdict"],
            "opd_gap_closed": gain["gap_closed"],
            "opd_gap_closed_ci95_low": gain["gap_closed_low"],
            "opd_gap_closed_ci95_high": gain["gap_closed_high"]}
    for method in (OPD, RL):
        cosine = _embedding(tables, method)
        row |= {f"{method}_embedding_cosine": cosine["mean_cosine_mean"],
                f"{method}_embedding_cosine_ci95_low": cosine["mean_cosine_ci95_low"],
                f"{method}_embedding_cosine_ci95_high": cosine["mean_cosine_ci95_high"]}
    shift = _claim(tables, "4")
    row |= {"embedding_shift_diff": shift["estimate"],
            "embedding_shift_diff_ci95_low": shift["ci95_low"],
            "embedding_shift_diff_ci95_high": shift["ci95_high"],
            "embedding_shift_verdict": shift["verdict"]}
    effopd = summary_row(tables.speedup, "effopd_vs_opd")
    for unit in SPEEDUP_UNITS:
        column = f"speedup_{unit}"
        row |= {f"effopd_{column}": effopd[column],
                f"effopd_{column}_ci95_low": effopd[f"{column}_ci95_low"],
                f"effopd_{column}_ci95_high": effopd[f"{column}_ci95_high"],
                f"effopd_{column}_censored": effopd.get(f"{column}_censored")}
    row |= {"effopd_timescale_steps": effopd["timescale_steps"],
            "effopd_timescale_steps_ci95_low": effopd["timescale_steps_ci95_low"],
            "effopd_timescale_steps_ci95_high": effopd["timescale_steps_ci95_high"],
            "effopd_reached": effopd["reached"]}
    null = summary_row(tables.speedup, "null_opd_vs_opd")
    row |= {"null_timescale_steps": null["timescale_steps"],
            "null_timescale_steps_ci95_low": null["timescale_steps_ci95_low"],
            "null_timescale_steps_ci95_high": null["timescale_steps_ci95_high"]}
    return row


def teacher_sha256(tables: ScaleTables) -> str | None:
    """The sha256 of the teacher's weights in a scale's provenance."""
    return _model(tables, "teacher").get("files", {}).get("model.safetensors")


def cross_scale_table(scales: Sequence[ScaleTables], benchmark: str) -> pd.DataFrame:
    """The cross-scale table: one :func:`scale_row` per scale, in the given order, with
    ``parameter_ratio`` = student parameters / the first scale's. Refuses scales whose
    teachers differ (the sweep varies the student only); a scale whose teacher manifest
    has no ``n_parameters`` (a copy) takes the one that has it."""
    if not scales:
        raise InputError("cross-scale table: no scales")
    teachers = {tables.scale: teacher_sha256(tables) for tables in scales}
    if len(set(teachers.values())) != 1:
        raise InputError(f"cross-scale table: the scales' teachers differ (sha256 of "
                         f"model.safetensors: {teachers}); a sweep shares one teacher")
    table = pd.DataFrame([scale_row(tables, benchmark) for tables in scales])
    known = table["teacher_parameters"].dropna()
    table["teacher_parameters"] = int(known.iloc[0]) if len(known) else pd.NA
    table.insert(2, "parameter_ratio",
                 table["student_parameters"] / table["student_parameters"].iloc[0])
    return table


def _percent(row: pd.Series, column: str) -> str:
    low, high = row.get(f"{column}_ci95_low"), row.get(f"{column}_ci95_high")
    text = f"{100 * row[column]:.1f}"
    return text if pd.isna(low) else f"{text} [{100 * low:.1f}, {100 * high:.1f}]"


def _cosine(row: pd.Series, column: str) -> str:
    """A cosine near 1 with six decimals and its interval."""
    low, high = row.get(f"{column}_ci95_low"), row.get(f"{column}_ci95_high")
    text = f"{row[column]:.6f}"
    return text if pd.isna(low) else f"{text} [{low:.6f}, {high:.6f}]"


def cross_scale_markdown(table: pd.DataFrame) -> pd.DataFrame:
    """The Markdown view: accuracies in percent, every estimate with its interval inline."""
    lines = []
    for _, row in table.iterrows():
        lines.append({
            "scale": row["scale"],
            "student params (x 1st)": f"{int(row['student_parameters']):,} "
                                      f"({row['parameter_ratio']:.2f}x)",
            "teacher %": f"{100 * row['teacher_accuracy']:.1f}",
            "student base %": f"{100 * row['student_base_accuracy']:.1f}",
            "lr OPD / RL": f"{row['opd_lr']:.3g} / {row['rl_lr']:.3g}",
            "OPD final %": _percent(row, "opd_final_accuracy"),
            "RL final %": _percent(row, "rl_final_accuracy"),
            "OPD gain, points": _percent(row, "opd_gain") + f" ({row['opd_gain_verdict']})",
            "gap closed %": _percent(row, "opd_gap_closed"),
            "embedding cosine OPD": _cosine(row, "opd_embedding_cosine"),
            "embedding cosine RL": _cosine(row, "rl_embedding_cosine"),
            "shift OPD - RL": interval_text(row, "embedding_shift_diff")
                              + f" ({row['embedding_shift_verdict']})",
            "EffOPD speed-up, steps": interval_text(row, "effopd_speedup_steps"),
            "time-scale, steps": interval_text(row, "effopd_timescale_steps"),
            "speed-up, tokens": interval_text(row, "effopd_speedup_tokens"),
            "speed-up, CPU s": interval_text(row, "effopd_speedup_cpu_s"),
            "null time-scale": interval_text(row, "null_timescale_steps"),
            "seeds": int(row["n_seeds"]),
        })
    return pd.DataFrame(lines)


def load_scale(scale: str, base_models: str | Path, curves: str | Path, claims: str | Path,
               speedup: str | Path, embedding: str | Path, provenance: str | Path
               ) -> ScaleTables:
    """Read one scale's tables (validated) and provenance."""
    try:
        record = json.loads(Path(provenance).read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"{provenance}: cannot read the provenance JSON: {err}") from None
    return ScaleTables(scale, read_table(base_models, BASE_MODELS), read_table(curves),
                       read_table(claims), read_table(speedup), read_table(embedding), record)


def write_cross_scale(scales: Sequence[str], base_models: Sequence[str | Path],
                      curves: Sequence[str | Path], claims: Sequence[str | Path],
                      speedup: Sequence[str | Path], embedding: Sequence[str | Path],
                      provenance: Sequence[str | Path], benchmark: str,
                      out_csv: str | Path) -> pd.DataFrame:
    """Write cross_scale.csv (every column) and cross_scale.md beside it; the file lists are
    in the order of ``scales``."""
    from effopd.io import atomic_path, atomic_write_text, markdown_table

    lists = (base_models, curves, claims, speedup, embedding, provenance)
    if any(len(files) != len(scales) for files in lists):
        raise InputError(f"tabulate-cross-scale: {len(scales)} scales but "
                         f"{[len(files) for files in lists]} files per table")
    loaded = [load_scale(scale, *files) for scale, *files in zip(scales, *lists, strict=True)]
    table = cross_scale_table(loaded, benchmark)
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    atomic_write_text(Path(out_csv).with_suffix(".md"),
                      markdown_table(cross_scale_markdown(table)) + "\n")
    return table
