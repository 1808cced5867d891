"""Fault injection on the smoke config: kills, corrupt files, stale runs, a full disk.

Builds the smoke data and models once through the ``effopd`` commands the
workflow runs (make-task, build-tokenizer, build-model, prepare-benchmark),
then, on EffOPD (the method with steps, line searches and the most
checkpoints):

1. **kills**: an uninterrupted reference run; then a run SIGKILLed K times at
   random moments (during a step, during a line search, during a checkpoint
   write: the kill follows the trainer's log line that opens that phase after a
   random delay) and resumed each time. Its final checkpoint must equal the
   reference's bit for bit (sha256 of ``model.safetensors``), its log the
   reference's deterministic columns.
2. **corruptions**: bytes flipped in a checkpoint's weights and in its
   manifest, a truncated weight file, an overwritten safetensors header in a
   manifest-less transformers-style ``checkpoint-N``, (full) a corrupt training
   state and tokenizer file; each must be refused by ``effopd evaluate`` /
   ``effopd analyze`` / resume with the file named, one line, non-zero exit.
3. **stale runs**: a changed config key (``training.lr``), (full) a rebuilt
   student and changed training data: ``effopd train`` on the old run
   directory must refuse, naming the differing key and the directory.
4. **full disk**: the run directory on a size-limited tmpfs (``mount -t tmpfs
   -o size=...``, needs root) that fills during a checkpoint write: nothing
   half-written may remain (no temporary directory, every checkpoint verifies).

Prints one row per fault and, as its last line,
``kills survived K/K, corruptions refused C/C, stale resumes refused S/S, partial writes P``.

    python tools/fault_injection.py --quick     # K = 3, C = 4, S = 1 (a few minutes)
    python tools/fault_injection.py             # K = 10, C = 7, S = 3
    python tools/fault_injection.py --inputs    # bad inputs refused K/K (bad_inputs.py)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from effopd.config import load_config  # noqa: E402
from effopd.errors import CheckpointError  # noqa: E402
from effopd.models.checkpoint import (  # noqa: E402
    MANIFEST_NAME,
    TRAINING_STATE_NAME,
    verify_checkpoint,  # noqa: E402
)
from effopd.provenance import sha256_file  # noqa: E402

EFFOPD = [sys.executable, "-m", "effopd.cli"]
METHOD = "effopd"
PHASES = {"step": re.compile(r"step (\d+): rollout"),
          "search": re.compile(r"step (\d+): line search"),
          "write": re.compile(r"step (\d+): writing checkpoint")}
RESUMED = re.compile(r"resumed .* from step (\d+)")
DETERMINISTIC = ["step", "loss", "reverse_kl", "batch_accuracy", "response_tokens", "lr",
                 "prompts", "responses", "val_responses", "val_tokens"]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}


def effopd(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*EFFOPD, *map(str, args)], capture_output=True, text=True,
                            env=env(), cwd=REPO)
    if check and result.returncode != 0:
        raise SystemExit(f"effopd {args[0]} failed:\n{result.stderr[-3000:]}")
    return result


# --------------------------------------------------------------------------- set-up


def build_inputs(config: dict, work: Path) -> dict[str, Path]:
    """Data, tokenizer, teacher, student and the validation benchmark of the smoke config."""
    data, models = work / "data", work / "models"
    effopd("make-task", "--spec", json.dumps(config["task"]), "--out-dir", data)
    effopd("build-tokenizer", "--prompt", json.dumps(config["prompt"]), "--out",
           work / "tokenizer")
    for role in ("teacher", "student"):
        effopd("build-model", "--spec", json.dumps(config["models"][role]), "--prompt",
               json.dumps(config["prompt"]), "--tokenizer", work / "tokenizer", "--train",
               data / "train.jsonl", "--out", models / role, "--log-csv", work / f"sft_{role}.csv",
               "--threads", "1")
    val = config["training"]["effopd"]["validation_benchmark"]
    effopd("prepare-benchmark", "--spec", json.dumps(config["benchmarks"][val]),
           "--task-file", data / "val.jsonl", "--out", work / "val.jsonl")
    return {"student": models / "student", "teacher": models / "teacher",
            "train": data / "train.jsonl", "val": work / "val.jsonl",
            "test": data / "test.jsonl"}


def train_args(config: dict, inputs: dict[str, Path], run: Path, training: dict | None = None,
               **replace: Path) -> list[str]:
    files = {**inputs, **replace}
    return ["train", "--method", METHOD, "--seed", "0",
            "--training", json.dumps(training or config["training"]),
            "--grading", json.dumps(config["grading"]), "--prompt", json.dumps(config["prompt"]),
            "--student", str(files["student"]), "--teacher", str(files["teacher"]),
            "--train", str(files["train"]), "--val", str(files["val"]),
            "--run-dir", str(run / "run"), "--log-csv", str(run / "log.csv"),
            "--search-csv", str(run / "search.csv"), "--index-csv", str(run / "index.csv"),
            "--threads", "1"]


def final_checkpoint(run: Path) -> Path:
    return sorted((run / "run" / "checkpoints").glob("step_*"))[-1]


# --------------------------------------------------------------------------- kills


def run_and_kill(args: list[str], phase: str, min_step: int, delay: float
                 ) -> dict[str, object]:
    """Start ``effopd train``; SIGKILL it ``delay`` s after its first ``phase`` log line
    with a step >= ``min_step``. Returns what happened."""
    proc = subprocess.Popen([*EFFOPD, *args], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True, env=env(), cwd=REPO)
    outcome: dict[str, object] = {"phase": phase, "killed_at_step": None, "resumed_from": 0}
    lines: list[str] = []

    def watch() -> None:
        timer = None
        for line in proc.stderr:
            lines.append(line)
            resumed = RESUMED.search(line)
            if resumed:
                outcome["resumed_from"] = int(resumed.group(1))
            match = PHASES[phase].search(line)
            if match and timer is None and int(match.group(1)) >= min_step:
                outcome["killed_at_step"] = int(match.group(1))
                timer = threading.Timer(delay, proc.send_signal, (signal.SIGKILL,))
                timer.start()

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    proc.wait()
    reader.join(timeout=10)  # a child that outlives the kill would hold stderr open
    outcome["rc"] = proc.returncode
    outcome["killed"] = proc.returncode == -signal.SIGKILL
    outcome["stderr"] = "".join(lines)
    outcome["orphans"] = reap_orphans(args[args.index("--run-dir") + 1])
    return outcome


def reap_orphans(marker: str, wait_s: float = 3.0) -> int:
    """Processes still running with ``marker`` in their command line (children that
    outlived the killed trainer, e.g. grading workers); killed, and counted."""
    deadline = time.monotonic() + wait_s
    while True:
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline and int(pid) != os.getpid():
                found.append(int(pid))
        if not found or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for pid in found:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return len(found)


def progress(run: Path) -> int:
    """The step a resume would start from: the newest checkpoint with a training state."""
    states = sorted((run / "run" / "checkpoints").glob(f"step_*/{TRAINING_STATE_NAME}"))
    return int(states[-1].parent.name.split("_")[1]) if states else 0


def checkpoint_write_seconds(stderr: str) -> float:
    """Mean time between the trainer's "writing checkpoint" and "checkpoint written" lines."""
    stamp = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*step \d+: "
                       r"(writing checkpoint|checkpoint written)")
    times = [(time.mktime(time.strptime(m.group(1)[:19], "%Y-%m-%d %H:%M:%S"))
              + int(m.group(1)[20:]) / 1000, m.group(2))
             for m in map(stamp.match, stderr.splitlines()) if m]
    spans = [b[0] - a[0] for a, b in zip(times, times[1:], strict=False)
             if a[1] == "writing checkpoint" and b[1] == "checkpoint written"]
    return sum(spans) / len(spans) if spans else 0.0


