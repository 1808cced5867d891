"""Benchmark: the suite's streaming analysis against the authors' naive method.

Both methods compute the same numbers for a synthetic series (a random
Qwen3-shaped base and two checkpoints with planted low-rank updates, float32
safetensors, tied embeddings): per-tensor update norms of every tensor, the
spectra of every 2-D block weight of each checkpoint, and the overlap of each
checkpoint's top-k subspaces with the final update's.

- suite: ``effopd.analysis.weight_pass.stream_updates``, the pass of
  ``effopd analyze``: one tensor at a time, each tensor of each checkpoint read
  once for its norms, spectrum and bases (one float64 Gram eigh per matrix and
  checkpoint, bases of the final update kept in memory, nothing but tables
  written).
- naive: as the authors' ``Analysis/eval/svd.py`` then ``upd_rank.py``: load
  the base and each checkpoint in full with ``from_pretrained``, full
  ``torch.linalg.svd`` of every 2-D attention/MLP update keeping U, S and V,
  ``torch.save`` them per checkpoint, and read them back for the metrics.

Each method runs in its own subprocess, so ``ru_maxrss`` is its own peak; a
third subprocess that only imports the libraries gives the baseline. Linux
carries a parent's peak RSS over into a child's ``ru_maxrss`` across
fork/exec, so the driver itself never imports torch and the synthetic series
is written by a subprocess too. Time is wall time (``time.perf_counter``) of
the analysis after the imports; disk is what the method wrote.

Threads: both methods run with the same torch thread count (``--threads``,
default 1). On a small shared machine, multi-threaded MKL/OpenMP kernels stall
at barriers whenever another process holds a core (a 1024 x 1024 ``eigh``
went from 0.3 s to 4 s on 2 busy cores), which makes the timings swing by an
order of magnitude; pass ``--threads 0`` for torch's default on a quiet box.
Usage::

    python benchmarks/analysis_speed.py                      # defaults fit a 2-core box
    python benchmarks/analysis_speed.py --layers 28          # full Qwen3-0.6B shape
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QWEN3_06B = {"hidden": 1024, "intermediate": 3072, "layers": 28, "heads": 16, "kv_heads": 8,
             "head_dim": 128, "vocab": 151936}
KS = (1, 2, 4, 8, 16, 32, 64)
K_LIST = (1, 2, 4, 8)
LABELS = {"step-early": 0.3, "step-final": 1.0}  # label -> fraction of the planted update
FINAL = "step-final"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=4,
                        help="transformer blocks (Qwen3-0.6B has 28; 4 keeps a 2-core run < 5 min)")
    parser.add_argument("--hidden", type=int, default=QWEN3_06B["hidden"])
    parser.add_argument("--intermediate", type=int, default=QWEN3_06B["intermediate"])
    parser.add_argument("--vocab", type=int, default=QWEN3_06B["vocab"])
    parser.add_argument("--heads", type=int, default=QWEN3_06B["heads"])
    parser.add_argument("--kv-heads", type=int, default=QWEN3_06B["kv_heads"])
    parser.add_argument("--head-dim", type=int, default=QWEN3_06B["head_dim"])
    parser.add_argument("--rank", type=int, default=8, help="rank of the planted update")
    parser.add_argument("--device", default="auto", help="cpu, cuda, or auto (cuda if available)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for both methods (0: torch's default)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the synthetic checkpoints go (default: a temporary dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--worker", choices=["setup", "baseline", "suite", "naive"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- setup


def build_series(args: argparse.Namespace, data: Path) -> dict[str, Path]:
    """Write base + planted checkpoints; return label -> directory (base under "base")."""
    import torch

    from effopd.analysis.synthetic import planted_series, qwen3_config, write_random_qwen3

    config = qwen3_config(vocab_size=args.vocab, hidden_size=args.hidden,
                          intermediate_size=args.intermediate, num_hidden_layers=args.layers,
                          num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
                          head_dim=args.head_dim, tie_word_embeddings=True)
    base = write_random_qwen3(data / "base", config, seed=0, dtype=torch.float32)
    series = planted_series(base, data, LABELS, rank=args.rank, scale=0.5, noise=1e-4)
    return {"base": base, **series}


# --------------------------------------------------------------------------- workers


def run_suite(data: Path, out: Path, device: str) -> None:
    from effopd.analysis.weight_pass import stream_updates
    from effopd.io import write_table

    ckpts = {label: data / label for label in LABELS}
    result = stream_updates(data / "base", ckpts, data / FINAL, ks=KS, k_list=K_LIST,
                            device=device)
    for label in ckpts:
        write_table(result.norms[label], out / f"norms_{label}.csv")
    write_table(result.spectra, out / "spectra.csv")
    write_table(result.alignment, out / "alignment.csv")


def run_naive(data: Path, out: Path, device: str) -> None:
    """The authors' pipeline: two full models, full SVD with U, S, V saved, metrics read back."""
    import pandas as pd
    import torch
    from transformers import AutoModelForCausalLM

    from effopd.analysis.alignment import alignment_row
    from effopd.analysis.spectra import Subspaces, spectrum_row
    from effopd.io import write_table

    parts = ("self_attn", "mlp")
    base_model = AutoModelForCausalLM.from_pretrained(data / "base", dtype=torch.float32).to(device)
    for label in LABELS:
        model = AutoModelForCausalLM.from_pretrained(data / label, dtype=torch.float32).to(device)
        components = {}
        with torch.no_grad():
            for index, (base_layer, layer) in enumerate(zip(base_model.model.layers,
                                                            model.model.layers, strict=True)):
                layer_svd = {}
                for part in parts:
                    for name, param in getattr(layer, part).named_parameters():
                        diff = param - getattr(base_layer, part).get_parameter(name)
                        if diff.dim() == 2:
                            u, s, vh = torch.linalg.svd(diff, full_matrices=False)
                            layer_svd[f"{part}_{name}_U"] = u.cpu()
                            layer_svd[f"{part}_{name}_S"] = s.cpu()
                            layer_svd[f"{part}_{name}_Vt"] = vh.cpu()
                components[f"layer_{index}"] = layer_svd
            norms = [{"name": name,
                      "delta_norm": float((p.double() - q.double()).norm()),
                      "base_norm": float(q.double().norm())}
                     for (name, p), (_, q) in zip(model.named_parameters(),
                                                  base_model.named_parameters(), strict=True)]
        (out / label).mkdir(parents=True, exist_ok=True)
        torch.save(components, out / label / "svd_components.pt")
        write_table(pd.DataFrame(norms), out / f"norms_{label}.csv")
        del model, components
    del base_model

    def bases(layer_svd: dict, key: str, k: int) -> Subspaces:
        u, s, vh = (layer_svd[f"{key}_{x}"] for x in ("U", "S", "Vt"))
        return Subspaces(u[:, :k].double(), s[:k].double(), vh[:k].mT.double())

    final = torch.load(out / FINAL / "svd_components.pt")
    spectra, alignment = [], []
    for label in LABELS:
        components = torch.load(out / label / "svd_components.pt")
        for layer_key, layer_svd in components.items():
            index = int(layer_key.split("_")[1])
            for key in sorted({k.rsplit("_", 1)[0] for k in layer_svd}):
                part = next(p for p in parts if key.startswith(f"{p}_"))
                name = f"model.layers.{index}.{part}.{key[len(part) + 1:]}"
                s = layer_svd[f"{key}_S"].double()
                spectra.append({"checkpoint": label, "name": name, **spectrum_row(s, KS)})
                kmax = min(max(K_LIST), s.numel())
                alignment.append({"checkpoint": label, "name": name,
                                  **alignment_row(bases(layer_svd, key, kmax),
                                                  bases(final[layer_key], key, kmax), K_LIST)})
    write_table(pd.DataFrame(spectra), out / "spectra.csv")
    write_table(pd.DataFrame(alignment), out / "alignment.csv")


