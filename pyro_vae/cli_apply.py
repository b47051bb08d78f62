"""Commands that apply a trained run to data: ``pyro-vae encode | decode | reconstruct |
interpolate | sample | export``.

Images given with ``--input`` (``folder:PATH``, ``array:PATH``, image files, or the run's own
``train`` / ``test`` split) are prepared exactly as the run's data were (crop and resize,
channels, binarization); codes travel as the ``.npz`` that ``encode`` writes.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from torch import Tensor
from torch.distributions import Independent, Normal

from . import data, evaluate, latent, plots, samplers
from . import run as runs
from .checkpoint import write_atomically
from .options import Count
from .runtime import inference

SPLITS = ("train", "test")
FORMATS = ("png", "npy", "both")


def load_inputs(run: runs.Run, specs: Sequence[str], limit: int | None = None) -> data.Inputs:
    """The images ``--input`` names, as stored (uint8 or the run's own split), with labels
    and names; ``limit``: the first N only."""
    if list(specs) in ([s] for s in SPLITS):
        split = specs[0]
        if run.test_data is None:
            raise ValueError(
                f"--input {split} needs the run's data, which were not found: pass --dataset or "
                "--data-dir to say where they are"
            )
        x = run.data.train if split == "train" else run.data.test
        labels = run.data.train_labels if split == "train" else run.data.test_labels
        n = len(x) if limit is None else min(limit, len(x))
        names = tuple(f"{split}[{i}]" for i in range(n))
        return data.Inputs(x[:n], None if labels is None else labels[:n], names)
    if any(s in SPLITS for s in specs):
        raise ValueError("--input train or test names the run's own split alone: give it alone")
    given = data.read_inputs(specs, run.data.image_shape, run.train_config.image_size)
    if limit is not None:
        given = data.Inputs(
            given.images[:limit],
            None if given.labels is None else given.labels[:limit],
            given.names[:limit],
        )
    return given


def _label_arg(run: runs.Run, label: int | None, inputs: data.Inputs | None) -> Tensor | None:
    if label is not None:
        k = run.model_config.num_classes
        if not 0 <= label < max(k, 1):
            raise ValueError(f"--label must lie in 0..{k - 1} (the run's classes); got {label}")
        n = 1 if inputs is None else len(inputs.images)
        return torch.full((n,), label, dtype=torch.long)
    return None if inputs is None else inputs.labels


def _labels_for(run: runs.Run, labels: Tensor | None) -> Tensor | None:
    """Labels only where the kind reads them (a folder's class names mean nothing to a VAE)."""
    return labels if run.kind.needs_labels else None


def cmd_encode(args: argparse.Namespace, load: Callable[..., runs.Run]) -> None:
    if args.out:
        check_output(Path(args.out), "--out")
    run = load(args, dataset=None if args.input else True)
    specs = args.input or ["test"]
    inputs = load_inputs(run, specs, args.test_size)
    labels = _labels_for(run, inputs.labels)
    view = run.kind.data_view(run, run.prepare(inputs.images), labels)
    codes = run.kind.encode(run, view)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / "codes.npz"
    arrays = {site: z.cpu().numpy() for site, z in codes.items()}
    arrays |= {k: v.cpu().numpy() for k, v in normal_posterior(run, view).items()}
    arrays["names"] = np.array(inputs.names)
    if inputs.labels is not None:
        arrays["labels"] = inputs.labels.cpu().numpy()
    _save_npz(out, arrays)
    sizes = ", ".join(f"{k} {tuple(a.shape)}" for k, a in arrays.items())
    print(f"{out}: {sizes} (the guide's point summary of each datum)")


@torch.no_grad()
def normal_posterior(run: runs.Run, view: evaluate.Data) -> dict[str, Tensor]:
    """``{site}_loc`` and ``{site}_scale`` of every latent site whose q is a mean-field Normal
    given the data alone (none where the guide also draws a discrete latent, as M2's)."""
    parts: dict[str, list[Tensor]] = {}
    with inference(run.model, run.guide):
        for args in evaluate.chunks(view, 1000):
            trace = poutine.trace(run.guide).get_trace(*args)
            sites = [
                s
                for s in trace.nodes.values()
                if s["type"] == "sample" and not site_is_subsample(s) and not s["is_observed"]
            ]
            if any(not s["fn"].has_rsample for s in sites):
                return {}
            for s in sites:
                fn = s["fn"].base_dist if isinstance(s["fn"], Independent) else s["fn"]
                if isinstance(fn, Normal):
                    parts.setdefault(f"{s['name']}_loc", []).append(fn.loc.expand(fn.batch_shape))
                    parts.setdefault(f"{s['name']}_scale", []).append(
                        fn.scale.expand(fn.batch_shape)
                    )
    return {k: torch.cat(v) for k, v in parts.items()}


def read_codes(path: str) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Codes from an ``.npz`` written by ``encode`` (every latent site in it, and its labels)
    or from an ``.npy`` of codes (n, dim)."""
    file = Path(path).expanduser()
    if file.is_file():
        with open(file, "rb") as f:
            head = f.read(6)
        if head[:4] != b"PK\x03\x04" and head != b"\x93NUMPY":
            raise ValueError(
                f"{file} is not a .npz or .npy file: give the .npz that pyro-vae encode wrote, "
                "or a .npy of codes (n, dim)"
            )
    try:
        loaded = np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError, KeyError, IndexError) as e:
        why = "it holds Python objects (pickled)" if "pickle" in str(e) else str(e) or repr(e)
        raise ValueError(
            f"{file} could not be read as .npz/.npy codes ({why}): give the .npz that "
            "pyro-vae encode wrote, or a .npy of codes (n, dim)"
        ) from None
    if isinstance(loaded, np.ndarray):
        return {"": loaded}, None
    with loaded:
        arrays = {k: loaded[k] for k in loaded.files}
    labels = arrays.pop("labels", None)
    for key in ("names", "z_loc", "z_scale"):
        arrays.pop(key, None)
    if not arrays:
        raise ValueError(f"{file} holds no codes: give the .npz that pyro-vae encode wrote")
    return arrays, labels


def _codes(run: runs.Run, arrays: dict[str, np.ndarray]) -> Tensor | dict[str, Tensor]:
    if set(arrays) == {""}:
        return torch.as_tensor(arrays[""], dtype=torch.float32)
    return {k: torch.as_tensor(v, dtype=torch.float32) for k, v in arrays.items()}


def write_images(
    out: Path, name: str, images: Tensor, run: runs.Run, fmt: str, each: bool, title: str
) -> list[Path]:
    """``name.png`` (a grid), ``name.npy`` (the images, float) and with ``each`` one PNG per
    image in ``out/name/``."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    flat = images.reshape(len(images), -1).cpu()
    shape = run.data.image_shape
    if fmt in ("npy", "both"):
        array = images.cpu().numpy()
        written.append(write_atomically(out / f"{name}.npy", lambda f: np.save(f, array)))
    if fmt in ("png", "both"):
        ncol = max(1, min(10, len(flat)))
        written.append(plots.save_grid(out / f"{name}.png", flat, shape, ncol, title))
        if each:
            folder = out / name
            folder.mkdir(exist_ok=True)
            for i, image in enumerate(flat):
                written.append(plots.save_image(folder / f"{i:05d}.png", image, shape))
    return written


def cmd_decode(args: argparse.Namespace, load: Callable[..., runs.Run]) -> None:
    if args.out:
        check_output(Path(args.out), "--out", folder=True)
    arrays, labels = read_codes(args.codes)
    run = load(args, dataset=False)
    given = _label_arg(run, args.label, None)
    if given is not None:
        labels = given.expand(len(next(iter(arrays.values())))).numpy()
    labels = None if labels is None else torch.as_tensor(labels)
    images = run.decode(_codes(run, arrays), _labels_for(run, labels))
    out = Path(args.out) if args.out else Path(args.codes).with_suffix("")
    for path in write_images(out, "decoded", images, run, args.format, args.each, "E[x|z]"):
        print(path)


def cmd_reconstruct(args: argparse.Namespace, load: Callable[..., runs.Run]) -> None:
    if args.out:
        check_output(Path(args.out), "--out", folder=True)
    run = load(args, dataset=None)
    inputs = load_inputs(run, args.input, args.n)
    labels = _labels_for(run, _label_arg(run, args.label, inputs))
    recon = run.reconstruct(inputs.images, labels)
    shown = data.as_input(run.prepare(inputs.images))  # the inputs as the model read them
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / "reconstructions"
    written = write_images(out, "reconstructions", recon, run, args.format, args.each, "")
    if args.format in ("png", "both"):
        title = "inputs (above) and reconstructions E[x|z] at the guide's point summary"
        grid = _pairs(shown.cpu(), recon.reshape(len(recon), -1).cpu())
        path = out / "inputs_and_reconstructions.png"
        written.append(plots.save_grid(path, grid, run.data.image_shape, 10, title))
    for path in written:
        print(path)


def _pairs(x: Tensor, recon: Tensor, rows: int = 5, ncol: int = 10) -> Tensor:
    """Up to ``rows`` rows of ``ncol`` inputs, each above its reconstructions (blank cells
    pad a short last row)."""
    out = []
    for i in range(0, min(len(x), rows * ncol), ncol):
        for part in (x[i : i + ncol], recon[i : i + ncol].clamp(0, 1)):
            pad = torch.ones(ncol - len(part), part.shape[1])
            out.append(torch.cat([part.float(), pad]))
    return torch.cat(out)


def _endpoint(run: runs.Run, spec: str, label: int | None) -> Tensor | dict[str, Tensor]:
    """The codes of one end of an interpolation: an image file, or ``FILE.npz:ROW`` /
    ``FILE.npy:ROW`` (a row of codes)."""
    file, colon, row = spec.rpartition(":")
    if colon and Path(file).suffix in (".npz", ".npy"):
        if not row.isdigit():
            raise ValueError(
                f"{spec}: the row after {file}: must be a whole number >= 0 (0 is the first)"
            )
        arrays, _ = read_codes(file)
        i = int(row)
        n = len(next(iter(arrays.values())))
        if i >= n:
            raise ValueError(f"{file} holds {n} rows of codes: row {i} is not among them")
        codes = _codes(run, {k: v[i : i + 1] for k, v in arrays.items()})
        return codes
    inputs = data.read_inputs([spec], run.data.image_shape, run.train_config.image_size)
    return run.encode(inputs.images[:1], _labels_for(run, _label_arg(run, label, inputs)))


def cmd_interpolate(args: argparse.Namespace, load: Callable[..., runs.Run]) -> None:
    if args.out:
        check_output(Path(args.out), "--out", folder=True)
    run = load(args, dataset=False)
    a, b = (_endpoint(run, spec, args.label) for spec in (args.a, args.b))
    path_fn = latent.slerp if args.path == "spherical" else latent.lerp
    if isinstance(a, dict) != isinstance(b, dict):
        raise ValueError("give both ends as images, or both as rows of codes of one kind")
    if isinstance(a, dict):
        codes = {k: path_fn(a[k][0], b[k][0], args.steps) for k in a if k in b and k != "y_probs"}
    else:
        codes = path_fn(a[0], b[0], args.steps)
    labels = _label_arg(run, args.label, None)
    labels = None if labels is None else labels.expand(args.steps)
    images = run.decode(codes, labels)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / "interpolation"
    title = f"E[x|z] along a {args.path} path in z"
    for path in write_images(out, "interpolation", images, run, args.format, args.each, title):
        print(path)


def cmd_sample(args: argparse.Namespace, load: Callable[..., runs.Run]) -> None:
    if args.out:
        out = Path(args.out)
        check_output(out, "--out", folder=out.suffix not in (".png", ".npy"))
    source, _ = samplers.parse(args.sampler)
    if source != "prior" and (args.temperature != 1 or args.label is not None):
        raise ValueError(
            f"--sampler {args.sampler} draws codes from a density fitted to the training codes: "
            "leave out --temperature and --label (they scale or condition the prior)"
        )
    run = load(args, dataset=source != "prior")
    labels = _label_arg(run, args.label, None)
    if source == "prior":
        images = run.sample(args.n, temperature=args.temperature, labels=labels, seed=args.seed)
    else:
        if run.kind.needs_labels:
            raise ValueError(
                f"--sampler {args.sampler}: --model {run.kind.name} decodes codes with labels; "
                "ex-post samplers are for unlabelled kinds (vae, hvae's top layer in Python)"
            )
        sampler = samplers.fitted(args.sampler, run.encode(run.data.train), seed=args.seed)
        gen = torch.Generator().manual_seed(args.seed)
        images = run.decode(sampler.sample(args.n, generator=gen))
    default = f"samples-n{args.n}-seed{args.seed}"
    if source != "prior":
        default += f"-{args.sampler.replace(':', '')}"
    if args.temperature != 1:
        default += f"-t{args.temperature:g}"
    if args.label is not None:
        default += f"-label{args.label}"
    if args.out:
        out = Path(args.out)
        folder, name = (out.parent, out.stem) if out.suffix in (".png", ".npy") else (out, default)
    else:
        folder, name = Path(args.checkpoint).parent, default
    title = "E[x|z], z ~ p(z)" + (
        f" at temperature {args.temperature:g}" if args.temperature != 1 else ""
    )
    if source != "prior":
        title = f"E[x|z], z ~ {args.sampler} fitted to the training codes"
    for path in write_images(folder, name, images, run, args.format, args.each, title):
        print(path)


def cmd_export(args: argparse.Namespace, load: Callable[..., runs.Run]) -> None:
    from .export import export

    if args.out:
        check_output(Path(args.out), "--out", folder=True)
    run = load(args, dataset=False)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / "export"
    for path in export(run, out, args.format):
        print(path)


def check_output(path: Path, flag: str, folder: bool = False) -> None:
    """Refuse, before any work, an output that cannot be written: a folder where a file is
    meant (or a file where a folder is), or a path below a file or an unwritable folder.
    Missing folders are made when the output is written."""
    if folder and path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path} is a file: give a folder")
    if not folder and path.is_dir():
        raise ValueError(f"{flag} {path} is a folder: give a file name in it")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{flag} {path}: {parent} is a file, not a folder: give another path")
    if not os.access(parent, os.W_OK | os.X_OK) and not path.exists():
        raise ValueError(f"{flag} {path}: {parent} is not writable: give another path")


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda f: np.savez(f, **arrays))


