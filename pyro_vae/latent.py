"""Working in latent space: encodings, grids over the prior's percentiles, paths between codes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pyro import poutine
from torch import Tensor, nn
from torch.distributions import Independent, Normal

from .inputs import as_input
from .runtime import inference


@torch.no_grad()
def encode(guide: nn.Module, x: Tensor, batch_size: int = 1000) -> Tensor:
    """The guide's point summary of z for each datum of ``x`` (stored images or model
    inputs): ``guide.point(x)``, the posterior mean E_q[z | x] for the Normal guides (each
    guide documents its own); a draw z ~ q(z | x) for a guide without ``point``."""
    point = getattr(guide, "point", None)
    out = []
    with inference(guide):
        for xb in x.split(batch_size):
            xb = as_input(xb)
            if point is not None:
                out.append(point(xb))
            else:
                out.append(poutine.trace(guide).get_trace(xb).nodes["z"]["value"])
    return torch.cat(out)


@torch.no_grad()
def posterior(guide: nn.Module, x: Tensor, batch_size: int = 1000) -> tuple[Tensor, Tensor]:
    """loc and scale (n, D) of the guide's mean-field Normal posterior q(z | x) for each datum
    of ``x``; a guide whose z is not a factorised Normal is refused."""
    locs, scales = [], []
    with inference(guide):
        for xb in x.split(batch_size):
            fn = poutine.trace(guide).get_trace(as_input(xb)).nodes["z"]["fn"]
            base = fn.base_dist if isinstance(fn, Independent) else fn
            if not isinstance(base, Normal):
                raise ValueError(
                    f"this needs a mean-field Normal q(z|x); the guide's z is "
                    f"{type(base).__name__}: use --guide normal"
                )
            locs.append(base.loc.expand(base.batch_shape))
            scales.append(base.scale.expand(base.batch_shape))
    return torch.cat(locs), torch.cat(scales)


@torch.no_grad()
def decode(model: nn.Module, z: Tensor, batch_size: int = 1000) -> Tensor:
    """Decoded images E[x | z] for a batch of codes."""
    with inference(model):
        return torch.cat([model.decode(zb).mean for zb in z.split(batch_size)])


def prior_percentiles(model: nn.Module, u: Tensor, dim: int) -> Tensor:
    """The prior's marginal quantiles of coordinate ``dim`` at levels ``u`` (for a factorised
    Normal prior; the standard Normal's otherwise)."""
    with torch.no_grad():
        prior = model.prior()
    base = prior.base_dist if isinstance(prior, Independent) else prior
    if isinstance(base, Normal) and base.loc.dim() == 1:
        return Normal(base.loc[dim], base.scale[dim]).icdf(u.to(base.loc.device))
    return Normal(0.0, 1.0).icdf(u)


def percentile_grid(
    model: nn.Module,
    n: int,
    dims: tuple[int, int] = (0, 1),
    base: Tensor | None = None,
    levels: tuple[float, float] = (0.05, 0.95),
) -> tuple[Tensor, Tensor, Tensor]:
    """Codes on an ``n x n`` grid of evenly spaced percentiles of the prior along ``dims``
    (points of the unit square through the inverse CDF), other coordinates from ``base``
    (default 0). Returns codes (n*n, z_dim) row by row, top row first, and the latent values
    along the columns (``dims[0]``, increasing) and rows (``dims[1]``, decreasing)."""
    check_dims(dims, model.z_dim)
    u = torch.linspace(*levels, n)
    cols = prior_percentiles(model, u, dims[0]).cpu()
    rows = prior_percentiles(model, u, dims[1]).cpu().flip(0)
    device = next(model.parameters()).device
    z = torch.zeros(n, n, model.z_dim) if base is None else base.cpu().repeat(n, n, 1)
    z[:, :, dims[0]] = cols[None, :]
    z[:, :, dims[1]] = rows[:, None]
    return z.reshape(n * n, model.z_dim).to(device), cols, rows


def check_dims(dims: Sequence[int], z_dim: int) -> None:
    """Refuse latent coordinates ``dims`` that are not two different ones of ``0..z_dim-1``."""
    if len(set(dims)) != len(dims) or not all(0 <= d < z_dim for d in dims):
        raise ValueError(
            f"--dims {' '.join(map(str, dims))}: give two different latent coordinates among "
            f"0..{z_dim - 1} (z_dim is {z_dim})"
        )


def lerp(a: Tensor, b: Tensor, steps: int) -> Tensor:
    """Linear path from a to b: (steps, z_dim)."""
    t = torch.linspace(0, 1, steps, device=a.device)[:, None]
    return (1 - t) * a + t * b


def slerp(a: Tensor, b: Tensor, steps: int) -> Tensor:
    """Spherical path from a to b (White 2016): keeps the norm typical of a Gaussian prior
    instead of passing near the origin; linear where a and b are (anti)parallel."""
    t = torch.linspace(0, 1, steps, device=a.device)[:, None]
    cos = (a @ b / (a.norm() * b.norm())).clamp(-1, 1)
    omega = torch.arccos(cos)
    if omega.abs() < 1e-4 or (torch.pi - omega).abs() < 1e-4:
        return lerp(a, b, steps)
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


def pairs_by_label(labels: Tensor, same: bool, n: int, seed: int = 0) -> list[tuple[int, int]]:
    """``n`` index pairs of data with the same (or different) labels, chosen by ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    labels = labels.cpu()
    out: list[tuple[int, int]] = []
    while len(out) < n:
        i, j = torch.randint(len(labels), (2,), generator=gen).tolist()
        if i != j and bool(labels[i] == labels[j]) == same:
            out.append((i, j))
    return out
