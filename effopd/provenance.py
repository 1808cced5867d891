"""Content hashes that tie every artifact to the exact files that made it."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def directory_manifest(directory: str | Path, exclude: tuple[str, ...] = ("manifest.json",)
                       ) -> dict[str, str]:
    """``{relative path: sha256}`` for every regular file below ``directory`` (sorted).

    Files whose name is in ``exclude`` and anything inside a hidden directory
    (such as huggingface_hub's ``.cache``) are left out.
    """
    root = Path(directory)
    manifest = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if not path.is_file() or path.name in exclude or any(
                part.startswith(".") for part in relative.parts[:-1]):
            continue
        manifest[relative.as_posix()] = sha256_file(path)
    return manifest


def code_digest(modules: tuple[str, ...]) -> str:
    """SHA-256 over the package version and the source of ``modules`` (paths relative to
    the ``effopd`` package, e.g. ``"grading.py"``): the code version of a cached result."""
    from importlib.metadata import PackageNotFoundError, version

    package = Path(__file__).resolve().parent
    try:
        digest = hashlib.sha256(version("effopd").encode())
    except PackageNotFoundError:
        digest = hashlib.sha256(b"unknown")
    for module in sorted(modules):
        digest.update(module.encode() + b"\0" + (package / module).read_bytes())
    return digest.hexdigest()


def git_state(directory: str | Path = ".") -> dict[str, object]:
    """The commit checked out in ``directory`` and whether its code differs from it.

    Changes under ``results/`` and ``paper_figures/`` (the outputs being
    recorded) do not count as a dirty work tree.
    """
    import subprocess

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=directory, capture_output=True,
                                  text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".",
                 ":(exclude)results", ":(exclude)paper_figures")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def config_sha256(config: dict) -> str:
    """SHA-256 of the validated config (defaults filled), serialised with sorted keys."""
    import json

    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def write_provenance(config: dict, model_dirs: list[str | Path],
                     data_manifests: list[str | Path], data_files: list[str | Path],
                     outputs: list[str | Path], out: str | Path,
                     repo_dir: str | Path | None = None) -> dict:
    """Write the provenance sidecar of an experiment's tables and figures.

    Records the config and its hash, the git state of the code, each model's
    manifest (origin, revision, sha256 of every file), each prepared data set's
    manifest and hash, and the sha256 of every table and figure it covers.
    """
    from effopd.cpu_kernels import kernel_provenance
    from effopd.io import atomic_write_json, read_json

    record = {
        "experiment": config["experiment"],
        "config_sha256": config_sha256(config),
        "config": config,
        "git": git_state(repo_dir or Path(__file__).resolve().parents[1]),
        "models": {Path(d).name: read_json(Path(d) / "manifest.json") for d in model_dirs},
        "data": {Path(p).name: read_json(p) for p in data_manifests},
        "data_sha256": {Path(p).name: sha256_file(p) for p in data_files},
        "outputs_sha256": {str(p): sha256_file(p) for p in outputs},
        "cpu_kernels": kernel_provenance(),
    }
    atomic_write_json(out, record)
    return record
