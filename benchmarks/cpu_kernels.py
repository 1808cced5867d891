"""CPU time of the tiny default's training computation under each CPU-kernel level.

One fresh process per level (the libraries read their variables when loaded): a Qwen3
model of the tiny student's shape (config/config.yaml), 256 sequences x 64 tokens,
forward + backward + AdamW step, repeated; prints process CPU seconds per step and the
ratio to ``avx2``, side by side, and the CPU's vendor (``portable`` is the level that is
bit-exact across Intel and AMD; ``avx2`` only across Intel CPUs).

    python benchmarks/cpu_kernels.py [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from effopd.cpu_kernels import LEVELS, cpu_vendor, kernel_env  # noqa: E402

STEP = r"""
import json, sys, time, torch, yaml
from transformers import Qwen3Config, Qwen3ForCausalLM
torch.set_num_threads(1)
torch.manual_seed(0)
arch = yaml.safe_load(open(sys.argv[1]))["models"]["student"]["arch"]
model = Qwen3ForCausalLM(Qwen3Config(vocab_size=103, **arch))
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
ids = torch.randint(0, 103, (256, 64))
times = []
for step in range(int(sys.argv[2]) + 1):
    start = time.process_time()
    loss = model(input_ids=ids, labels=ids).loss
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    times.append(time.process_time() - start)
print(json.dumps({"cpu_s": sorted(times[1:])[len(times[1:]) // 2],
                  "capability": torch.backends.cpu.get_cpu_capability()}))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    base = {k: v for k, v in os.environ.items()
            if k not in {n for env in LEVELS.values() for n in env}}
    rows = {}
    for level in ("avx2", "portable", "native"):
        env = {**base, **kernel_env(level), "OMP_NUM_THREADS": "1"}
        done = subprocess.run([sys.executable, "-c", STEP, str(ROOT / "config" / "config.yaml"),
                               str(args.steps)], env=env, capture_output=True, text=True,
                              check=True)
        rows[level] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"CPU: {cpu_vendor()}; median CPU s of one training step of the tiny student "
          f"(256 x 64 tokens, {args.steps} steps), one thread\n")
    print("| level | torch capability | CPU s / step | x avx2 |")
    print("| --- | --- | --- | --- |")
    for level, row in rows.items():
        print(f"| {level} | {row['capability']} | {row['cpu_s']:.3f} | "
              f"{row['cpu_s'] / rows['avx2']['cpu_s']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
