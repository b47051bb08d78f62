"""One checkpoint format: model, guide and optimizer state plus the constructor arguments.

Written atomically (temporary file, fsync, rename) and read with
``torch.load(weights_only=True)``: only tensors and plain containers, no pickled code. Every
file carries a SHA-256 checksum of its contents (checked on load), and none is written from
a state holding NaN or inf: a diverged run keeps its last good checkpoint.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import torch

FORMAT = "pyro-vae checkpoint v1"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or does not match the model it is loaded into."""


def leaves(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(path, value)`` for every tensor or plain value in nested dicts, lists and tuples."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from leaves(value, f"{prefix}/{key}")
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            yield from leaves(value, f"{prefix}/{i}")
    else:
        yield prefix, obj


def digest_tensor(h: Any, tensor: torch.Tensor) -> None:
    """Feed a tensor's dtype, shape and bytes to the hash ``h`` (a ``hashlib`` object)."""
    t = tensor.detach().cpu().contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


def checksum(payload: dict[str, Any]) -> str:
    """SHA-256 over every key, tensor (dtype, shape, bytes) and plain value of ``payload``
    except its ``checksum``."""
    h = hashlib.sha256()
    for key, value in leaves({k: v for k, v in payload.items() if k != "checksum"}):
        h.update(key.encode())
        if isinstance(value, torch.Tensor):
            digest_tensor(h, value)
        else:
            h.update(repr(value).encode())
    return h.hexdigest()


def non_finite(payload: dict[str, Any]) -> list[str]:
    """Paths of the floating-point tensors in ``payload`` that hold NaN or inf."""
    return [
        key
        for key, value in leaves(payload)
        if isinstance(value, torch.Tensor)
        and (value.is_floating_point() or value.is_complex())
        and not bool(torch.isfinite(value).all())
    ]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(path: Path) -> None:
    """Remove the temporary files of writes to ``path`` by processes that no longer run
    (a write killed half-way leaves ``.NAME.tmp-PID``)."""
    for tmp in path.parent.glob(f".{path.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def save(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus the format tag and a checksum) to ``path`` atomically; refuse
    a payload with NaN or inf in its tensors, leaving the file at ``path`` as it was."""
    path = Path(path)
    bad = non_finite(payload)
    if bad:
        raise CheckpointError(
            f"not writing {path}: {len(bad)} tensor(s) hold NaN or inf ({bad[0]}); the "
            "previous checkpoint is kept"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    payload = {"format": FORMAT, **payload}
    payload["checksum"] = checksum(payload)
    return write_atomically(path, lambda f: torch.save(payload, f))


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Write a file so that ``path`` holds either its old contents or the whole new ones:
    ``write(f)`` into a temporary file beside it, fsync, rename (the temporary file is removed
    if anything fails)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint, with a one-line error for a missing, corrupt or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: check the path (runs write checkpoint.pt)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError, OSError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "GLOBAL" in str(e):  # the safe unpickler met a reference to code
            raise CheckpointError(
                f"refused to load {path}: it holds pickled objects other than tensors and plain "
                "values, which could run code (pyro-vae checkpoints never do): do not load "
                "files from untrusted sources"
            ) from None
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({reason[:160]}); it may be truncated or "
            "corrupt: use an earlier copy or train again"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"{path} is not a {FORMAT!r} file (found {found!r}); pass a checkpoint.pt written "
            "by pyro-vae"
        )
    if "checksum" in payload and checksum(payload) != payload["checksum"]:
        raise CheckpointError(
            f"{path} fails its checksum: its contents changed after it was written (a damaged "
            "copy or an edit); use an earlier copy or train again"
        )
    bad = non_finite(payload)
    if bad:
        raise CheckpointError(
            f"{path} holds NaN or inf in {len(bad)} tensor(s) ({bad[0]}): the run diverged "
            "before it was saved; train again with a lower learning rate (--lr)"
        )
    return payload


def load_modules(module: torch.nn.Module, state: dict[str, Any], path: str | os.PathLike) -> None:
    """``module.load_state_dict(state)`` with a clear error when the architectures differ."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    resized = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or resized:
        detail = "; ".join(
            f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape", resized))
            if keys
        )
        raise CheckpointError(
            f"{path} holds a different architecture ({detail}); build the model from the "
            "checkpoint's own config (pyro_vae.run.load) or match its settings"
        )
    module.load_state_dict(state)
