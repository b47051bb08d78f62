"""One checkpoint format: model, guide and optimizer state plus the constructor arguments.

Written atomically (temporary file, fsync, rename; SIGINT and SIGTERM are held until the
write is done) and read with ``torch.load(weights_only=True)``: only tensors and plain
containers, no pickled code. Every file carries a SHA-256 checksum of its contents (checked on
load, and required of files marked with this writer's ``revision``), and none is written from
a state holding NaN or inf: a diverged run keeps its last good checkpoint. A write that fails
(a full disk, ``ulimit -f``) is one :class:`WriteError` line, the previous file kept.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import signal
import sys
import threading
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import torch

FORMAT = "pyro-vae checkpoint v1"
# Files of revision 2 and later must carry their checksum; revision 1 (no ``revision`` key) are
# those written before checksums existed, loaded without one (with a note).
REVISION = 2


# files users pass by mistake, by their first bytes (a checkpoint is a zip archive, or an old
# torch pickle): named in the refusal
FOREIGN = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x93NUMPY", "a NumPy .npy array"),
    (b"\x1f\x8b", "a gzip file"),
    (b"{", "a JSON file"),
    (b"epoch,", "a CSV table (metrics.csv?)"),
)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or does not match the model it is loaded into."""


class WriteError(OSError):
    """A file could not be written (a full disk, ``ulimit -f``, a read-only folder); the file
    at its path is as it was before."""


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


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (on this host)."""
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
        if pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid)):
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
    payload = {"format": FORMAT, "revision": REVISION, **payload}
    payload["checksum"] = checksum(payload)
    return write_atomically(path, lambda f: torch.save(payload, f))


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Write a file so that ``path`` holds either its old contents or the whole new ones:
    ``write(f)`` into a temporary file beside it, fsync, rename (the temporary file is removed
    if anything fails). SIGINT and SIGTERM arriving meanwhile take effect once it is done
    (:func:`signals_held`); a failed write is a :class:`WriteError` naming ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with signals_held():
        try:
            with open(tmp, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except (OSError, RuntimeError) as e:
            raise WriteError(f"could not write {path} ({write_failure(e)}): {remedy(e)}") from e
        finally:
            tmp.unlink(missing_ok=True)
    return path


def write_failure(e: BaseException) -> str:
    """Why a write failed, in words: the system's reason where one is known (torch.save
    reports a failed write as a RuntimeError whose context is the OSError)."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    text = str(e).strip()
    return text.splitlines()[0][:160] if text else type(e).__name__


def remedy(e: BaseException) -> str:
    """What to do about the failed write ``e``."""
    seen: BaseException | None = e
    while seen is not None and not isinstance(seen, OSError):
        seen = seen.__cause__ or seen.__context__
    code = seen.errno if seen is not None else None
    if code in (errno.ENOENT, errno.ENOTDIR):
        return "its folder does not exist: make it, or choose another path"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "its folder is not writable: choose another path"
    return "free space on its disk (or raise `ulimit -f`), or choose another folder"


_held_depth = 0
_held: list[int] = []


def _hold(signum: int, frame: object) -> None:
    _held.append(signum)


@contextlib.contextmanager
def signals_held(signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Run the block with ``signums`` held: one that arrives meanwhile is delivered to the
    handler in place before (KeyboardInterrupt, the CLI's SIGTERM, the default action) once
    the block is done, so that a write is never cut off half-way. Nested blocks hold until the
    outermost ends; outside the main thread (where handlers cannot be set) nothing is held."""
    global _held_depth
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {}
    if _held_depth == 0:
        for signum in signums:
            handler = signal.getsignal(signum)
            if handler is not None:  # None: set from C, and could not be put back
                previous[signum] = handler
                signal.signal(signum, _hold)
    _held_depth += 1
    try:
        yield
    finally:
        _held_depth -= 1
        if _held_depth == 0:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            arrived = list(dict.fromkeys(_held))
            _held.clear()
            for signum in arrived:  # the handlers in place now act on them (and may raise)
                signal.raise_signal(signum)


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint, with a one-line error for a missing, corrupt or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: check the path (runs write checkpoint.pt)")
    what = foreign(path)
    if what is not None:
        raise CheckpointError(
            f"{path} is {what}, not a checkpoint: pass the checkpoint.pt (or best.pt) a "
            "pyro-vae run wrote"
        )
    try:
        with warnings.catch_warnings():  # torch's notes on odd pickle protocols: one line here
            warnings.simplefilter("ignore", UserWarning)
            payload = torch.load(path, map_location=map_location, weights_only=True)
    # any error of the unpickler on damaged bytes (IndexError, KeyError, EOFError, ...)
    except Exception as e:
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
    try:
        verify(path, payload)
    except CheckpointError:
        raise
    except Exception as e:  # contents too odd to hash (nested past the recursion limit, ...)
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(e).__name__} while checking it); it "
            "may be corrupt: use an earlier copy or train again"
        ) from None
    return payload


def foreign(path: Path) -> str | None:
    """What ``path`` is, in words, where its first bytes show that it is no checkpoint (which
    is a zip archive holding ``data.pkl``, or an old torch pickle); None where it may be one."""
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        return "empty"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError):
            # a damaged archive (a flipped byte can claim an unknown zip version or
            # compression method): torch.load names what is wrong
            return None
        if any(n.endswith("data.pkl") for n in names):
            return None
        return f"a zip archive of {', '.join(names[:3]) or 'nothing'} (an .npz?)"
    if head.startswith(b"\x80"):  # a pickle: an old torch file, or damaged bytes
        return None
    known = next((name for magic, name in FOREIGN if head.startswith(magic)), None)
    if known:
        return known
    text = head.isascii() and head.decode().isprintable()
    return "a text file" if text else "a file of unknown kind"


def verify(path: Path, payload: dict[str, Any]) -> None:
    """Refuse a payload whose checksum fails, that holds NaN or inf, or that lacks the
    checksum its revision requires (a file of an older revision without one loads, with a
    note)."""
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
    if "checksum" in payload:
        return
    revision = payload.get("revision", 1)
    if not isinstance(revision, int) or isinstance(revision, bool) or revision != 1:
        raise CheckpointError(
            f"{path} has lost its checksum (this pyro-vae writes one into every checkpoint, "
            "so the file was edited or damaged): use an earlier copy or train again"
        )
    print(
        f"note: {path} carries no checksum (written before pyro-vae recorded one): its "
        "contents cannot be verified",
        file=sys.stderr,
    )


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
