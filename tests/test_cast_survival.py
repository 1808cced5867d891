"""Interventions that survive the evaluation dtype: planted updates, exact fractions."""

from pathlib import Path

import pytest
import torch

from effopd.analysis.checkpoint_io import read_tensor, write_modified_checkpoint
from effopd.analysis.interventions import cast_survival
from effopd.analysis.scoring import Candidate, EvalSettings, check_cast_survival

NORM = "model.norm.weight"


@pytest.fixture(scope="module")
def planted(tiny_checkpoint, tmp_path_factory):
    """The tiny model with its final norm (all ones) moved: half by 1e-6, half by 0.1."""
    base = read_tensor(tiny_checkpoint, NORM)
    assert torch.equal(base, torch.ones_like(base))
    half = base.numel() // 2

    def transform(name, theta0):
        if name != NORM:
            return theta0
        delta = torch.full_like(theta0, 0.1)
        delta[:half] = 1e-6
        return theta0 + delta

    out = tmp_path_factory.mktemp("cast") / "candidate"
    return write_modified_checkpoint(tiny_checkpoint, out, transform,
                                     out_dtype=torch.float32), base.numel()


@pytest.mark.parametrize(("dtype", "fraction"), [
    (torch.bfloat16, 0.5), (torch.float16, 0.5), (torch.float32, 1.0)])
def test_cast_survival_counts_erased_elements(tiny_checkpoint, planted, dtype, fraction):
    candidate, size = planted
    survival = cast_survival(tiny_checkpoint, candidate, dtype)
    assert survival["changed"] == size
    assert survival["fraction"] == fraction


def test_an_eval_dtype_that_erases_the_intervention_is_refused(tiny_checkpoint, planted):
    candidate, _ = planted
    built = Candidate("window_L00-01", {}, (tiny_checkpoint, Path("final")), build=None)
    strict = EvalSettings(benchmark=Path("b.jsonl"), generation={"dtype": "bfloat16"},
                          device="cpu", min_cast_survival=0.6)
    with pytest.raises(ValueError, match=r"window_L00-01.*survive the cast.*bfloat16.*float32"):
        check_cast_survival(built, candidate, strict)
    lenient = EvalSettings(benchmark=Path("b.jsonl"), generation={"dtype": "bfloat16"},
                           device="cpu", min_cast_survival=0.5)
    assert check_cast_survival(built, candidate, lenient) == 0.5
    vllm_auto = EvalSettings(benchmark=Path("b.jsonl"),
                             generation={"backend": "vllm", "dtype": "auto"})
    assert vllm_auto.evaluation_dtype() == torch.float16
    fp32 = EvalSettings(benchmark=Path("b.jsonl"), generation={"dtype": "float32"})
    assert check_cast_survival(built, candidate, fp32) == 1.0
