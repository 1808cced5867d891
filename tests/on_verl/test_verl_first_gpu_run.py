"""The five failures a first GPU run of the paper config would hit, each against verl's own code.

Runs in the verl environment (``make verl-env``): verl 0.9.1's trainer classes,
resource-pool manager, replay buffer, reward manager and validation metrics,
all on CPU; the DAG's GPU request comes from a real Snakemake dry run.
"""

import csv
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("verl", reason="verl environment only (make verl-env; make test runs it)")

from effopd.config import load_config  # noqa: E402
from effopd.integrations.verl_compose import compose_verl_config  # noqa: E402
from effopd.integrations.verl_engine import verl_command  # noqa: E402
from effopd.integrations.verl_resources import (  # noqa: E402
    check_gpus,
    fits,
    gpu_pools,
    logits_bytes,
    token_budget,
    visible_gpus,
)

METHODS = ("opd", "rl", "effopd")


@pytest.fixture(scope="module")
def paper(repo):
    return load_config(repo / "config/paper.yaml")


def composed(paper, method, tmp_path=None):
    run = str(tmp_path or "/run")
    command = verl_command(method, 0, paper["training"], paper["prompt"], "/m/student",
                           "/m/teacher", "/d/train.parquet", "/d/val.parquet", run)
    return compose_verl_config(command[3:])


def verl_trainer(config):
    """The trainer verl's TaskRunnerV1.run builds for this config (no Ray, no GPUs)."""
    from verl.trainer.ppo.v1 import get_trainer_cls

    return get_trainer_cls(config.trainer.v1.trainer_mode)(config=config)


def train_gpus_of_dry_run(repo, workdir, *configfiles):
    """{method: gpu} of the train jobs of a Snakemake dry run of these config files."""
    snakemake = Path(sys.executable).parent / "snakemake"
    result = subprocess.run([str(snakemake), "-s", str(repo / "Snakefile"), "--directory",
                             str(workdir), "-n", "--configfile",
                             *[str(repo / f) for f in configfiles]],
                            capture_output=True, text=True, cwd=repo, timeout=600)
    assert result.returncode == 0, result.stderr
    gpus = {}
    for block in result.stdout.split("rule ")[1:]:
        if not block.startswith("train:"):
            continue
        method = re.search(r"wildcards: method=(\w+)", block).group(1)
        gpus.setdefault(method, set()).add(int(re.search(r"\bgpu=(\d+)", block).group(1)))
    return {method: values.pop() for method, values in gpus.items() if len(values) == 1}


@pytest.mark.parametrize("overlay", [(), ("config/paper-2nodes.yaml",)])
def test_rule_requests_the_gpus_of_verls_pools(repo, tmp_path, overlay):
    """Failure 1: the train rule asked for 1 GPU while verl's pools asked Ray for 16."""
    files = ("config/paper.yaml", *overlay)
    requested = train_gpus_of_dry_run(repo, tmp_path, *files)
    assert set(requested) == set(METHODS)
    paper = load_config(repo / "config/paper.yaml")
    training = paper["training"]
    if overlay:  # what Snakemake's merge of the two files gives
        import yaml

        extra = yaml.safe_load((repo / overlay[0]).read_text())["training"]["verl"]
        training = {**training, "verl": {**training["verl"], **extra}}
        paper = {**paper, "training": training}
    for method in METHODS:
        trainer = verl_trainer(composed(paper, method))
        trainer._init_resource_pool_mgr()  # verl's own pool specification
        manager = trainer.resource_pool_manager
        assert manager.resource_pool_spec == gpu_pools(training, method)
        assert manager.get_n_gpus() == requested[method], method
    expected = {"opd": 16, "effopd": 16, "rl": 8} if overlay else {"opd": 8, "effopd": 8, "rl": 4}
    assert requested == expected


