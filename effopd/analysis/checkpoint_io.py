"""Streaming access to Hugging Face safetensors checkpoints, one tensor at a time.

A checkpoint directory holds either ``model.safetensors`` or shards listed in
``model.safetensors.index.json`` (``weight_map``: tensor name -> shard file).
Nothing here loads a whole model: every reader opens the file that holds the
asked-for tensor, copies that one tensor out and closes it again, so the peak
memory of an analysis is a few tensors, never two models.

The update of a checkpoint is, per parameter tensor,

    Delta = theta_t - theta_0,

computed after upcasting both to at least float32 (SPEC section 4: a bf16
round trip can erase learning-rate-1e-6 updates).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from effopd.device import DeviceLike, resolve_device
from effopd.errors import CheckpointError
from effopd.io import atomic_write_json
from effopd.models.checkpoint import MANIFEST_NAME, check_safetensors_file
from effopd.models.names import LAYER

log = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
PROVENANCE_NAME = "effopd_provenance.json"
# Files copied verbatim from the base into a written checkpoint: config, generation
# config, tokenizer files, chat template. Weights are written, never copied.
AUX_SUFFIXES = (".json", ".jinja", ".txt", ".model", ".tiktoken")

PathLike = str | os.PathLike[str]


# --------------------------------------------------------------------------- names


@dataclass(frozen=True)
class ParamInfo:
    """Where a parameter sits in a Qwen3 model.

    ``layer`` is the transformer-block index (``None`` outside the blocks);
    ``module`` is one of q, k, v, o, gate, up, down, q_norm, k_norm, input_norm,
    post_attn_norm, embed, lm_head, final_norm; ``group`` is one of attention,
    mlp, norm, embedding, head, final_norm. The per-head ``q_norm`` and
    ``k_norm`` live inside ``self_attn`` and belong to the attention group; the
    two block layer norms form the norm group.
    """

    layer: int | None
    module: str
    group: str


_BLOCK_MODULES: dict[str, tuple[str, str]] = {
    "self_attn.q_proj": ("q", "attention"),
    "self_attn.k_proj": ("k", "attention"),
    "self_attn.v_proj": ("v", "attention"),
    "self_attn.o_proj": ("o", "attention"),
    "self_attn.q_norm": ("q_norm", "attention"),
    "self_attn.k_norm": ("k_norm", "attention"),
    "mlp.gate_proj": ("gate", "mlp"),
    "mlp.up_proj": ("up", "mlp"),
    "mlp.down_proj": ("down", "mlp"),
    "input_layernorm": ("input_norm", "norm"),
    "post_attention_layernorm": ("post_attn_norm", "norm"),
}
_BLOCK_RE = re.compile(rf"(?:^|\.){LAYER}(.+)\.(?:weight|bias)$")  # any wrapper prefix
_TOP_RES: tuple[tuple[re.Pattern[str], ParamInfo], ...] = (
    (re.compile(r"(?:^|\.)embed_tokens\.weight$"), ParamInfo(None, "embed", "embedding")),
    (re.compile(r"(?:^|\.)lm_head\.weight$"), ParamInfo(None, "lm_head", "head")),
    (re.compile(r"^(?:model\.)?norm\.weight$"), ParamInfo(None, "final_norm", "final_norm")),
)
_GROUP_ORDER = {"embedding": 0, "attention": 1, "mlp": 1, "norm": 1, "final_norm": 2, "head": 3}


def parse_param_name(name: str) -> ParamInfo:
    """Parse a Qwen3 parameter name such as ``model.layers.3.mlp.up_proj.weight``.

    Raises ``ValueError`` naming the parameter when it is not a Qwen3 name.
    """
    match = _BLOCK_RE.search(name)
    if match:
        module = _BLOCK_MODULES.get(match.group(2))
        if module is None:
            raise ValueError(f"unrecognised Qwen3 block parameter {name!r}")
        return ParamInfo(int(match.group(1)), *module)
    for pattern, info in _TOP_RES:
        if pattern.search(name):
            return info
    raise ValueError(f"unrecognised Qwen3 parameter name {name!r}")


def is_block_weight(name: str) -> bool:
    """True for a tensor inside a transformer block (projections and in-block norms)."""
    return parse_param_name(name).layer is not None


def param_sort_key(name: str) -> tuple[int, int, str]:
    """Order parameters as in the forward pass: embedding, blocks by index, final norm, head.

    Names that are not Qwen3 parameters sort last, alphabetically.
    """
    try:
        info = parse_param_name(name)
    except ValueError:
        return (9, 0, name)
    return (_GROUP_ORDER[info.group], -1 if info.layer is None else info.layer, name)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint directory and its ``weight_map`` (tensor name -> file name)."""

    directory: Path
    weight_map: Mapping[str, str]
    sharded: bool

    @property
    def names(self) -> list[str]:
        """Tensor names in forward-pass order (see :func:`param_sort_key`)."""
        return sorted(self.weight_map, key=param_sort_key)

    @property
    def files(self) -> list[str]:
        """Weight files in the order the index (or the single file) lists them."""
        return list(dict.fromkeys(self.weight_map.values()))

    def path_of(self, name: str) -> Path:
        """The file that holds tensor ``name``; ``KeyError`` naming the directory if none."""
        try:
            return self.directory / self.weight_map[name]
        except KeyError:
            raise KeyError(f"tensor {name!r} is not in checkpoint {self.directory}") from None


