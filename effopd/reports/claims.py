"""The claims table: each claim of SPEC section 1, its metric, the measured value, a verdict.

Every claim compares OPD with the RL baseline (claim 5: EffOPD with OPD) on a
metric computed per seed, from committed per-run results only. The verdict
rule, the same for every claim, is a paired comparison over seeds:

    d_s = metric(OPD, seed s) - metric(RL, seed s)   (claim 5: speed-up_s - 1)
    95% CI of mean(d) with Student t (n - 1 degrees of freedom)
    holds            if the CI lies entirely on the side the paper claims,
    does not hold    if it lies entirely on the other side,
    inconclusive     otherwise, or with fewer than two seeds.

Metrics (``.../analysis/<method>/seed<seed>/`` files of ``effopd analyze``):

1. accuracy gain per unit of update: (acc_T - acc_0) / ||Delta_T||_F, block weights;
2. MLP share of the final update: sum ||Delta||^2 over MLP block tensors / over all
   block tensors (the paper: OPD puts more of its update into MLPs);
3. early alignment: left top-k subspace overlap of the early update (the checkpoint
   the scaling analysis calls early: closest to ``early_fraction`` of training) with
   the final one, mean over 2-D block weights;
4. embedding stability: mean cosine of base vs trained embedding rows over the
   tokens the final model generated;
5. EffOPD speed-up in steps to OPD's final accuracy (effopd_speedup.csv); a seed
   that never reaches it counts as speed-up 1 (no gain).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from effopd.reports.analysis import early_step
from effopd.reports.runs import run_of
from effopd.reports.stats import mean_ci95


@dataclass(frozen=True)
class Claim:
    number: int
    statement: str
    metric: str
    direction: int  # +1: the paper claims OPD's metric is higher (or the speed-up > 1)


CLAIMS = [
    Claim(1, "OPD buys more reasoning accuracy per unit of parameter change than RL",
          "accuracy gain per unit ||Delta_T||_F (block weights)", +1),
    Claim(2, "OPD concentrates its update on the modules that matter (MLP more than "
             "attention); RL spreads it more evenly", "MLP share of ||Delta_T||^2", +1),
    Claim(3, "OPD's update is low-rank and an early checkpoint's dominant subspace already "
             "aligns with the final update's", "left top-k overlap, early vs final update", +1),
    Claim(4, "OPD moves the token embeddings less than RL (higher cosine to the base)",
          "mean cosine(base, trained) of generated-token embedding rows", +1),
    Claim(5, "EffOPD reaches OPD's final accuracy about 3x faster, with comparable final "
             "accuracy", "speed-up in steps to OPD's final accuracy (EffOPD / OPD)", +1),
]


def gain_per_norm(run_dir: Path, eval_csv: Path) -> float:
    scores = pd.read_csv(eval_csv).sort_values("step")
    norms = pd.read_csv(run_dir / "update_norms.csv").sort_values("step")
    gain = scores["avg@n"].iloc[-1] - scores.loc[scores["step"] == 0, "avg@n"].iloc[0]
    return float(gain / norms["block_norm"].iloc[-1])


def mlp_share(run_dir: Path) -> float:
    table = pd.read_csv(run_dir / "module_allocation.csv")
    final = table[(table["step"] == table["step"].max()) & table["layer"].notna()]
    energy = final["delta_norm"] ** 2
    return float(energy[final["group"] == "mlp"].sum() / energy.sum())


def early_overlap(run_dir: Path, k: int, early_fraction: float) -> float:
    steps = pd.read_csv(run_dir / "update_norms.csv")["step"]
    table = pd.read_csv(run_dir / "alignment.csv")
    early = table[table["step"] == early_step(steps, early_fraction)]
    return float(early[f"left_overlap_k{k}"].mean())


def embedding_cosine(run_dir: Path) -> float:
    return float(pd.read_csv(run_dir / "embedding_cosine.csv")["cosine"].mean())


def per_seed_values(run_dirs: list[str | Path], eval_csvs: list[str | Path],
                    speedup_csv: str | Path, k: int, early_fraction: float) -> pd.DataFrame:
    """One row per (claim, method, seed) with the claim's metric."""
    rows = []
    evals = {run_of(Path(p).parent): Path(p) for p in eval_csvs}
    for run_dir in map(Path, run_dirs):
        method, seed = run_of(run_dir)
        if method not in ("opd", "rl"):
            continue
        values = {1: gain_per_norm(run_dir, evals[(method, seed)]), 2: mlp_share(run_dir),
                  3: early_overlap(run_dir, k, early_fraction), 4: embedding_cosine(run_dir)}
        rows += [{"claim": c, "method": method, "seed": seed, "value": v}
                 for c, v in values.items()]
    speedup = pd.read_csv(speedup_csv)
    for row in speedup[speedup["seed"].astype(str).str.isdigit()].itertuples():
        value = row.speedup_steps if str(row.effopd_reached) == "True" else 1.0
        rows.append({"claim": 5, "method": "effopd", "seed": int(row.seed),
                     "value": 1.0 if math.isnan(value) else float(value)})
    return pd.DataFrame(rows)


def _interval(values) -> str:
    mean, low, high = mean_ci95(list(values))
    if math.isnan(low):
        return f"{mean:.4g}"
    return f"{mean:.4g} [{low:.4g}, {high:.4g}]"


def verdict(differences: list[float], direction: int) -> str:
    """'holds', 'does not hold' or 'inconclusive' from the 95% CI of the paired differences."""
    mean, low, high = mean_ci95(differences)
    if len(differences) < 2 or math.isnan(low):
        return "inconclusive"
    if direction * low > 0 and direction * high > 0:
        return "holds"
    if direction * low < 0 and direction * high < 0:
        return "does not hold"
    return "inconclusive"


def claims_table(values: pd.DataFrame) -> pd.DataFrame:
    """The claims table (see the module docstring for the rule)."""
    rows = []
    for claim in CLAIMS:
        data = values[values["claim"] == claim.number]
        if claim.number == 5:
            treated = data.set_index("seed")["value"]
            differences = list(treated - 1.0)
            measured = f"EffOPD/OPD speed-up {_interval(treated)} (paper: about 3x)"
        else:
            opd = data[data["method"] == "opd"].set_index("seed")["value"]
            rl = data[data["method"] == "rl"].set_index("seed")["value"]
            paired = opd.index.intersection(rl.index)
            differences = list(opd[paired] - rl[paired])
            measured = (f"OPD {_interval(opd)}; RL {_interval(rl)}; "
                        f"OPD - RL {_interval(differences)}")
        rows.append({"claim": claim.number, "paper_statement": claim.statement,
                     "metric": claim.metric, "measured (mean [95% CI])": measured,
                     "n_seeds": len(differences),
                     "verdict": verdict(differences, claim.direction)})
    return pd.DataFrame(rows)


def write_claims(run_dirs: list[str | Path], eval_csvs: list[str | Path],
                 speedup_csv: str | Path, k: int, early_fraction: float,
                 out_csv: str | Path) -> pd.DataFrame:
    """Write claims.csv and claims.md."""
    from effopd.io import write_table

    table = claims_table(per_seed_values(run_dirs, eval_csvs, speedup_csv, k,
                                         early_fraction))
    write_table(table, out_csv)
    return table