def add_commands(
    with_checkpoint: Callable[[str, str], argparse.ArgumentParser],
    where_data: Callable[[argparse.ArgumentParser], None],
    load: Callable[..., runs.Run],
) -> None:
    """Add the commands to the CLI (``with_checkpoint(name, help)`` makes a subcommand taking
    a checkpoint and --device; ``load(args, dataset=...)`` restores the run)."""

    def images_out(s: argparse.ArgumentParser, default: str = "png") -> None:
        s.add_argument("--format", choices=FORMATS, default=default, help="PNG grid, .npy, or both")
        s.add_argument("--each", action="store_true", help="also one PNG per image")

    def label(s: argparse.ArgumentParser) -> None:
        s.add_argument(
            "--label", type=int, default=None, help="cvae, m2: the class to generate (0..K-1)"
        )

    def bind(fn: Callable[[argparse.Namespace, Callable[..., runs.Run]], None]) -> Callable:
        return lambda args: fn(args, load)

    c = with_checkpoint(
        "encode", "write the guide's point summary of images (--input) or the test data (.npz)"
    )
    c.add_argument(
        "--input",
        nargs="+",
        default=None,
        metavar="SPEC",
        help="folder:PATH, array:PATH, image files, or the run's train / test split (default: "
        "test)",
    )
    c.add_argument("--test-size", action=Count, default=None, help="the first N data only")
    where_data(c)
    c.add_argument(
        "--out", default=None, help=".npz path (default: codes.npz beside the checkpoint)"
    )
    c.set_defaults(func=bind(cmd_encode))

    d = with_checkpoint("decode", "decode codes (.npz from encode, or .npy) into images")
    d.add_argument("--codes", required=True, help=".npz written by pyro-vae encode, or a .npy")
    d.add_argument("--out", default=None, help="folder (default: beside the codes file)")
    label(d)
    images_out(d, default="both")
    d.set_defaults(func=bind(cmd_decode))

    r = with_checkpoint("reconstruct", "reconstruct images: E[x|z] at the guide's point summary")
    r.add_argument("--input", nargs="+", required=True, metavar="SPEC", help="as for encode")
    r.add_argument("--n", action=Count, default=None, help="the first N images only")
    r.add_argument("--out", default=None, help="folder (default: reconstructions/ beside the run)")
    where_data(r)
    label(r)
    images_out(r)
    r.set_defaults(func=bind(cmd_reconstruct))

    i = with_checkpoint("interpolate", "decode a path between two images or two rows of codes")
    i.add_argument("a", help="an image file, or FILE.npz:ROW / FILE.npy:ROW")
    i.add_argument("b", help="the other end, as A")
    i.add_argument("--steps", action=Count, most=1000, default=10, help="images along the path")
    i.add_argument("--path", choices=("linear", "spherical"), default="linear")
    i.add_argument("--out", default=None, help="folder (default: interpolation/ beside the run)")
    label(i)
    images_out(i)
    i.set_defaults(func=bind(cmd_interpolate))

    s = with_checkpoint("sample", "decode draws from the prior into a PNG grid (and/or .npy)")
    s.add_argument("--n", action=Count, default=100, help="how many draws")
    s.add_argument("--seed", action=Count, least=0, default=0, help="random seed of the draws")
    s.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="scale of the prior's spread for the draws (below 1: more typical samples)",
    )
    s.add_argument(
        "--sampler",
        default="prior",
        metavar="SPEC",
        help="where the codes come from: prior (z ~ p(z)), or a density fitted to the codes of "
        f"the training data (at most {samplers.MAX_CODES:,}): "
        + ", ".join(f"{n}:K ({samplers.SAMPLERS.help(n)})" for n in samplers.SAMPLERS),
    )
    s.add_argument(
        "--out", default=None, help="file or folder (default: samples-nN-seedS beside the run)"
    )
    label(s)
    images_out(s)
    s.set_defaults(func=bind(cmd_sample))

    e = with_checkpoint("export", "encoder and decoder as TorchScript (or ONNX) files")
    e.add_argument("--format", choices=("torchscript", "onnx"), default="torchscript")
    e.add_argument("--out", default=None, help="folder (default: export/ beside the checkpoint)")
    e.set_defaults(func=bind(cmd_export))
