"""Paper-scale training through verl: data conversion, the command line, checkpoint export.

verl (Ray + FSDP + vLLM) does the multi-GPU work; this module only prepares
its inputs and drives it, so the rest of the DAG stays the same as with the
local engine. Three pieces:

- :func:`write_verl_parquet` turns our JSONL prompts into verl's RL parquet
  (``data_source``, chat-format ``prompt``, ``reward_model.ground_truth``).
- :func:`verl_command` builds ``python -m verl.trainer.main_ppo`` with Hydra
  overrides taken from the config: the SPEC's recipe (token-mean PPO-clip, one
  mini-batch per batch, no KL, no entropy, AdamW, vLLM rollouts) plus the
  per-method extras of ``training.verl.method_overrides``. Upstream verl 0.9.1,
  no fork: OPD is verl's native ``distillation`` group, RL is GRPO.
- :func:`export_checkpoints` turns every ``global_step_N/actor`` into a float32
  Hugging Face checkpoint with :func:`effopd.integrations.fsdp_export.export_fsdp_checkpoint`
  (never verl's model merger, which writes bfloat16 and can erase lr-1e-6
  updates, SPEC section 4) and writes the checkpoint index the DAG reads.

The reward of the RL baseline is :func:`effopd.integrations.verl_reward.compute_score`
(math-verify on the last ``\\boxed{}``), passed as verl's custom reward function.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from effopd.integrations.fsdp_export import export_fsdp_checkpoint
from effopd.integrations.verl_metrics import write_verl_tables
from effopd.integrations.verl_resources import (
    check_gpus,
    gpu_request,
    lease_gpus,
    logits_bytes,
    token_budget,
    visible_gpus,
)
from effopd.io import atomic_path, read_jsonl
from effopd.methods import algorithm_lr, algorithm_named
from effopd.prompts import user_message
from effopd.training.contract import (
    RunRequest,
    group_size,
    per_method,
    refuse_unsupported,
)

log = logging.getLogger(__name__)
REWARD_MODULE = Path(__file__).with_name("verl_reward.py")
# The objectives verl runs natively (:attr:`effopd.methods.Algorithm.objective`): GRPO, and
# OPD's k1 through verl's distillation group (module docstring of :func:`verl_command`).
OBJECTIVES = ("k1", "grpo")
PLUGIN_ENTRY_POINT = "effopd"  # our verl.plugins entry point (pyproject.toml)
STEP_DIR = re.compile(r"^global_step_(\d+)$")


def write_verl_parquet(problems_jsonl: str | Path, out: str | Path, instruction: str,
                       data_source: str, problem_key: str = "question") -> int:
    """Write verl's RL parquet: one row per problem with the chat prompt and gold answer."""
    rows = [{"data_source": data_source,
             "prompt": [{"role": "user", "content": user_message(row[problem_key],
                                                                  instruction)}],
             "ability": "math",
             "reward_model": {"style": "rule", "ground_truth": str(row["answer"])},
             "extra_info": {"index": index, "id": str(row.get("id", index))}}
            for index, row in enumerate(read_jsonl(problems_jsonl))]
    with atomic_path(out, suffix=".parquet") as tmp:
        pd.DataFrame(rows).to_parquet(tmp, index=False)
    return len(rows)


def _absolute(path: str | Path) -> str:
    """An absolute path: Ray workers (other nodes too) do not share the launch directory."""
    return str(Path(path).resolve())