def kill_target(phase: str, done: int, save: list[int], steps: int, last: bool,
                rng: random.Random) -> tuple[str, int]:
    """A (phase, step) to kill at, after checkpoint ``done``: one of the next two
    candidate steps. Line searches follow power-of-two steps, writes the save steps.
    Only the last kill may aim at the final step's search or write (a kill there can
    land after the run has ended); the others fall back to an earlier rollout.
    """
    searches = [s for s in range(done + 1, steps + 1) if s & (s - 1) == 0]
    candidates = {"step": list(range(done + 1, steps)),
                  "search": [s for s in searches if s < steps or last],
                  "write": [s for s in save if s > done and (s < steps or last)]}[phase]
    if not candidates:
        phase, candidates = "step", [min(done + 1, steps)]
    return phase, rng.choice(candidates[:2])


def kill_campaign(config: dict, inputs: dict[str, Path], work: Path, kills: int,
                  rng: random.Random) -> tuple[list[dict], int, dict[str, object]]:
    """The reference run, then ``kills`` killed-and-resumed runs and the final resume."""
    reference = work / "reference"
    started = time.perf_counter()
    log = effopd(*train_args(config, inputs, reference)).stderr
    reference_s = time.perf_counter() - started
    write_s = checkpoint_write_seconds(log)
    steps, every = config["training"]["steps"], config["training"]["save_every"]
    save = sorted(set(range(every, steps + 1, every)) | {steps} |
                  {s for s in range(1, steps + 1) if s & (s - 1) == 0})  # EffOPD's
    split = work / "killed"
    rows, pending = [], None
    for number in range(1, kills + 1):
        phase, min_step = kill_target(("step", "search", "write")[(number - 1) % 3],
                                      progress(split), save, steps, number == kills, rng)
        delay = rng.uniform(0.0, write_s if phase == "write" else 0.5)
        outcome = run_and_kill(train_args(config, inputs, split), phase, min_step, delay)
        partial = sorted(p.name for p in (split / "run" / "checkpoints").glob(".step_*")) \
            if (split / "run" / "checkpoints").exists() else []
        if pending is not None:  # this run resumed after the previous kill
            pending["resumed_ok"] = "Traceback" not in outcome["stderr"]
        row = {"fault": f"kill {number}", "phase": phase, "after_marker_s": round(delay, 2),
               "killed_at_step": outcome["killed_at_step"],
               "resumed_from": outcome["resumed_from"], "killed": outcome["killed"],
               "orphan_processes": outcome["orphans"], "temp_dirs_left": len(partial)}
        if not outcome["killed"]:
            row["note"] = f"finished (rc {outcome['rc']}) before the kill"
        rows.append(row)
        pending = row
    final = subprocess.run([*EFFOPD, *train_args(config, inputs, split)], capture_output=True,
                           text=True, env=env(), cwd=REPO)
    if pending is not None:
        pending["resumed_ok"] = final.returncode == 0
    same = sha256_file(final_checkpoint(split) / "model.safetensors") == \
        sha256_file(final_checkpoint(reference) / "model.safetensors")
    log_same = pd.read_csv(split / "log.csv")[DETERMINISTIC].equals(
        pd.read_csv(reference / "log.csv")[DETERMINISTIC])
    index_same = list(pd.read_csv(split / "index.csv")["step"]) == \
        list(pd.read_csv(reference / "index.csv")["step"])
    survived = sum(bool(r["killed"] and r.get("resumed_ok") and not r["orphan_processes"])
                   for r in rows) \
        if same and log_same and index_same else 0
    summary = {"write_s": round(write_s, 3), "bit_exact": same, "log_equal": log_same,
               "index_equal": index_same,
               "reference_s": round(reference_s, 1), "final_rc": final.returncode}
    return rows, survived, summary