CheckpointLike = PathLike | Checkpoint


def open_checkpoint(ckpt: CheckpointLike) -> Checkpoint:
    """Index a checkpoint directory without reading any tensor.

    A single ``model.safetensors`` wins over an index (as in transformers). Raises
    ``FileNotFoundError`` naming the directory when it holds neither, or naming
    the shard when the index points at a missing file; ``CheckpointError`` naming
    the file when a weight file is truncated or its header corrupt
    (:func:`effopd.models.checkpoint.check_safetensors_file`) or the index unreadable.
    """
    if isinstance(ckpt, Checkpoint):
        return ckpt
    directory = Path(ckpt)
    single = directory / WEIGHTS_NAME
    index = directory / INDEX_NAME
    if single.is_file():
        check_safetensors_file(single)
        with safe_open(single, framework="pt") as handle:
            names = handle.keys()
        return Checkpoint(directory, dict.fromkeys(names, WEIGHTS_NAME), False)
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
            raise CheckpointError(f"{index}: corrupt shard index ({err!r})") from err
        for shard in dict.fromkeys(weight_map.values()):
            if not (directory / shard).is_file():
                raise FileNotFoundError(f"{index} lists shard {shard!r}, which is missing")
            check_safetensors_file(directory / shard)
        return Checkpoint(directory, dict(weight_map), True)
    raise FileNotFoundError(f"{directory}: neither {WEIGHTS_NAME} nor {INDEX_NAME} found")


def list_tensor_names(ckpt: CheckpointLike) -> list[str]:
    """All tensor names of a checkpoint in forward-pass order."""
    return open_checkpoint(ckpt).names