def verl_command(method: str, seed: int, training: dict[str, Any], prompt: dict[str, Any],
                 student: str | Path, teacher: str | Path | None, train_parquet: str | Path,
                 val_parquet: str | Path | None, run_dir: str | Path) -> list[str]:
    """``python -m verl.trainer.main_ppo`` and its Hydra overrides for one run (verl 0.9.1).

    Every key exists in verl 0.9.1's packaged ``ppo_trainer`` config (checked by
    tests/on_verl/test_verl_config.py, which composes them). RL is GRPO
    (``algorithm.adv_estimator=grpo``, ``rollout.n`` = the group size). OPD is
    verl's native on-policy distillation: ``distillation.enabled``, the teacher
    in ``distillation.teacher_models.teacher_model``, ``loss_mode=k1`` with
    ``use_policy_gradient=True`` and ``use_task_rewards=False``: advantage
    A_t = log p_T(y_t) - log p_S(y_t) under the PPO clip (SPEC section 2). The
    task reward is still computed (math-verify), so ``batch_accuracy`` is
    logged for OPD too, but it does not enter the loss. EffOPD is OPD run
    through the ``effopd`` trainer mode (``trainer.v1.trainer_mode=effopd``,
    :mod:`effopd.integrations.verl_plugin`, registered with verl through this
    package's ``verl.plugins`` entry point), scored by verl's validation with
    one sample per prompt at the rollout's temperature and top_p.
    """
    verl = training["verl"]
    algorithm = algorithm_named(method)
    if algorithm.objective not in OBJECTIVES:
        raise ValueError(f"training engine verl: algorithm {algorithm.name!r} (objective "
                         f"{algorithm.objective}) is not implemented; use engine local")
    own = per_method(training, algorithm)
    group = group_size(training, algorithm)
    batch = own["prompts_per_step"]
    overrides: dict[str, Any] = {
        "algorithm.adv_estimator": "grpo",
        "algorithm.use_kl_in_reward": False,
        "data.train_files": _absolute(train_parquet),
        "data.val_files": _absolute(val_parquet or train_parquet),
        "data.train_batch_size": batch,
        "data.max_prompt_length": verl["max_prompt_length"],
        "data.max_response_length": training["max_new_tokens"],
        "data.seed": seed,
        "+data.apply_chat_template_kwargs.enable_thinking": prompt["enable_thinking"],
        "actor_rollout_ref.model.path": _absolute(student),
        "actor_rollout_ref.actor.strategy": verl["strategy"],
        "actor_rollout_ref.actor.optim.lr": algorithm_lr(training, algorithm),
        "actor_rollout_ref.actor.optim.weight_decay": training["weight_decay"],
        "actor_rollout_ref.actor.optim.betas": f"[{training['betas'][0]},{training['betas'][1]}]",
        "actor_rollout_ref.actor.optim.lr_warmup_steps": training.get("warmup_steps", 0),
        "actor_rollout_ref.actor.optim.clip_grad": training["grad_clip"],  # the engine reads this
        "actor_rollout_ref.actor.ppo_mini_batch_size": batch,  # one mini-batch: on-policy
        "actor_rollout_ref.actor.ppo_epochs": 1,
        "actor_rollout_ref.actor.clip_ratio_low": own["clip_ratio_low"],
        "actor_rollout_ref.actor.clip_ratio_high": own["clip_ratio_high"],
        "actor_rollout_ref.actor.loss_agg_mode": "token-mean",
        "actor_rollout_ref.actor.use_kl_loss": False,
        "actor_rollout_ref.actor.entropy_coeff": 0,
        "actor_rollout_ref.rollout.name": "vllm",
        "actor_rollout_ref.rollout.n": group,
        "actor_rollout_ref.rollout.temperature": training["temperature"],
        "actor_rollout_ref.rollout.top_p": training["top_p"],
        "actor_rollout_ref.rollout.tensor_model_parallel_size": verl["rollout_tensor_parallel"],
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu": verl["micro_batch_per_gpu"],
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu": verl["micro_batch_per_gpu"],
        # micro-batches packed up to a token budget per GPU (the log-prob passes follow)
        "actor_rollout_ref.actor.use_dynamic_bsz": True,
        "actor_rollout_ref.actor.ppo_max_token_len_per_gpu": token_budget(training),
        "reward.custom_reward_function.path": str(REWARD_MODULE),
        "reward.custom_reward_function.name": "compute_score",
        "trainer.use_v1": True,
        "trainer.total_training_steps": training["steps"],
        "trainer.save_freq": training["save_every"],
        "trainer.test_freq": -1,
        "trainer.val_before_train": False,
        "trainer.n_gpus_per_node": verl["n_gpus_per_node"],
        "trainer.nnodes": verl["nnodes"],
        "trainer.default_local_dir": _absolute(Path(run_dir) / "verl"),
        "trainer.project_name": "effopd-repro",
        "trainer.experiment_name": f"{method}-seed{seed}",
        "trainer.logger": "[console,file]",
    }
    if algorithm.teacher:
        if teacher is None:
            raise ValueError(f"verl {method}: needs a teacher model")
        teacher_key = "distillation.teacher_models.teacher_model"
        overrides.update({
            "distillation.enabled": True,
            f"{teacher_key}.model_path": _absolute(teacher),
            f"{teacher_key}.inference.tensor_model_parallel_size": verl["teacher_tensor_parallel"],
            "distillation.n_gpus_per_node": verl["teacher_gpus_per_node"],
            "distillation.nnodes": verl["teacher_nnodes"],
            "distillation.distillation_loss.loss_mode": "k1",
            "distillation.distillation_loss.use_policy_gradient": True,
            "distillation.distillation_loss.use_task_rewards": False,
            "distillation.distillation_loss.clip_ratio_low": own["clip_ratio_low"],
            "distillation.distillation_loss.clip_ratio_high": own["clip_ratio_high"],
        })
    if algorithm.searches:
        if val_parquet is None:
            raise ValueError("verl effopd: needs the line-search validation set")
        effopd = training["effopd"]
        overrides.update({
            "trainer.v1.trainer_mode": "effopd",
            "actor_rollout_ref.rollout.val_kwargs.n": 1,  # the search's score: 1 sample/prompt
            "actor_rollout_ref.rollout.val_kwargs.do_sample": True,
            "actor_rollout_ref.rollout.val_kwargs.temperature": training["temperature"],
            "actor_rollout_ref.rollout.val_kwargs.top_p": training["top_p"],
            "+effopd.max_iterations": effopd["max_iterations"],
            "+effopd.initial_factor": effopd["initial_factor"],
            "+effopd.param_rule": effopd["param_rule"],
        })
    args = [f"{key}={value}" for key, value in overrides.items()]
    args += list(verl.get("common_overrides", []))
    args += list(verl.get("method_overrides", {}).get(algorithm.name, []))
    return [sys.executable, "-m", "verl.trainer.main_ppo", *args]


