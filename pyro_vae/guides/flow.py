"""Normalizing-flow guides from Pyro's library of transforms: ``--guide flow --flow planar:8``.

q(z | x) is an amortized diagonal Normal pushed through a stack of transforms, each conditioned
on a context vector h_φ(x) from the same encoder (amortized flows, Rezende & Mohamed 2015's
planar and radial flows; van den Berg et al. 2018's Householder/Sylvester family; Kingma et al.
2016's IAF; Huang et al. 2018's neural autoregressive flows; Durkan et al. 2019's splines)::

    z_0 ~ N(mu_φ(x), diag sigma_φ(x)^2),   h = h_φ(x)
    z   = f_K(. ; h) o ... o f_1(z_0 ; h)
    log q(z | x) = log N(z_0) - sum_k log |det df_k/dz_{k-1}|

No transform is written here: each is Pyro's (``pyro.distributions.transforms.conditional_*``),
and Pyro's ``TransformedDistribution`` computes the density. ``sylvester`` has no conditional
version in Pyro: its parameters are global (learned, not amortized).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyro.distributions as dist
import torch.nn.functional as F
from pyro.distributions import transforms as T
from torch import Tensor, nn
from torch.distributions import Distribution

from ..registry import Options, at_least_one, option
from .base import GUIDES, AmortizedGuide
from .iaf import IAFGuide
from .normal import MIN_SCALE

# flow name -> (its factory from (z_dim, context_dim, hidden width), whether it is conditioned
# on the encoder's context)
FLOWS: dict[str, tuple[Callable[[int, int, int], nn.Module], bool]] = {
    "planar": (lambda z, c, h: T.conditional_planar(z, c, hidden_dims=[h]), True),
    "radial": (lambda z, c, h: T.conditional_radial(z, c, hidden_dims=[h]), True),
    "householder": (lambda z, c, h: T.conditional_householder(z, c, hidden_dims=[h]), True),
    "iaf": (lambda z, c, h: T.conditional_affine_autoregressive(z, c, hidden_dims=[h]), True),
    "naf": (lambda z, c, h: T.conditional_neural_autoregressive(z, c, hidden_dims=[h]), True),
    "spline": (lambda z, c, h: T.conditional_spline(z, c, hidden_dims=[h]), True),
    "sylvester": (lambda z, c, h: T.sylvester(z, count_transforms=2), False),
}
MOST = 64  # transforms in one guide


def parse_flow(spec: str) -> list[tuple[str, int]]:
    """``"planar:8"`` or ``"householder:2,planar:4"`` -> [(name, count), ...] (a name without a
    count counts once), or one ValueError naming the problem and the fix."""
    parts = [p.strip() for p in str(spec).split(",")]
    out = []
    for part in parts:
        m = re.fullmatch(r"([a-z]+)(?::(\d+))?", part)
        if m is None or m.group(1) not in FLOWS:
            raise ValueError(
                f"--flow {spec!r}: each part is TYPE or TYPE:COUNT with TYPE one of "
                f"{', '.join(FLOWS)} (e.g. planar:8 or householder:2,planar:4); got {part!r}"
            )
        count = int(m.group(2) or 1)
        out.append((m.group(1), count))
    total = sum(c for _, c in out)
    if not 1 <= total <= MOST or any(c < 1 for _, c in out):
        raise ValueError(
            f"--flow {spec!r}: from 1 to {MOST} transforms in all, each count >= 1 (e.g. planar:8)"
        )
    return out


@dataclass
class FlowOptions(Options):
    """Options of the flow guide."""

    flow: str = option(
        "planar:8",
        "flow guide: its transforms in order, TYPE:COUNT[,TYPE:COUNT...] with TYPE among "
        f"{', '.join(FLOWS)} (Pyro's; each conditioned on the encoder's context, sylvester "
        "global)",
        group="model",
        metavar="SPEC",
    )
    flow_context: int = option(
        50, "flow guide: size of the context h(x) the transforms are conditioned on", group="model"
    )
    flow_width: int = option(
        100,
        "flow guide: hidden width of the networks mapping h(x) to each transform's parameters",
        group="model",
    )

    def validate(self) -> None:
        parse_flow(self.flow)
        at_least_one(self, "flow_context", "flow_width")


class FlowGuide(AmortizedGuide):
    """q(z | x): a diagonal Normal through ``flow``'s transforms, each conditioned on a context
    from the same encoder (see the module's story). Its density is not a product over
    coordinates, so it has no analytic KL: the mean-field ELBOs refuse it."""

    mean_field = False

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        hidden: Sequence[int] = (500, 500),
        activation: str = "elu",
        flow: str = "planar:8",
        flow_context: int = 50,
        flow_width: int = 100,
        encoder: nn.Module | None = None,
    ) -> None:
        width = self.encoder_width(z_dim, flow_context)
        super().__init__(x_dim, z_dim, hidden, activation, encoder, width)
        self.context_dim = flow_context
        self.spec = parse_flow(flow)
        made = [
            (FLOWS[name][0](z_dim, flow_context, flow_width), FLOWS[name][1])
            for name, count in self.spec
            for _ in range(count)
        ]
        self.transforms = nn.ModuleList(t for t, _ in made)
        self.conditioned = [c for _, c in made]

    @staticmethod
    def encoder_width(z_dim: int, flow_context: int = 50) -> int:
        """Outputs the encoder network must give: loc, raw scale and the flows' context."""
        return 2 * z_dim + flow_context

    def posterior(self, x: Tensor) -> Distribution:
        loc, raw, context = self.encoder(x).split([self.z_dim, self.z_dim, self.context_dim], -1)
        base = dist.Normal(loc, F.softplus(raw) + MIN_SCALE).to_event(1)
        steps = [
            t.condition(context) if c else t
            for t, c in zip(self.transforms, self.conditioned, strict=True)
        ]
        return dist.TransformedDistribution(base, steps)

    # the transforms applied to the base Normal's mean (the flow's mean has no closed form)
    point = IAFGuide.point


GUIDES.register(
    "flow",
    FlowGuide,
    "a diagonal Normal through Pyro's flows (--flow planar:8, radial, householder, iaf, naf, "
    "spline, sylvester)",
    options=FlowOptions,
)
