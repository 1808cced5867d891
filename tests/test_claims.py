"""The claims verdict rule on exact small cases, and the table built from per-run files."""

import pandas as pd
import pytest

from effopd.reports.claims import CLAIMS, claims_table, mlp_share, verdict


@pytest.mark.parametrize(("differences", "expected"), [
    ([0.10, 0.12, 0.11], "holds"),             # CI entirely above 0
    ([-0.10, -0.12, -0.11], "does not hold"),  # entirely below
    ([0.3, -0.2, 0.05], "inconclusive"),       # straddles 0
    ([0.5], "inconclusive"),                   # one seed: no interval
])
def test_verdict_rule(differences, expected):
    assert verdict(differences, +1) == expected


def test_verdict_direction_flips():
    assert verdict([-0.10, -0.12, -0.11], -1) == "holds"


def test_claims_table_has_every_claim():
    rows = []
    for claim in (1, 2, 3, 4):
        for seed in range(3):
            rows += [{"claim": claim, "method": "opd", "seed": seed, "value": 1.0 + seed / 100},
                     {"claim": claim, "method": "rl", "seed": seed, "value": 0.5}]
    rows += [{"claim": 5, "method": "effopd", "seed": s, "value": v}
             for s, v in enumerate([3.0, 2.9, 3.1])]
    table = claims_table(pd.DataFrame(rows))
    assert list(table["claim"]) == [c.number for c in CLAIMS]
    assert set(table["verdict"]) == {"holds"} and (table["n_seeds"] == 3).all()
    assert "OPD - RL 0.51" in table.loc[0, "measured (mean [95% CI])"]


def test_mlp_share_of_squared_norm(tmp_path):
    pd.DataFrame({
        "step": [4, 4, 4, 4, 2], "layer": [0, 0, 1, None, 0],
        "group": ["mlp", "attention", "mlp", "embedding", "mlp"],
        "delta_norm": [3.0, 4.0, 0.0, 100.0, 50.0],
    }).to_csv(tmp_path / "module_allocation.csv", index=False)
    assert mlp_share(tmp_path) == pytest.approx(9 / 25)  # final step, block tensors only