# What a verl run imports, in the driver and the Ray workers: module -> (distribution of
# requirements-gpu.lock / -build.lock, what for).
ENGINE_MODULES = {"verl": ("verl", "the trainer"), "ray": ("ray", "the workers"),
                  "hydra": ("hydra-core", "verl's config"),
                  "transfer_queue": ("TransferQueue", "verl's v1 trainer"),
                  "vllm": ("vllm", "the rollout"),
                  "flash_attn": ("flash-attn", "the actor's attention")}
GPU_ENV_HINT = ("build the GPU environment: make gpu-env, or the train rule's conda environment "
                "workflow/envs/verl-gpu.yaml (config/README.md, 'First GPU run')")


CPU_PLATFORM = "cpu"  # VERL_PLATFORM of effopd.integrations.verl_cpu (the CPU tests only)
# Modules a run on verl's CPU platform does without (attention is sdpa there).
GPU_ONLY_MODULES = ("flash_attn",)
RAY_GPUS = re.compile(r"^\+?ray_kwargs\.ray_init\.num_gpus=(\d+)$")


def on_cpu_platform() -> bool:
    """Whether verl runs on the CPU platform of :mod:`effopd.integrations.verl_cpu`."""
    return os.environ.get("VERL_PLATFORM", "").strip().lower() == CPU_PLATFORM


def declared_ray_gpus(training: dict[str, Any]) -> int:
    """The GPUs Ray declares on the CPU platform (``ray_kwargs.ray_init.num_gpus`` among
    ``training.verl.common_overrides``); verl's pools ask Ray for them."""
    for override in training["verl"].get("common_overrides", []):
        match = RAY_GPUS.match(override)
        if match:
            return int(match.group(1))
    raise ValueError("VERL_PLATFORM=cpu: verl's pools ask Ray for GPUs; declare them with "
                     "training.verl.common_overrides: +ray_kwargs.ray_init.num_gpus=N "
                     "(tests/on_verl_cpu/verl_cpu.yaml)")