def _upcast(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """Cast a floating tensor to ``dtype`` unless it is already more precise."""
    if dtype is None or not tensor.is_floating_point():
        return tensor
    return tensor.to(torch.promote_types(tensor.dtype, dtype))


def tensor_shape(ckpt: CheckpointLike, name: str) -> tuple[int, ...]:
    """Shape of one stored tensor, read from the file header only."""
    ckpt = open_checkpoint(ckpt)
    with safe_open(ckpt.path_of(name), framework="pt") as handle:
        return tuple(handle.get_slice(name).get_shape())


def read_tensor(ckpt: CheckpointLike, name: str, dtype: torch.dtype | None = torch.float32,
                device: DeviceLike = "cpu") -> torch.Tensor:
    """Read one tensor, upcast to at least ``dtype`` (``None``: stored dtype), on ``device``.

    "At least": a float64 tensor stays float64 when float32 is asked for.
    """
    ckpt = open_checkpoint(ckpt)
    with safe_open(ckpt.path_of(name), framework="pt") as handle:
        tensor = handle.get_tensor(name)
    return _upcast(tensor, dtype).to(resolve_device(device))


def read_tensor_rows(ckpt: CheckpointLike, name: str, start: int, stop: int,
                     dtype: torch.dtype | None = torch.float32,
                     device: DeviceLike = "cpu") -> torch.Tensor:
    """Read rows ``start:stop`` (first dimension) of one tensor without reading the rest."""
    ckpt = open_checkpoint(ckpt)
    with safe_open(ckpt.path_of(name), framework="pt") as handle:
        tensor = handle.get_slice(name)[start:stop]
    return _upcast(tensor, dtype).to(resolve_device(device))


def block_matrix_names(ckpt: CheckpointLike) -> list[str]:
    """Names of the 2-D block weights (attention and MLP projections), forward-pass order."""
    ckpt = open_checkpoint(ckpt)
    return [name for name in ckpt.names
            if is_block_weight(name) and len(tensor_shape(ckpt, name)) == 2]


def check_same_names(base: Checkpoint, ckpt: Checkpoint, names: Iterable[str],
                     warn_extra: bool = True) -> list[str]:
    """Raise ``KeyError`` for a name missing from either side; warn once about extra tensors."""
    names = list(names)
    for name in names:
        if name not in base.weight_map:
            raise KeyError(f"tensor {name!r} is not in base checkpoint {base.directory}")
        if name not in ckpt.weight_map:
            raise KeyError(f"tensor {name!r} of base {base.directory} is missing from "
                           f"checkpoint {ckpt.directory}")
    extra = sorted(set(ckpt.weight_map) - set(base.weight_map)) if warn_extra else []
    if extra:
        log.warning("%s has %d tensors that base %s lacks (ignored), e.g. %s",
                    ckpt.directory, len(extra), base.directory, extra[0])
    return names


def check_same_shape(name: str, base: Checkpoint, ckpt: Checkpoint,
                     base_shape: tuple[int, ...], ckpt_shape: tuple[int, ...]) -> None:
    """Raise a ValueError naming the tensor and both directories if the shapes differ."""
    if tuple(base_shape) != tuple(ckpt_shape):
        raise ValueError(f"tensor {name!r}: shape {tuple(ckpt_shape)} in {ckpt.directory} "
                         f"differs from {tuple(base_shape)} in base {base.directory}")


def iter_tensor_pairs(base_dir: CheckpointLike, ckpt_dir: CheckpointLike,
                      names: Iterable[str] | None = None,
                      dtype: torch.dtype = torch.float32,
                      device: DeviceLike = "cpu",
                      ) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
    """Yield ``(name, theta_0, theta_t)`` one tensor at a time, both upcast to ``dtype``.

    ``names`` defaults to every tensor of the base. A tensor missing from either
    checkpoint raises ``KeyError`` and a shape mismatch ``ValueError``, both
    naming the tensor and the directories; tensors only the checkpoint has are
    ignored with a warning.
    """
    base, ckpt = open_checkpoint(base_dir), open_checkpoint(ckpt_dir)
    for name in check_same_names(base, ckpt, base.names if names is None else names):
        theta0 = read_tensor(base, name, dtype, device)
        theta = read_tensor(ckpt, name, dtype, device)
        check_same_shape(name, base, ckpt, theta0.shape, theta.shape)
        yield name, theta0, theta
        del theta0, theta


def iter_update_tensors(base_dir: CheckpointLike, ckpt_dir: CheckpointLike,
                        names: Iterable[str] | None = None,
                        dtype: torch.dtype = torch.float32,
                        device: DeviceLike = "cpu") -> Iterator[tuple[str, torch.Tensor]]:
    """Yield ``(name, Delta)`` with ``Delta = theta_t - theta_0`` in ``dtype``, one at a time.

    Peak memory is two copies of the largest tensor (the difference is taken in
    place). Errors as in :func:`iter_tensor_pairs`.
    """
    base, ckpt = open_checkpoint(base_dir), open_checkpoint(ckpt_dir)
    for name in check_same_names(base, ckpt, base.names if names is None else names):
        delta = read_tensor(ckpt, name, dtype, device)
        theta0 = read_tensor(base, name, dtype, device)
        check_same_shape(name, base, ckpt, theta0.shape, delta.shape)
        delta.sub_(theta0)
        del theta0
        yield name, delta
        del delta


def iter_row_blocks(base_dir: CheckpointLike, ckpt_dir: CheckpointLike, name: str,
                    max_elements: int = 1 << 24, dtype: torch.dtype = torch.float32,
                    device: DeviceLike = "cpu") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(theta_0[rows], theta_t[rows])`` in blocks of rows of at most ``max_elements``.

    Lets reductions over a huge tensor (a 151936 x 4096 embedding) run in
    bounded memory. A 0-D or 1-D tensor comes as one block.
    """
    base, ckpt = open_checkpoint(base_dir), open_checkpoint(ckpt_dir)
    check_same_names(base, ckpt, [name], warn_extra=False)
    shape = tensor_shape(base, name)
    check_same_shape(name, base, ckpt, shape, tensor_shape(ckpt, name))
    if len(shape) < 2:
        yield read_tensor(base, name, dtype, device), read_tensor(ckpt, name, dtype, device)
        return
    for start, stop in row_ranges(shape, max_elements):
        yield (read_tensor_rows(base, name, start, stop, dtype, device),
               read_tensor_rows(ckpt, name, start, stop, dtype, device))


def row_ranges(shape: Sequence[int], max_elements: int = 1 << 24) -> list[tuple[int, int]]:
    """The ``(start, stop)`` blocks of rows of at most ``max_elements`` elements that
    :func:`iter_row_blocks` reads a tensor of ``shape`` (at least 2-D) in."""
    row_size = max(1, int(torch.Size(shape[1:]).numel()))
    step = max(1, max_elements // row_size)
    return [(start, min(shape[0], start + step)) for start in range(0, shape[0], step)]


# --------------------------------------------------------------------------- writing

Transform = Callable[[str, torch.Tensor], torch.Tensor]


def _copy_aux_files(src: Path, dst: Path) -> None:
    """Copy config and tokenizer files; never the base's manifest, whose sha256 of the
    weights would not match the weights written here."""
    for path in sorted(src.iterdir()):
        if (path.is_file() and path.suffix in AUX_SUFFIXES
                and not path.name.endswith(".index.json")
                and path.name not in (PROVENANCE_NAME, MANIFEST_NAME)):
            shutil.copy2(path, dst / path.name)


def _set_config_dtype(config_path: Path, dtype: torch.dtype) -> None:
    config = json.loads(config_path.read_text(encoding="utf-8"))
    dtype_name = str(dtype).removeprefix("torch.")
    for key in ("dtype", "torch_dtype"):
        if key in config:
            config[key] = dtype_name
    if "dtype" not in config and "torch_dtype" not in config:
        config["dtype"] = dtype_name
    atomic_write_json(config_path, config)


def _replace_dir(tmp: Path, target: Path, overwrite: bool) -> None:
    if target.exists():
        if not overwrite:
            raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
        trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, trash / target.name)
        os.replace(tmp, target)
        shutil.rmtree(trash)
    else:
        os.replace(tmp, target)


def write_modified_checkpoint(base_dir: CheckpointLike, out_dir: PathLike, transform: Transform,
                              *, device: DeviceLike = "cpu", out_dtype: torch.dtype | None = None,
                              provenance: Mapping[str, Any] | None = None,
                              overwrite: bool = False) -> Path:
    """Write ``transform(name, theta_0)`` for every base tensor as a new HF checkpoint.

    The base is streamed tensor by tensor: ``transform`` receives the base
    tensor upcast to at least float32 on ``device`` and returns a tensor of the
    same shape, which is cast to ``out_dtype`` (default: the tensor's stored
    dtype). The cast float32 -> bf16/fp16/fp32 of an upcast value is exact, so
    a transform that returns its input writes bit-identical bytes.

    Layout mirrors the base: one ``model.safetensors`` (the output tensors of
    that file are held in memory until it is written) or the same shards and an
    index (peak memory: one shard). config.json, generation_config.json,
    tokenizer files and the chat template are copied (``dtype`` in config.json
    is updated when ``out_dtype`` is given); ``provenance``, if given, goes to
    ``effopd_provenance.json``. The directory is built under a temporary name
    beside ``out_dir`` and renamed at the end, so a failed run leaves nothing.
    """
    base = open_checkpoint(base_dir)
    target = Path(out_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
    device = resolve_device(device)
    by_file: dict[str, list[str]] = {}
    for name in base.names:
        by_file.setdefault(base.weight_map[name], []).append(name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        total_size = 0
        for file_name in base.files:
            out: dict[str, torch.Tensor] = {}
            for name in by_file[file_name]:
                with safe_open(base.path_of(name), framework="pt") as handle:
                    stored = handle.get_tensor(name)
                new = transform(name, _upcast(stored, torch.float32).to(device))
                if not isinstance(new, torch.Tensor) or tuple(new.shape) != tuple(stored.shape):
                    got = tuple(new.shape) if isinstance(new, torch.Tensor) else type(new).__name__
                    raise ValueError(f"transform changed tensor {name!r} of {base.directory} "
                                     f"from shape {tuple(stored.shape)} to {got}")
                dtype = stored.dtype
                if out_dtype is not None and stored.is_floating_point():
                    dtype = out_dtype
                out[name] = new.to(device="cpu", dtype=dtype).contiguous()
                total_size += out[name].numel() * out[name].element_size()
                del stored, new
            save_file(out, tmp / file_name, metadata={"format": "pt"})
            del out
        if base.sharded:
            atomic_write_json(tmp / INDEX_NAME, {"metadata": {"total_size": total_size},
                                                 "weight_map": dict(base.weight_map)})
        _copy_aux_files(base.directory, tmp)
        if out_dtype is not None and (tmp / "config.json").is_file():
            _set_config_dtype(tmp / "config.json", out_dtype)
        if provenance is not None:
            atomic_write_json(tmp / PROVENANCE_NAME, dict(provenance))
        _replace_dir(tmp, target, overwrite)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return target