# --------------------------------------------------------------------------- corruptions


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0xFF
    path.write_bytes(bytes(data))


def one_line_refusal(result: subprocess.CompletedProcess, name: str) -> tuple[bool, str]:
    """Refused: non-zero exit, no traceback, last stderr line names the file ``name``."""
    last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
    ok = result.returncode != 0 and "Traceback" not in result.stderr and name in last
    return ok, last[-160:]


def evaluate_args(config: dict, model: Path, inputs: dict[str, Path], out: Path) -> list[str]:
    return ["evaluate", "--model", model, "--benchmark", inputs["val"], "--label", "x",
            "--prompt", json.dumps(config["prompt"]), "--generation",
            json.dumps(config["generation"]), "--grading", json.dumps(config["grading"]),
            "--samples", out / "s.jsonl", "--metrics", out / "m.json", "--threads", "1"]


def corruption_campaign(config: dict, inputs: dict[str, Path], work: Path, quick: bool
                        ) -> list[dict]:
    source = final_checkpoint(work / "reference")
    cases = []

    def copy(name: str, manifest: bool = True) -> Path:
        target = work / "corrupt" / name
        shutil.copytree(source, target)
        (target / TRAINING_STATE_NAME).unlink(missing_ok=True)
        if not manifest:
            (target / MANIFEST_NAME).unlink()
        return target

    def analyze(ckpt: Path) -> subprocess.CompletedProcess:
        return effopd("analyze", "--base", inputs["student"], "--checkpoints", ckpt,
                      "--out-dir", ckpt.parent / f"{ckpt.name}_analysis", check=False)

    weights = "model.safetensors"
    ckpt = copy("weights_byte")
    flip_byte(ckpt / weights, (ckpt / weights).stat().st_size - 100)
    cases.append(("byte flipped in weights", "evaluate", weights,
                  effopd(*evaluate_args(config, ckpt, inputs, ckpt), check=False)))
    ckpt = copy("manifest_byte")
    text = (ckpt / MANIFEST_NAME).read_text()
    position = text.index('"step": ') + 8  # a digit of the step number: still valid JSON
    flip = text[:position] + ("7" if text[position] != "7" else "6") + text[position + 1:]
    (ckpt / MANIFEST_NAME).write_text(flip)
    cases.append(("digit changed in manifest (valid JSON)", "evaluate", MANIFEST_NAME,
                  effopd(*evaluate_args(config, ckpt, inputs, ckpt), check=False)))
    ckpt = copy("truncated")
    size = (ckpt / weights).stat().st_size
    os.truncate(ckpt / weights, size - size // 3)
    cases.append(("truncated weights", "analyze", weights, analyze(ckpt)))
    ckpt = copy("checkpoint-4", manifest=False)  # as transformers' Trainer writes it
    flip_byte(ckpt / weights, 12)  # inside the JSON header
    cases.append(("overwritten header, no manifest", "analyze", weights, analyze(ckpt)))
    if not quick:
        ckpt = copy("manifest_json")
        flip_byte(ckpt / MANIFEST_NAME, 0)  # no longer JSON
        cases.append(("byte flipped in manifest (not JSON)", "analyze", MANIFEST_NAME,
                      analyze(ckpt)))
        ckpt = copy("checkpoint-5", manifest=False)
        os.truncate(ckpt / weights, (ckpt / weights).stat().st_size - 64)
        cases.append(("truncated, no manifest", "evaluate", weights,
                      effopd(*evaluate_args(config, ckpt, inputs, ckpt), check=False)))
        ckpt = copy("tokenizer_byte")
        flip_byte(ckpt / "tokenizer.json", 40)
        cases.append(("byte flipped in tokenizer.json", "analyze --verify-sha256",
                      "tokenizer.json", effopd("analyze", "--base", inputs["student"],
                                               "--checkpoints", ckpt, "--out-dir",
                                               ckpt.parent / "tok_analysis",
                                               "--verify-sha256", check=False)))
    rows = []
    for fault, command, name, result in cases:
        refused, line = one_line_refusal(result, name)
        rows.append({"fault": fault, "command": command, "refused": refused, "message": line})
    if not quick:  # a corrupt newest training state: resume falls back to the one before
        run = work / "state_fallback"
        shutil.copytree(work / "reference", run)
        newest = final_checkpoint(run)
        flip_byte(newest / TRAINING_STATE_NAME, 200)
        result = effopd(*train_args(config, inputs, run), check=False)
        named = f"{newest.name}/{TRAINING_STATE_NAME}" in result.stderr
        same = sha256_file(final_checkpoint(run) / "model.safetensors") == \
            sha256_file(final_checkpoint(work / "reference") / "model.safetensors")
        resumed = RESUMED.search(result.stderr)
        rows.append({"fault": "byte flipped in newest training state", "command": "train",
                     "refused": result.returncode == 0 and named and same,
                     "message": f"resumed from step {resumed.group(1) if resumed else '?'}, "
                                f"final bit-exact: {same}"})
    return rows


# --------------------------------------------------------------------------- stale runs


def rebuilt_student(source: Path, out: Path) -> Path:
    """The student with one weight changed, saved as the workflow saves a model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from effopd.models.checkpoint import save_checkpoint

    model = AutoModelForCausalLM.from_pretrained(str(source), dtype=torch.float32)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-3
    save_checkpoint(model, AutoTokenizer.from_pretrained(str(source)), out,
                    {"source": "build", "rebuilt": True})
    return out


def stale_campaign(config: dict, inputs: dict[str, Path], work: Path, quick: bool
                   ) -> list[dict]:
    run = work / "stale"
    shutil.copytree(work / "reference", run)
    cases = []
    training = {**config["training"], "lr": config["training"]["lr"] * 2}
    cases.append(("training.lr doubled", "config.lr", train_args(config, inputs, run, training)))
    if not quick:
        student = rebuilt_student(inputs["student"], work / "student_rebuilt")
        cases.append(("student rebuilt", "student_sha256",
                      train_args(config, inputs, run, student=student)))
        data = work / "train_changed.jsonl"
        data.write_text("".join(inputs["train"].read_text().splitlines(True)[1:]))
        cases.append(("training data changed", "train_data_sha256",
                      train_args(config, inputs, run, train=data)))
    rows = []
    for fault, key, args in cases:
        result = effopd(*args, check=False)
        refused, line = one_line_refusal(result, str(run / "run" / "checkpoints"))
        rows.append({"fault": fault, "refused": refused and key in line, "message": line})
    # not counted: --fresh starts over, and a lower training.steps indexes only its steps
    fresh = effopd(*train_args(config, inputs, run, training), "--fresh", check=False)
    lower = {**config["training"], "steps": config["training"]["steps"] // 2}
    shorter = work / "shorter"
    shutil.copytree(work / "reference", shorter)
    effopd(*train_args(config, inputs, shorter, lower))
    indexed = list(pd.read_csv(shorter / "index.csv")["step"])
    rows.append({"fault": "(--fresh after lr change)", "refused": None,
                 "message": f"rc {fresh.returncode}, retrained from step 0: "
                            f"{'resumed' not in fresh.stderr}"})
    rows.append({"fault": f"(training.steps lowered to {lower['steps']})", "refused": None,
                 "message": f"index lists steps {indexed}"})
    return rows


# --------------------------------------------------------------------------- full disk


def leftovers(checkpoints: Path) -> tuple[list[str], list[str]]:
    """Temporary directories left, and checkpoints that fail verification."""
    if not checkpoints.exists():
        return [], []
    temp = sorted(p.name for p in checkpoints.iterdir() if p.name.startswith("."))
    bad = []
    for path in sorted(checkpoints.glob("step_*")):
        try:
            verify_checkpoint(path, sha256=True,
                              training_state=(path / TRAINING_STATE_NAME).exists())
        except CheckpointError as err:
            bad.append(f"{path.name}: {err}")
    return temp, bad


def disk_full_campaign(config: dict, inputs: dict[str, Path], work: Path) -> dict:
    reference = final_checkpoint(work / "reference")
    one = sum(p.stat().st_size for p in reference.iterdir())
    mount = work / "small_disk"
    mount.mkdir()
    size_kb = int(one * 1.6 / 1024) + 8  # room for one checkpoint and a half
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs",
                              str(mount)], capture_output=True, text=True)
    if mounted.returncode != 0:
        return {"fault": "full disk", "mounted": False,
                "message": f"SKIPPED: mount not permitted ({mounted.stderr.strip()[:120]})"}
    try:
        run = work / "disk"
        run.mkdir()
        (run / "run").symlink_to(mount, target_is_directory=True)
        result = effopd(*train_args(config, inputs, run), check=False)
        temp, bad = leftovers(mount / "checkpoints")
        written = sorted(p.name for p in (mount / "checkpoints").glob("step_*")) \
            if (mount / "checkpoints").exists() else []
        last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
        return {"fault": f"full disk ({size_kb} KiB tmpfs, checkpoint {one // 1024} KiB)",
                "mounted": True, "rc": result.returncode, "complete_checkpoints": written,
                "temp_dirs_left": len(temp), "unverifiable": len(bad),
                "traceback": "Traceback" in result.stderr, "message": last[-200:]}
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="K = 3, C = 4, S = 1")
    parser.add_argument("--kills", type=int, default=None, help="K (default 3 quick, 10 full)")
    parser.add_argument("--seed", type=int, default=0, help="random moments of the kills")
    parser.add_argument("--steps", type=int, default=8,
                        help="training.steps (smoke: 4; 8 leaves room for K kills)")
    parser.add_argument("--workdir", default=None, help="keep the files here (default: a tmp dir)")
    parser.add_argument("--inputs", action="store_true",
                        help="bad inputs instead (tools/bad_inputs.py): configs, damaged "
                             "tables, data files and flags, each refused in one line")
    args = parser.parse_args()
    if args.inputs:
        sys.path.insert(0, str(REPO / "tools"))
        from bad_inputs import main as bad_inputs

        raise SystemExit(bad_inputs())
    kills = args.kills or (3 if args.quick else 10)
    config = load_config(REPO / "config" / "smoke.yaml")
    config["training"]["steps"] = args.steps  # room for K kills at distinct moments
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="faults_"))
    if work.exists() and any(work.iterdir()):
        raise SystemExit(f"{work} is not empty")
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        inputs = build_inputs(config, work)
        build_s = time.perf_counter() - started
        kill_rows, survived, kill_summary = kill_campaign(config, inputs, work, kills,
                                                          random.Random(args.seed))
        corruption_rows = corruption_campaign(config, inputs, work, args.quick)
        stale_rows = stale_campaign(config, inputs, work, args.quick)
        disk = disk_full_campaign(config, inputs, work)
        temp, bad = leftovers(work / "killed" / "run" / "checkpoints")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_colwidth", 110)
    print(f"\nfault injection on config/smoke.yaml, method {METHOD}, "
          f"{config['training']['steps']} steps (inputs built in {build_s:.0f} s; "
          f"reference run {kill_summary['reference_s']} s; a checkpoint write takes "
          f"{kill_summary['write_s']} s: write kills land at a uniform moment in it)\n")
    print("== kills (SIGKILL, then resume) ==")
    print(pd.DataFrame(kill_rows).to_string(index=False))
    print(f"final checkpoint bit-exact with the uninterrupted run: {kill_summary['bit_exact']}; "
          f"log equal: {kill_summary['log_equal']}; index equal: {kill_summary['index_equal']}; "
          f"after completion: {len(temp)} temporary dirs, {len(bad)} unverifiable checkpoints")
    print("\n== corruptions ==")
    print(pd.DataFrame(corruption_rows).to_string(index=False))
    print("\n== stale runs ==")
    print(pd.DataFrame(stale_rows).to_string(index=False))
    print("\n== full disk ==")
    for key, value in disk.items():
        print(f"{key}: {value}")
    partial = len(temp) + len(bad) + disk.get("temp_dirs_left", 0) + disk.get("unverifiable", 0)
    corrupt_ok = sum(bool(r["refused"]) for r in corruption_rows)
    counted_stale = [r for r in stale_rows if r["refused"] is not None]
    stale_ok = sum(bool(r["refused"]) for r in counted_stale)
    print(f"\nwall time {time.perf_counter() - started:.0f} s")
    print(f"kills survived {survived}/{kills}, corruptions refused {corrupt_ok}/"
          f"{len(corruption_rows)}, stale resumes refused {stale_ok}/{len(counted_stale)}, "
          f"partial writes {partial}")


if __name__ == "__main__":
    main()
