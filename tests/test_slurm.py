"""profiles/slurm on a real, throw-away single-node SLURM cluster.

The module-scoped ``slurm_cluster`` fixture starts munged + slurmctld + slurmd with
ci/slurm/start.sh (installing Debian's SLURM packages if needed) in a fresh state
directory, and always stops them again with ci/slurm/stop.sh. That cluster has no
job accounting, so the runs stack profiles/slurm-noacct on top of profiles/slurm.

Needs root on Linux, and apt-get unless SLURM and munge are already installed;
otherwise the module is skipped -- or fails, when the environment variable CI is
"true" (a CI job must not go green by skipping).

To run a workflow on the cluster from another test::

    @pytest.mark.slow
    def test_smoke_dag_on_slurm(slurm_cluster, tmp_path):
        args = ["--configfile", "config/smoke.yaml", "--directory", str(tmp_path)]
        proc = run_snakemake_on_slurm(slurm_cluster, REPO, args)
        assert proc.returncode == 0, output_tail(proc)
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
START_SH = REPO / "ci" / "slurm" / "start.sh"
STOP_SH = REPO / "ci" / "slurm" / "stop.sh"
PROFILE = REPO / "profiles" / "slurm"
PROFILE_NOACCT = REPO / "profiles" / "slurm-noacct"
TOY_WORKFLOW = Path(__file__).resolve().parent / "slurm_fixtures" / "toy"

# The profile polls every 40 s (sensible on a shared cluster); the tests poll
# every second. 1 x 3 s is far below the CI cluster's MinJobAge, so the plugin
# keeps using squeue (see profiles/slurm-noacct/config.yaml).
FAST_POLLING = (
    "--slurm-init-seconds-before-status-checks",
    "1",
    "--seconds-between-status-checks",
    "1",
)
# apt-get install (first run only), waiting for another live CI cluster on this
# machine to release /run/slurm/conf/slurm.conf (ci/slurm/claim_conf_link.sh,
# at most 900 s), plus daemon start.
START_TIMEOUT_S = 1500
CLAIM_SH = REPO / "ci" / "slurm" / "claim_conf_link.sh"


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def _skip_or_fail(reason: str) -> None:
    if _ci():
        pytest.fail(f"CI is set, so not skipping: {reason}", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class SlurmCluster:
    """A running CI cluster: its state directory and the environment for clients."""

    state_dir: Path
    env: dict[str, str]

    def slurm(self, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a SLURM client command (squeue, scontrol, ...) against this cluster."""
        return subprocess.run(
            list(cmd), env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def job_state(self, job_id: str) -> str:
        """State of a job as slurmctld reports it (finished jobs: for MinJobAge s)."""
        proc = self.slurm("squeue", "--states=all", "--noheader", "-j", job_id, "-o", "%T")
        return proc.stdout.strip()

    def cancel_all(self) -> None:
        self.slurm("scancel", f"--user={os.getuid()}")


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    if not sys.platform.startswith("linux"):
        _skip_or_fail("the SLURM CI cluster needs Linux")
    if os.geteuid() != 0:
        _skip_or_fail("the SLURM CI cluster needs root (slurmd, munged, apt-get)")
    have_slurm = all(shutil.which(b) for b in ("slurmctld", "slurmd", "sbatch", "munged"))
    if not have_slurm and not shutil.which("apt-get"):
        _skip_or_fail("SLURM/munge are not installed and apt-get is unavailable")
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        _skip_or_fail("snakemake-executor-plugin-slurm is not installed (pip install .[slurm])")

    state_dir = tmp_path_factory.mktemp("slurm")
    env = dict(os.environ)
    env["EFFOPD_SLURM_CTLD_PORT"] = str(_free_port())
    env["EFFOPD_SLURM_SLURMD_PORT"] = str(_free_port())
    try:
        t0 = time.monotonic()
        start = subprocess.run(
            ["bash", str(START_SH), str(state_dir)],
            env=env,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
        )
        if start.returncode != 0:
            pytest.fail(
                f"ci/slurm/start.sh failed (rc={start.returncode}):\n"
                f"{start.stdout}\n{start.stderr}",
                pytrace=False,
            )
        match = re.search(r"^export SLURM_CONF=(\S+)$", start.stdout, re.MULTILINE)
        assert match, f"start.sh printed no SLURM_CONF line:\n{start.stdout}"
        print(f"SLURM CI cluster started in {time.monotonic() - t0:.1f} s ({state_dir})")
        # Jobs inherit this environment (sbatch --export=ALL): they need the
        # venv's python/snakemake on PATH, and the site's EFFOPD_SLURM_* must not
        # leak into the tests.
        env = {k: v for k, v in env.items() if not k.startswith(("EFFOPD_SLURM_", "SLURM_"))}
        env["SLURM_CONF"] = match.group(1)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        yield SlurmCluster(state_dir=state_dir, env=env)
    finally:
        stop = subprocess.run(
            ["bash", str(STOP_SH), str(state_dir)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if stop.returncode != 0:
            print(f"ci/slurm/stop.sh failed:\n{stop.stdout}\n{stop.stderr}", file=sys.stderr)


def output_tail(proc: subprocess.CompletedProcess[str], lines: int = 80) -> str:
    return "\n".join((proc.stdout or "").splitlines()[-lines:])


def run_snakemake_on_slurm(
    cluster: SlurmCluster,
    workdir: Path,
    extra_args: Sequence[str] = (),
    *,
    profiles: Sequence[Path] = (PROFILE, PROFILE_NOACCT),
    timeout: float = 600,
    fast_polling: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``snakemake --profile ...`` in ``workdir`` against ``cluster``.

    Returns the finished process (stdout and stderr merged in ``.stdout``). If
    snakemake has not finished after ``timeout`` seconds it is killed, the
    cluster's jobs are cancelled and the test fails with the output so far --
    a hang is a bug we want to see, not wait for.
    """
    # --workflow-profile none: a profiles/default next to the Snakefile would be applied
    # (next to the Snakefile or in the cwd) on top of ``profiles``, key by key.
    cmd = [sys.executable, "-m", "snakemake", "--workflow-profile", "none"]
    for profile in profiles:
        cmd += ["--profile", str(profile)]
    if fast_polling:
        cmd += FAST_POLLING
    cmd += list(extra_args)
    try:
        return subprocess.run(
            cmd,
            cwd=workdir,
            env=cluster.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        cluster.cancel_all()
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout
        tail = "\n".join((out or "").splitlines()[-80:])
        pytest.fail(f"snakemake did not finish within {timeout} s: {cmd}\n{tail}", pytrace=False)


def _copy_toy(tmp_path: Path) -> Path:
    workdir = tmp_path / "toy"
    shutil.copytree(TOY_WORKFLOW, workdir)
    return workdir


def _job_id(line: str) -> str:
    match = re.search(r"slurm_job_id=(\S*)", line)
    assert match, line
    return match.group(1)


def test_profiles_parse_in_dry_run(tmp_path: Path) -> None:
    """Both profiles are valid for the installed snakemake + plugin (no cluster)."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    workdir = _copy_toy(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EFFOPD_SLURM_")}
    for profiles, site_env in [
        ((PROFILE,), {}),
        ((PROFILE, PROFILE_NOACCT), {}),
        # the optional, environment-driven entries of the YTE template
        ((PROFILE,), {"EFFOPD_SLURM_PARTITION": "debug", "EFFOPD_SLURM_ACCOUNT": "proj-1",
                      "EFFOPD_SLURM_GPU_PARTITION": "gpu", "EFFOPD_SLURM_GPU_MODEL": "a100"}),
    ]:  # fmt: skip
        cmd = [sys.executable, "-m", "snakemake", "-n", "--workflow-profile", "none"]
        for profile in profiles:
            cmd += ["--profile", str(profile)]
        proc = subprocess.run(
            cmd, cwd=workdir, env={**env, **site_env}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, output_tail(proc)
        assert "make_part" in proc.stdout and "combine" in proc.stdout
        if site_env:
            assert "slurm_partition=debug" in proc.stdout
            assert "slurm_account=proj-1" in proc.stdout
        else:
            assert "slurm_partition" not in proc.stdout
            assert "slurm_account" not in proc.stdout


def _claim(run_conf: Path, conf: Path, wait_s: float = 0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EFFOPD_SLURM_CONF_WAIT": str(wait_s)}
    return subprocess.run(
        ["bash", str(CLAIM_SH), str(run_conf), str(conf)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _cluster_dir(root: Path, name: str, pids: str | None) -> Path:
    """A state dir as start.sh leaves it: slurm.conf, and a pids file if given."""
    state = root / name
    state.mkdir()
    (state / "slurm.conf").write_text(f"ClusterName={name}\n")
    if pids is not None:
        (state / "pids").write_text(pids)
    return state


def _fake_daemon(tmp_path: Path, name: str) -> subprocess.Popen[bytes]:
    """A live process whose /proc/PID/comm is ``name`` (a copy of sleep)."""
    binary = tmp_path / name
    shutil.copy(shutil.which("sleep") or "/bin/sleep", binary)
    return subprocess.Popen([str(binary), "60"])


def test_conf_link_claim_takes_free_dangling_and_stale_links(tmp_path: Path) -> None:
    """A run killed before stop.sh leaves the link behind: the next cluster takes it."""
    run_conf = tmp_path / "run" / "slurm.conf"
    mine = _cluster_dir(tmp_path, "mine", None) / "slurm.conf"

    proc = _claim(run_conf, mine)  # no link yet (and no parent directory)
    assert proc.returncode == 0, proc.stderr
    assert os.readlink(run_conf) == str(mine)
    assert _claim(run_conf, mine).returncode == 0  # ours already: kept
    assert os.readlink(run_conf) == str(mine)

    run_conf.unlink()
    os.symlink(tmp_path / "gone" / "slurm.conf", run_conf)  # dangling
    proc = _claim(run_conf, mine)
    assert proc.returncode == 0, proc.stderr
    assert os.readlink(run_conf) == str(mine) and "stale" in proc.stderr

    # the CI failure this guards against: the link names an existing slurm.conf
    # whose cluster's daemons are gone (dead PIDs, and a PID now reused by a
    # process that is not the daemon it names)
    reused = subprocess.Popen(["sleep", "60"])
    try:
        dead = _cluster_dir(
            tmp_path, "killed", f"munged 999999999\nslurmctld {reused.pid}\nslurmd 999999998\n"
        )
        run_conf.unlink()
        os.symlink(dead / "slurm.conf", run_conf)
        proc = _claim(run_conf, mine)
    finally:
        reused.kill()
        reused.wait()
    assert proc.returncode == 0, proc.stderr
    assert os.readlink(run_conf) == str(mine)
    assert f"replacing stale {run_conf} -> {dead / 'slurm.conf'}" in proc.stderr


def test_conf_link_claim_waits_for_a_live_cluster_and_never_touches_files(
    tmp_path: Path,
) -> None:
    run_conf = tmp_path / "run" / "slurm.conf"
    run_conf.parent.mkdir()
    mine = _cluster_dir(tmp_path, "mine", None) / "slurm.conf"
    daemon = _fake_daemon(tmp_path, "slurmctld")
    try:
        other = _cluster_dir(tmp_path, "other", f"slurmctld {daemon.pid}\n")
        os.symlink(other / "slurm.conf", run_conf)
        t0 = time.monotonic()
        proc = _claim(run_conf, mine, wait_s=3)
        assert proc.returncode == 1
        assert time.monotonic() - t0 >= 3
        assert os.readlink(run_conf) == str(other / "slurm.conf")  # left alone
        assert f"running cluster of {other}" in proc.stderr
        assert f"ci/slurm/stop.sh {other}" in proc.stderr

        # the other cluster stops while we wait: we get the link
        waiter = subprocess.Popen(
            ["bash", str(CLAIM_SH), str(run_conf), str(mine)],
            env={**os.environ, "EFFOPD_SLURM_CONF_WAIT": "30"},
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(1)
        assert waiter.poll() is None
        daemon.kill()
        daemon.wait()
        _, err = waiter.communicate(timeout=30)
        assert waiter.returncode == 0, err
        assert "waiting up to 30 s" in err
        assert os.readlink(run_conf) == str(mine)
    finally:
        daemon.kill()
        daemon.wait()

    # a configless slurmd's cached config is a file: refused, kept byte for byte
    run_conf.unlink()
    run_conf.write_text("cached\n")
    proc = _claim(run_conf, mine)
    assert proc.returncode == 1 and "not a symlink" in proc.stderr
    assert run_conf.read_text() == "cached\n"


@pytest.mark.slow
def test_noacct_cluster_needs_the_squeue_overlay(slurm_cluster: SlurmCluster) -> None:
    """The premise of profiles/slurm-noacct, checked on the CI cluster itself."""
    sacct = slurm_cluster.slurm("sacct", "--noheader")
    assert sacct.returncode != 0
    assert "accounting storage is disabled" in (sacct.stdout + sacct.stderr).lower()
    # squeue status polling is only used by the plugin if MinJobAge >= 3 x the
    # init interval (40 s in the overlay), else it silently falls back to sacct.
    config = slurm_cluster.slurm("scontrol", "show", "config").stdout
    min_job_age = int(re.search(r"^MinJobAge\s*=\s*(\d+)", config, re.MULTILINE).group(1))
    assert min_job_age >= 3 * 40


@pytest.mark.slow
def test_toy_workflow_runs_as_slurm_jobs(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    workdir = _copy_toy(tmp_path)
    t0 = time.monotonic()
    proc = run_snakemake_on_slurm(slurm_cluster, workdir, timeout=300)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, output_tail(proc)
    print(f"toy workflow on SLURM: {elapsed:.1f} s")

    parts = [(workdir / f"results/part_{i}.txt").read_text().strip() for i in (1, 2)]
    combined = (workdir / "results/combined.txt").read_text().strip().splitlines()
    assert combined[:2] == parts
    assert combined[2].startswith("rule=combine ")

    job_ids = [_job_id(line) for line in combined]
    assert all(j.isdigit() for j in job_ids), f"not run under SLURM: {combined}"
    assert len(set(job_ids)) == 3, f"expected one SLURM job per rule instance: {job_ids}"
    for job_id in job_ids:
        assert slurm_cluster.job_state(job_id) == "COMPLETED"
        # the snakemake log names every job it submitted
        assert f"SLURM jobid {job_id}" in proc.stdout


BAD_REQUESTS = {
    # name: (--set-resources value, SLURM's sbatch error)
    "unknown-partition": ("make_part:slurm_partition='no_such_partition'",
                          r"[Ii]nvalid partition"),
    "too-many-cpus": ("make_part:cpus_per_task=512",
                      r"More processors requested than permitted"),
    "too-much-memory": ("make_part:mem_mb=100000000",
                        r"Memory specification can not be satisfied"),
    "gpu-on-cpu-node": ("make_part:gpu=1",
                        r"Invalid generic resource \(gres\) specification"),
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_impossible_request_fails_fast(
    slurm_cluster: SlurmCluster, tmp_path: Path, case: str
) -> None:
    """sbatch rejects the job; snakemake must report SLURM's message and exit != 0."""
    set_resources, slurm_error = BAD_REQUESTS[case]
    workdir = _copy_toy(tmp_path)
    t0 = time.monotonic()
    proc = run_snakemake_on_slurm(
        slurm_cluster, workdir, ["--set-resources", set_resources], timeout=120
    )
    elapsed = time.monotonic() - t0
    assert proc.returncode != 0, output_tail(proc)
    assert "SLURM sbatch failed" in proc.stdout, output_tail(proc)
    assert re.search(slurm_error, proc.stdout), output_tail(proc)
    assert not (workdir / "results/combined.txt").exists()
    print(f"{case}: failed after {elapsed:.1f} s")


@pytest.mark.slow
def test_smoke_dag_on_slurm_matches_local_run(
    slurm_cluster: SlurmCluster, smoke_run: Path, tmp_path: Path
) -> None:
    """The real smoke DAG through the SLURM profile gives the local run's outputs."""
    from tests.conftest import BIN, REPO

    cluster = dataclasses.replace(
        slurm_cluster, env={**slurm_cluster.env, "PATH": f"{BIN}:{slurm_cluster.env['PATH']}"}
    )
    proc = run_snakemake_on_slurm(
        cluster,
        tmp_path,
        [
            # base models, training and evaluation: the jobs that differ on a cluster
            # (targets before --configfile, which would read them as config files)
            "results/smoke/tables/base_models.csv",
            "results/smoke/tables/training_curves.csv",
            "-s",
            str(REPO / "Snakefile"),
            "--configfile",
            str(REPO / "config/smoke.yaml"),
        ],
        timeout=1500,
    )
    assert proc.returncode == 0, output_tail(proc)
    assert "slurm" in proc.stdout.lower()
    same_bytes = [
        "artifacts/smoke/data/train.jsonl",
        "artifacts/smoke/benchmarks/tiny_test.jsonl",
        "artifacts/smoke/models/teacher/model.safetensors",
        "artifacts/smoke/models/student/model.safetensors",
    ]
    for relative in same_bytes:
        assert (tmp_path / relative).read_bytes() == (smoke_run / relative).read_bytes(), relative
    for table, columns in (
        ("base_models.csv", ["model", "avg@n", "pass@1", "pass@2"]),
        ("training_curves.csv", ["method", "seed", "step", "avg@n", "batch_accuracy"]),
    ):
        on_slurm = pd.read_csv(tmp_path / "results/smoke/tables" / table)[columns]
        local = pd.read_csv(smoke_run / "results/smoke/tables" / table)[columns]
        pd.testing.assert_frame_equal(on_slurm, local)