def require_engine_modules() -> None:
    """Name every module the verl engine needs and cannot find, before anything starts."""
    missing = [f"{module} ({dist}: {role})" for module, (dist, role) in ENGINE_MODULES.items()
               if importlib.util.find_spec(module) is None
               and not (on_cpu_platform() and module in GPU_ONLY_MODULES)]
    if missing:
        raise ModuleNotFoundError(f"training.engine 'verl' needs modules that are not installed: "
                                  f"{', '.join(missing)}; {GPU_ENV_HINT}")


def require_effopd_plugin() -> None:
    """Import the EffOPD plug-in as verl will, so a failure is shown (verl logs it at DEBUG)."""
    import importlib.metadata

    if os.environ.get("VERL_USE_EXTERNAL_PLUGINS", "auto").strip().lower() == "none":
        raise RuntimeError("VERL_USE_EXTERNAL_PLUGINS=none: verl would not load the effopd "
                           "trainer mode; unset it")
    points = [p for p in importlib.metadata.entry_points(group="verl.plugins")
              if p.name == PLUGIN_ENTRY_POINT]
    if not points:
        raise RuntimeError("the verl.plugins entry point 'effopd' is not installed; reinstall "
                           "this package (pip install -e .)")
    points[0].load()  # raises the plug-in's own import error


def export_checkpoints(run_dir: str | Path) -> pd.DataFrame:
    """Export every ``global_step_N/actor`` as a float32 HF checkpoint; the index (step, path)."""
    run_dir = Path(run_dir)
    rows = []
    for step_dir in sorted((run_dir / "verl").glob("global_step_*")):
        match = STEP_DIR.match(step_dir.name)
        if not match:
            continue
        step = int(match.group(1))
        target = run_dir / "checkpoints" / f"step_{step:06d}"
        if not (target / "manifest.json").exists():
            export_fsdp_checkpoint(step_dir / "actor", target, metadata={"step": step})
        rows.append({"step": step, "path": str(target)})
    return pd.DataFrame(rows, columns=["step", "path"]).sort_values("step").reset_index(drop=True)


def metrics_parts(metrics_jsonl: str | Path) -> list[Path]:
    """verl's metrics files of a run, oldest first: earlier attempts' parts, then the last."""
    metrics_jsonl = Path(metrics_jsonl)
    parts = sorted(metrics_jsonl.parent.glob(f"{metrics_jsonl.stem}.part*.jsonl"),
                   key=lambda p: int(p.suffixes[-2].removeprefix(".part")))
    return parts + ([metrics_jsonl] if metrics_jsonl.exists() else [])


def log_logits_memory(training: dict[str, Any], student: str | Path) -> None:
    """Log the worst-case logits of one update micro-batch (the token budget per GPU)."""
    config = Path(student) / "config.json"
    if not config.is_file():
        return
    vocab = json.loads(config.read_text(encoding="utf-8")).get("vocab_size")
    if vocab:
        tokens = token_budget(training)
        log.info("update micro-batch: at most %d tokens per GPU x %d vocabulary = %.1f GiB of "
                 "bf16 logits (%.1f GiB as float32)", tokens, vocab,
                 logits_bytes(tokens, vocab) / 2**30, logits_bytes(tokens, vocab, 4) / 2**30)


def run_verl(command: list[str], metrics_jsonl: str | Path,
             grading: dict[str, Any] | None = None, gpus: str | None = None) -> None:
    """Run verl's trainer (verl resumes from its own latest checkpoint when restarted).

    verl's file logger writes its per-step metrics to ``metrics_jsonl``
    (``VERL_FILE_LOGGER_PATH``). It opens the file with ``"wb"``, so a file left
    by an earlier (interrupted) attempt is first renamed to
    ``<name>.partN.jsonl``; :func:`metrics_parts` lists them in order. ``gpus``:
    the GPU ids verl's local Ray cluster may use (``CUDA_VISIBLE_DEVICES``).
    """
    metrics_jsonl = Path(metrics_jsonl)
    if metrics_jsonl.exists():
        metrics_jsonl.rename(metrics_jsonl.with_suffix(f".part{len(metrics_parts(metrics_jsonl))}"
                                                       ".jsonl"))
    log.info("running: %s", " ".join(command))
    env = {**os.environ, "VERL_FILE_LOGGER_PATH": str(metrics_jsonl)}
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpus
    if grading:  # sizes verl_reward's batch grader in the reward workers (local Ray cluster)
        env["EFFOPD_REWARD_TIMEOUT_S"] = str(grading["timeout_s"])
        env["EFFOPD_REWARD_WORKERS"] = str(grading["workers"])
    subprocess.run(command, check=True, env=env)