def directory_mib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def worker(args: argparse.Namespace) -> None:
    """Run one method in this process and print one JSON line with its measurements."""
    import pandas  # noqa: F401  (imports count towards the baseline, not the timing)
    import torch
    import transformers  # noqa: F401

    from effopd.device import resolve_device

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = str(resolve_device(args.device))
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if args.worker == "setup":
        series = build_series(args, args.data)
        print(json.dumps({"setup_s": time.perf_counter() - start,
                          "checkpoint_mib": directory_mib(series["base"])}))
        return
    if args.worker == "suite":
        run_suite(args.data, args.out, device)
    elif args.worker == "naive":
        run_naive(args.data, args.out, device)
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    gpu_peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else 0.0
    print(json.dumps({"method": args.worker, "time_s": elapsed, "peak_rss_mib": peak,
                      "gpu_peak_mib": gpu_peak, "disk_mib": directory_mib(args.out),
                      "device": device, "threads": torch.get_num_threads()}))


# --------------------------------------------------------------------------- driver


def measure(method: str, args: argparse.Namespace, data: Path, out: Path) -> dict:
    shape = ["--layers", args.layers, "--hidden", args.hidden, "--intermediate",
             args.intermediate, "--vocab", args.vocab, "--heads", args.heads, "--kv-heads",
             args.kv_heads, "--head-dim", args.head_dim, "--rank", args.rank]
    command = [sys.executable, __file__, "--worker", method, "--data", str(data),
               "--out", str(out / method), "--device", args.device,
               "--threads", str(args.threads), *map(str, shape)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{method} worker failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def max_difference(out: Path, table: str, columns_prefix: tuple[str, ...]) -> float:
    """Largest |suite - naive| over the numeric columns both tables share (by checkpoint, name)."""
    import pandas as pd

    suite = pd.read_csv(out / "suite" / table)
    naive = pd.read_csv(out / "naive" / table)
    merged = suite.merge(naive, on=["checkpoint", "name"], suffixes=("_s", "_n"))
    assert len(merged) == len(suite) == len(naive), "the two methods covered different matrices"
    columns = [c for c in suite.columns if c.startswith(columns_prefix)]
    return max(float((merged[f"{c}_s"] - merged[f"{c}_n"]).abs().max()) for c in columns)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return
    root = args.workdir or Path(tempfile.mkdtemp(prefix="effopd-bench-"))
    data, out = root / "data", root / "out"
    shutil.rmtree(out, ignore_errors=True)
    try:
        setup = measure("setup", args, data, out)
        print(f"shape: layers={args.layers} hidden={args.hidden} intermediate="
              f"{args.intermediate} heads={args.heads} kv_heads={args.kv_heads} head_dim="
              f"{args.head_dim} vocab={args.vocab} tied embeddings, float32; planted rank "
              f"{args.rank}; checkpoints {list(LABELS)}; {setup['checkpoint_mib']:.0f} MiB per "
              f"checkpoint; series written in {setup['setup_s']:.1f} s")
        load = os.getloadavg()[0]
        results = {m: measure(m, args, data, out) for m in ("baseline", "suite", "naive")}
        base_rss = results["baseline"]["peak_rss_mib"]
        print(f"device: {results['suite']['device']}, torch threads: "
              f"{results['suite']['threads']}, load average before the runs: {load:.1f} on "
              f"{os.cpu_count()} cores; baseline RSS after imports: {base_rss:.0f} MiB")
        print("| method | time s | peak RSS MiB | above baseline MiB | disk MiB | speed-up |")
        print("| --- | --- | --- | --- | --- | --- |")
        naive_time = results["naive"]["time_s"]
        for method in ("naive", "suite"):
            r = results[method]
            print(f"| {method} | {r['time_s']:.1f} | {r['peak_rss_mib']:.0f} | "
                  f"{r['peak_rss_mib'] - base_rss:.0f} | {r['disk_mib']:.2f} | "
                  f"{naive_time / r['time_s']:.2f}x |")
        print("max |suite - naive|: spectra "
              f"{max_difference(out, 'spectra.csv', ('energy_share', 'stable_rank')):.2e} "
              "(energy shares, stable rank); effective rank "
              f"{max_difference(out, 'spectra.csv', ('effective_rank',)):.2e}; overlaps "
              f"{max_difference(out, 'alignment.csv', ('left_overlap', 'right_overlap')):.2e}")
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