def test_pools_are_checked_against_the_visible_gpus_in_one_line(paper, monkeypatch):
    """Failure 1, before launch: the pools against the GPUs Ray would see, one line."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    nodes, where = visible_gpus()
    assert nodes == [0] and where.startswith("this machine")  # the CPU machine of the tests
    with pytest.raises(RuntimeError) as err:
        check_gpus(paper["training"], "opd")
    message = str(err.value)
    assert "\n" not in message
    assert "global_pool 4 + teacher_pool 4 = 8 GPUs" in message and "(0 per node)" in message
    check_gpus(paper["training"], "opd", nodes=[8], where="one node")
    with pytest.raises(RuntimeError, match="Ray cluster started beforehand"):
        check_gpus({**paper["training"], "verl": {**paper["training"]["verl"], "nnodes": 2}},
                   "rl", nodes=[4], where="one node")


def test_first_fit_placement_of_pool_entries():
    assert fits({"a": [4], "b": [4]}, [8])
    assert not fits({"a": [8], "b": [8]}, [8])
    assert fits({"a": [8], "b": [8]}, [8, 8])
    assert fits({"a": [8, 8]}, [16]) and not fits({"a": [8, 8]}, [8])
    assert fits({"a": [6], "b": [2, 2]}, [8, 2])
    assert not fits({"a": [1]}, [])


def test_missing_module_is_named_before_ray_starts(paper, tmp_path, monkeypatch):
    """Failure 2: the GPU stack is absent here (no vLLM, no flash-attn): named in one line
    before anything is written or Ray is started."""
    import importlib.util

    import ray

    from effopd.integrations.verl_engine import train
    from effopd.training.contract import RunRequest

    assert importlib.util.find_spec("vllm") is None  # the CPU verl environment
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    run_dir = tmp_path / "run"
    with pytest.raises(ModuleNotFoundError) as err:
        train(RunRequest(
            "effopd", 0, paper["training"], {}, paper["prompt"], tmp_path / "student",
            tmp_path / "teacher", tmp_path / "train.jsonl", tmp_path / "val.jsonl", run_dir,
            tmp_path / "log.csv", tmp_path / "search.csv", tmp_path / "index.csv", "effopd"))
    message = str(err.value)
    assert "\n" not in message and "vllm (vllm: the rollout)" in message
    assert "flash_attn (flash-attn: " in message and "make gpu-env" in message
    assert "verl (" not in message and "ray (" not in message  # those are installed
    assert not run_dir.exists() and not ray.is_initialized()


def test_effopd_plugin_import_is_checked_loudly(monkeypatch):
    from effopd.integrations.verl_engine import require_effopd_plugin

    require_effopd_plugin()  # imports effopd.integrations.verl_plugin through the entry point
    monkeypatch.setenv("VERL_USE_EXTERNAL_PLUGINS", "none")
    with pytest.raises(RuntimeError, match="VERL_USE_EXTERNAL_PLUGINS=none"):
        require_effopd_plugin()


def reward_extra_infos(config, tokenizer, responses, gold):
    """What verl's _validate collects: the reward manager's extra info plus 'reward'."""
    import numpy as np
    import torch
    from verl import DataProto
    from verl.trainer.ppo.reward import load_reward_manager

    manager = load_reward_manager(config, tokenizer)
    infos = {"reward": []}
    for text in responses:
        ids = torch.tensor([tokenizer.encode(text, add_special_tokens=False)])
        prompt = torch.tensor([[0, 0]])
        data = DataProto.from_dict(
            tensors={"prompts": prompt, "responses": ids,
                     "attention_mask": torch.ones(1, prompt.shape[1] + ids.shape[1],
                                                  dtype=torch.long)},
            non_tensors={"data_source": np.array(["val"], dtype=object),
                         "reward_model": np.array([{"ground_truth": gold}], dtype=object),
                         "extra_info": np.array([{}], dtype=object)})
        result = manager.loop.run_until_complete(manager.run_single(data))
        infos["reward"].append(result["reward_score"])
        for key, value in result["reward_extra_info"].items():
            infos.setdefault(key, []).append(value)
    return infos


def test_plugin_reads_the_core_metric_that_verls_reward_manager_records(paper, char_tokenizer):
    """Failure 3: verl's NaiveRewardManager records a float reward as 'acc', so the core
    key is val-core/val/acc/mean@1 (the plug-in read .../reward/mean@1: KeyError)."""
    from effopd.integrations.verl_plugin import val_score

    config = composed(paper, "effopd")
    responses = ["so \\boxed{12}", "\\boxed{13}", "it is \\boxed{12}"]
    infos = reward_extra_infos(config, char_tokenizer, responses, "12")
    assert infos["acc"] == [1.0, 0.0, 1.0]
    uids = ["u0", "u1", "u2"]
    trainer = verl_trainer(config)
    metrics = trainer._val_metrics_update(["val"] * 3, uids, infos, [1, 1, 1],
                                          expected_acc_counts={("val", u): 1 for u in uids})
    core = sorted(key for key in metrics if key.startswith("val-core/"))
    assert core == ["val-core/val/acc/mean@1"]
    assert val_score(metrics) == ("val-core/val/acc/mean@1", pytest.approx(2 / 3))


def test_val_score_refuses_a_missing_or_ambiguous_core_metric():
    from effopd.integrations.verl_plugin import val_score

    assert val_score({"val-core/val/reward/mean@1": 0.5}) == ("val-core/val/reward/mean@1", 0.5)
    with pytest.raises(KeyError, match="val-core"):
        val_score({"val-aux/val/reward/mean@1": 0.5})
    with pytest.raises(KeyError, match="found"):
        val_score({"val-core/a/acc/mean@1": 0.5, "val-core/b/acc/mean@1": 0.4})
    with pytest.raises(ValueError, match="nan"):
        val_score({"val-core/val/acc/mean@1": math.nan})


def test_effopd_trainer_builds_verls_sync_replay_buffer(paper):
    """Failure 4: trainer_mode=effopd took every async branch (ReplayBufferAsync,
    gen_batch_size 1, TransferQueue state in checkpoints); now the same sampler as OPD."""
    from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

    from effopd.integrations.verl_plugin import EffOPDTrainer

    effopd = verl_trainer(composed(paper, "effopd"))
    opd = verl_trainer(composed(paper, "opd"))
    assert type(effopd) is EffOPDTrainer
    assert type(effopd.replay_buffer) is ReplayBuffer is type(opd.replay_buffer)
    assert effopd.trainer_mode == "sync" == effopd.replay_buffer.trainer_mode
    for name in ("train_batch_size", "gen_batch_size", "max_inflight_gen_batches"):
        assert getattr(effopd.replay_buffer, name) == getattr(opd.replay_buffer, name), name
    assert effopd.replay_buffer.gen_batch_size == 1024


def test_update_micro_batches_have_a_token_budget(paper):
    """Failure 5: micro-batch 4 x 18,432 tokens x 151,936 vocabulary = 20.9 GiB of bf16
    logits; dynamic batch size packs at most one longest sequence per GPU."""
    config = composed(paper, "opd")
    actor = config.actor_rollout_ref.actor
    assert actor.use_dynamic_bsz and actor.ppo_max_token_len_per_gpu == 2048 + 16384
    assert config.actor_rollout_ref.rollout.log_prob_use_dynamic_bsz
    assert config.actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu == 18432
    vocab = 151936  # Qwen3-1.7B
    assert logits_bytes(4 * 18432, vocab) / 2**30 == pytest.approx(20.87, abs=0.01)
    assert logits_bytes(token_budget(paper["training"]), vocab) / 2**30 == pytest.approx(
        5.22, abs=0.01)
    small = {**paper["training"], "verl": {**paper["training"]["verl"],
                                           "max_token_len_per_gpu": 4096}}
    with pytest.raises(ValueError, match="max_token_len_per_gpu: 4096 is below"):
        token_budget(small)


def test_paper_config_sets_the_authors_recipe(paper):
    """Smaller gaps: grad clip where verl's engine reads it, the authors' parameter rule
    and rollout IS, absolute paths for Ray workers."""
    config = composed(paper, "effopd")
    actor = config.actor_rollout_ref.actor
    assert actor.optim.clip_grad == 1.0
    correction = config.algorithm.rollout_correction
    assert correction.rollout_is == "token" and correction.rollout_is_threshold == 5.0
    assert config.actor_rollout_ref.rollout.calculate_log_probs
    assert config.effopd.param_rule == "authors"
    relative = verl_command("opd", 0, paper["training"], paper["prompt"], "m/student",
                            "m/teacher", "d/train.parquet", None, "run")
    for arg in relative[3:]:
        key, value = arg.split("=", 1)
        if key.endswith(("path", "_files", "default_local_dir")):
            assert value.startswith("/"), arg


def test_search_log_keeps_one_row_set_per_step_on_resume(tmp_path):
    from effopd.integrations.verl_plugin import write_search_log
    from effopd.training.extrapolation import SearchRecord

    path = tmp_path / "effopd_search.csv"
    for step in (1, 2, 4):  # first attempt, killed after step 4
        write_search_log(path, [SearchRecord(step, 0, 1.0, 0.1, True),
                                SearchRecord(step, 1, 3.0, 0.0, False)])
    write_search_log(path, [SearchRecord(4, 0, 1.0, 0.2, True)])  # resumed from step 2
    rows = list(csv.DictReader(path.open()))
    assert [(r["step"], r["iteration"], r["score"]) for r in rows] == [
        ("1", "0", "0.1"), ("1", "1", "0.0"), ("2", "0", "0.1"), ("2", "1", "0.0"),
        ("4", "0", "0.2")]


def test_effopd_counts_the_tokens_of_its_validation_rollouts(paper, char_tokenizer):
    """Smaller gap: effopd/val_tokens was never emitted (the token speed-up undercounted
    EffOPD's cost); verl's _validate hands every decoded output to this hook."""
    trainer = verl_trainer(composed(paper, "effopd"))
    trainer.tokenizer = char_tokenizer  # what verl's init() sets
    outputs = ["\\boxed{12}", "so 7"]
    trainer._maybe_log_val_generations(["q1", "q2"], outputs, [1.0, 0.0])
    assert trainer._effopd_val_tokens == len("\\boxed{12}") + len("so 7")  # one per character


def test_effopd_candidates_are_scored_with_common_random_numbers(paper):
    """Smaller gap: every validation request gets a vLLM seed from its problem and sample
    number, the same for every candidate; the trainer installs the agent loop that sets it."""
    import asyncio

    from verl.experimental.agent_loop.agent_loop import get_trajectory_info
    from verl.trainer.ppo.v1.agent_loop_tq import AgentLoopWorkerTQ
    from verl.utils.import_utils import load_class_from_fqn

    from effopd.integrations.verl_plugin import (
        VAL_SEED_STRIDE,
        EffOPDAgentLoopManager,
        EffOPDAgentLoopWorker,
        validation_seed,
    )

    config = composed(paper, "effopd")
    verl_trainer(config)
    fqn = config.actor_rollout_ref.rollout.agent.agent_loop_manager_class
    manager = load_class_from_fqn(fqn, "AgentLoopManager")(config, llm_client=None)
    assert type(manager) is EffOPDAgentLoopManager
    assert manager.agent_loop_workers_class is EffOPDAgentLoopWorker  # a module-level actor
    worker = EffOPDAgentLoopWorker.__ray_actor_class__
    assert issubclass(worker, AgentLoopWorkerTQ.__ray_actor_class__)
    seeds = [[validation_seed(t) for t in asyncio.run(get_trajectory_info(step, [5, 5, 9], True))]
             for step in (1, 2)]  # two searches (or two candidates): the same seeds
    assert seeds == [[5, VAL_SEED_STRIDE + 5, 9]] * 2
    training = asyncio.run(get_trajectory_info(1, [5, 9], False))
    assert [validation_seed(t) for t in training] == [None, None]
    opd = composed(paper, "opd")
    verl_trainer(opd)
    assert not opd.actor_rollout_ref.rollout.agent.get("agent_loop_manager_class")


def test_runs_side_by_side_lease_different_gpus(tmp_path):
    """Failure 1, side by side: two runs on one machine hold disjoint GPU ids (flock)."""
    from effopd.integrations.verl_resources import lease_gpus

    with lease_gpus(4, 8, tmp_path) as first, lease_gpus(4, 8, tmp_path) as second:
        assert (first, second) == ("0,1,2,3", "4,5,6,7")
        with pytest.raises(RuntimeError, match="needs 1 GPUs, only 0 of this machine's 8"), \
                lease_gpus(1, 8, tmp_path):
            pass
    with lease_gpus(8, 8, tmp_path) as again:  # released on exit
        assert again == "0,1,2,3,4,5,6,7"


def test_trl_without_value_head_is_hidden_from_verls_model_build():
    """verl 0.9.1 imports trl's AutoModelForCausalLMWithValueHead in every actor build when
    trl is installed (monkey_patch.py:352-356); trl 1.16 has none. The plug-in tells verl
    trl is absent there, and only when the class is missing (found by the first CPU run)."""
    from verl.models.transformers import monkey_patch

    from effopd.integrations import verl_plugin

    if verl_plugin.trl_has_value_head():  # verl's own check, untouched
        assert monkey_patch.is_trl_available.__module__ == "verl.utils.import_utils"
    else:
        assert monkey_patch.is_trl_available() is False


def test_effopd_agent_loop_worker_is_a_module_level_ray_actor():
    """verl's workers import a Ray actor class from its module; EffOPD's agent-loop worker,
    a plain class wrapped by ray.remote inside the manager, reached its worker process
    with a copy of verl's base whose super().__init__ failed (found by the first CPU
    run). It is a module-level actor class, as verl's own AgentLoopWorkerTQ."""
    import ray

    from effopd.integrations import verl_plugin

    worker = verl_plugin.EffOPDAgentLoopWorker
    assert isinstance(worker, ray.actor.ActorClass)
    assert worker.__ray_metadata__.modified_class.__module__ == verl_plugin.__name__