def train(run: RunRequest) -> None:
    """One verl run end to end: parquet inputs, verl, float32 exports, the DAG's tables.

    The overrides are first composed against verl's packaged config
    (:func:`effopd.integrations.verl_compose.compose_verl_config`), so a bad key
    fails before any GPU is allocated. ``log_csv``, the checkpoint index (with
    wall times) and ``search_csv`` are derived from verl's own metrics by
    :func:`effopd.integrations.verl_metrics.write_verl_tables`, each row with the run's
    identity (``run.run_name``; ``run.seed``). ``--stop-after`` and ``--fresh`` are
    refused: verl runs to ``training.steps`` and resumes from its own latest checkpoint.
    """
    from effopd.training.extrapolation import require_authors_search

    refuse_unsupported(run, "verl", stop_after=False, fresh=False)
    method, seed, training, prompt = run.algorithm, run.seed, run.training, run.prompt
    student, teacher, grading = run.student, run.teacher, run.grading
    algorithm = algorithm_named(method)
    require_engine_modules()  # before anything is written or started: one line, every module
    require_authors_search(training.get("effopd", {}), "verl")
    if training.get("save_powers_of_two", False):
        raise ValueError("training.save_powers_of_two: engine verl saves every save_every "
                         "steps only (trainer.save_freq); set it to false")
    if algorithm.searches:
        log.warning("EffOPD on verl uses the effopd trainer mode "
                    "(effopd.integrations.verl_plugin), which has never run on GPUs: check its "
                    "search log and checkpoints before trusting the run")
        require_effopd_plugin()
    if on_cpu_platform():  # the CPU tests: Ray's declared GPUs, no lease
        check_gpus(training, method, [declared_ray_gpus(training)],
                   "Ray's declared GPUs (VERL_PLATFORM=cpu)")
    else:
        check_gpus(training, method)  # verl's pools against the GPUs Ray will see
    log_logits_memory(training, student)
    from effopd.integrations.verl_compose import compose_verl_config

    run_dir = Path(run.run_dir)
    instruction = prompt["instruction"]
    train_parquet = run_dir / "data" / "train.parquet"
    write_verl_parquet(run.train, train_parquet, instruction, "train")
    val_parquet = None
    if run.val:
        val_parquet = run_dir / "data" / "val.parquet"
        write_verl_parquet(run.val, val_parquet, instruction, "val", problem_key="problem")
    command = verl_command(method, seed, training, prompt, student, teacher, train_parquet,
                           val_parquet, run_dir)
    compose_verl_config(command[3:])
    metrics_jsonl = run_dir / "verl_metrics.jsonl"
    with contextlib.ExitStack() as stack:
        gpus = None
        if ("RAY_ADDRESS" not in os.environ and "CUDA_VISIBLE_DEVICES" not in os.environ
                and not on_cpu_platform()):
            # nothing assigned GPU ids (Snakemake's local executor): lease them, so that
            # runs side by side on one machine do not share GPUs
            gpus = stack.enter_context(lease_gpus(gpu_request(training, method),
                                                  visible_gpus()[0][0]))
        run_verl(command, metrics_jsonl, grading, gpus)
    index = export_checkpoints(run_dir)
    write_verl_tables(metrics_parts(metrics_jsonl), index,
                      per_method(training, algorithm)["prompts_per_step"],
                      group_size(training, algorithm), run.log_csv, run.index_csv,
                      run.search_csv, search_source=run_dir / "verl" / "effopd_search.csv",
                      method=run.run_name, seed=seed)
