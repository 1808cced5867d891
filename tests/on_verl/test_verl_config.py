"""Every override the suite hands verl composes against verl 0.9.1's packaged config.

Runs in the verl environment (``make verl-env``; ``make test`` runs it there).
"""

import pytest

pytest.importorskip("verl", reason="verl environment only (make verl-env; make test runs it)")

from effopd.config import load_config  # noqa: E402
from effopd.integrations.verl_compose import compose_verl_config  # noqa: E402
from effopd.integrations.verl_engine import verl_command  # noqa: E402


@pytest.fixture(scope="module")
def paper(repo):
    return load_config(repo / "config/paper.yaml")


def overrides_of(paper, method):
    command = verl_command(method, 0, paper["training"], paper["prompt"], "/m/student",
                           "/m/teacher", "/d/train.parquet", "/d/val.parquet", "/run")
    return command[3:]


@pytest.mark.parametrize("method", ["opd", "rl", "effopd"])
def test_every_override_composes_with_verl_0_9_1(paper, method):
    config = compose_verl_config(overrides_of(paper, method))
    distill = config.distillation
    if method == "rl":
        assert config.algorithm.adv_estimator == "grpo" and not distill.enabled
        assert config.actor_rollout_ref.rollout.n == 8
    else:
        loss = distill.distillation_loss
        assert distill.enabled and loss.loss_mode == "k1"
        assert loss.use_policy_gradient and not loss.use_task_rewards
        assert distill.teacher_models.teacher_model.model_path == "/m/teacher"
        assert config.actor_rollout_ref.rollout.n == 1
    assert config.actor_rollout_ref.actor.optim.lr == 1e-6
    assert not config.actor_rollout_ref.actor.use_kl_loss
    assert config.reward.custom_reward_function.name == "compute_score"
    assert config.trainer.v1.trainer_mode == ("effopd" if method == "effopd" else "sync")
    if method == "effopd":
        val = config.actor_rollout_ref.rollout.val_kwargs
        assert val.n == 1 and val.do_sample and val.temperature == 1.0
        assert config.effopd.max_iterations == 5 and config.effopd.param_rule == "authors"


def test_paper_yaml_holds_no_fork_key(repo):
    text = (repo / "config/paper.yaml").read_text()
    for fork_key in ("only_reverse_kl_advantages", "enable_iterative_test",
                     "iterative_test_files", "max_test_iterations", "base_model_path"):
        assert fork_key not in text


@pytest.mark.parametrize(("bad", "message"), [
    ("actor_rollout_ref.actor.optim.lrr=1e-6", "lrr"),                  # misspelt key
    ("trainer.enable_iterative_test=True", "enable_iterative_test"),    # a fork's key
    ("trainer.save_freq=often", "save_freq"),                           # mistyped value
    ("distillation.distillation_loss.use_policy_gradient=1", "use_policy_gradient"),
    ("distillation.distillation_loss.loss_mode=nope", "rejects"),       # dataclass check
])
def test_unknown_misspelt_or_mistyped_override_fails(paper, bad, message):
    with pytest.raises(ValueError, match=message):
        compose_verl_config([*overrides_of(paper, "opd"), bad])


def test_effopd_trainer_mode_is_registered_with_verl_through_the_entry_point():
    """``import verl`` loads the verl.plugins entry point; verl's registry then has effopd."""
    import importlib.metadata

    from verl.single_controller.base.decorator import MAGIC_ATTR
    from verl.trainer.ppo.v1 import get_trainer_cls
    from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
    from verl.workers.engine_workers import ActorRolloutRefWorker

    points = importlib.metadata.entry_points(group="verl.plugins")
    assert [p.value for p in points if p.name == "effopd"] == [
        "effopd.integrations.verl_plugin"]
    from effopd.integrations.verl_plugin import EffOPDTrainer, EffOPDWorker

    assert get_trainer_cls("effopd") is EffOPDTrainer
    assert issubclass(EffOPDTrainer, PPOTrainerSync)
    assert issubclass(EffOPDWorker, ActorRolloutRefWorker)
    for rpc in ("effopd_init_anchor", "effopd_begin", "effopd_place", "effopd_finish",
                "effopd_save_anchor"):
        assert hasattr(getattr(EffOPDWorker, rpc), MAGIC_ATTR), rpc  # verl's @register
