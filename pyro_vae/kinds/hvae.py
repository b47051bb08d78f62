"""``--model hvae``: a VAE with two stochastic layers, bottom-up or ladder inference."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pyro.infer import Predictive
from torch import Tensor, nn

from .. import evaluate, plots
from ..evaluate import Data
from ..guides import BottomUpGuide, LadderGuide
from ..models import HierarchicalModel
from ..priors import temper
from ..registry import Options, Registry, at_least_one, option
from .base import ModelKind, RunView, _columns, _local, draw, refuse_labels, register, site

HIERARCHICAL_GUIDES: Registry = Registry("guide of the hierarchical VAE")
HIERARCHICAL_GUIDES.register(
    "bottom-up", BottomUpGuide, "q(z1|x) q(z2|z1), Burda et al. 2015 (default)"
)
HIERARCHICAL_GUIDES.register(
    "ladder", LadderGuide, "top-down q(z2|x) q(z1|z2,x), precision-weighted (Sønderby et al. 2016)"
)


@dataclass
class HierarchicalOptions(Options):
    """Options of the two-layer hierarchical VAE."""

    z1_dim: int = option(100, "hvae: size of the lower latent layer z1", group="model")
    top_hidden: tuple[int, ...] = option(
        (100, 100), "hvae: widths of the z1 <-> z2 networks", group="model"
    )

    def validate(self) -> None:
        self.top_hidden = tuple(int(h) for h in self.top_hidden)
        at_least_one(self, "z1_dim")
        if any(h < 1 for h in self.top_hidden):
            raise ValueError(f"top_hidden widths must be at least 1; got {self.top_hidden}")


@register
class HierarchicalVAE(ModelKind):
    """z2 ~ p(z2), z1 ~ p(z1 | z2), x ~ p(x | z1) (:class:`~pyro_vae.models.HierarchicalModel`)
    with a bottom-up or a ladder guide. ``z_dim`` is the top layer's size (the prior's),
    ``z1_dim`` the lower one's; ``hidden`` sizes the x <-> z1 networks and ``top_hidden`` the
    z1 <-> z2 ones (Burda et al.: ``--hidden 200 200 --z1-dim 100 --top-hidden 100 100
    --z-dim 50``)."""

    name = "hvae"
    options = HierarchicalOptions
    help = "two stochastic layers: z2 ~ p(z2), z1 ~ p(z1|z2), x ~ p(x|z1); --guide bottom-up|ladder"
    guides = HIERARCHICAL_GUIDES
    default_guide = "bottom-up"

    def check(self, config: Any) -> None:
        super().check(config)
        self.require_mlp(config)

    def build(self, config: Any) -> tuple[nn.Module, nn.Module]:
        model = HierarchicalModel(
            config.x_dim,
            config.z1_dim,
            config.z_dim,
            config.hidden,
            config.top_hidden,
            prior=self.prior(config, config.z_dim, None),
            likelihood=self.likelihood(config),
            activation=config.activation,
        )
        sizes = (config.z1_dim, config.z_dim, config.hidden, config.top_hidden, config.activation)
        if config.guide == "ladder":
            guide = LadderGuide(config.x_dim, model.top_down, *sizes)
        else:
            guide = self.guides.choose(config.guide)(config.x_dim, *sizes)
        return model, guide

    @torch.no_grad()
    def encode(self, run: RunView, test: Data) -> dict[str, Tensor]:
        """Both layers' point summaries (see the guides' ``point``)."""
        with _local(run):
            parts = [run.guide.point(xb) for xb, *_ in evaluate.chunks(test, 1000)]
        return {site: torch.cat([p[site] for p in parts]) for site in ("z1", "z2")}

    def samples(self, run: RunView, path: Path, n: int = 100, seed: int = 0) -> list[Path]:
        """E[x | z1] for ``n`` draws z2 ~ p(z2), z1 ~ p(z1 | z2)."""
        torch.manual_seed(seed)
        try:
            with _local(run), torch.no_grad():
                z1 = Predictive(run.model, num_samples=1, return_sites=["z1"])(batch_size=n)
                mean = run.model.decode(z1["z1"][0]).mean
        except NotImplementedError:
            return []
        title = "E[x|z1], z1 ~ p(z1|z2), z2 ~ p(z2)"
        return [plots.save_grid(path, mean, run.data.image_shape, _columns(n), title)]

    reconstruction_title = "test data (top) and reconstructions E[x|z1] at the guide's point"

    @torch.no_grad()
    def reconstruct(self, run: RunView, x: Tensor) -> Tensor:
        return run.model.decode(run.guide.point(x)["z1"]).mean

    def figures(self, run: RunView, out: Path) -> list[Path]:
        """Reconstructions, prior samples, and what each layer controls."""
        return super().figures(run, out) + self.layer_figures(run, out)

    @torch.no_grad()
    def layer_figures(self, run: RunView, out: Path, rows: int = 8, cols: int = 10) -> list[Path]:
        """Two grids of E[x | z1] with z1 = mu(z2) + sigma(z2) * eps: rows keep z2 and columns
        draw new eps (what z1 adds under a fixed z2), and rows keep eps while columns draw new
        z2 (what the top layer changes)."""
        model, shape = run.model, run.data.image_shape
        gen = torch.Generator().manual_seed(0)
        device = next(model.parameters()).device

        def grid(z2: Tensor, eps: Tensor) -> Tensor:  # z2 (r, z2_dim), eps (c, z1_dim) per cell
            loc, scale = model.top_down.params(z2)
            return model.decode(loc + scale * eps).mean

        with _local(run):
            prior = model.prior()
            try:
                z2 = prior.sample((rows,)).to(device)
                z2_cols = prior.sample((cols,)).to(device)
            except NotImplementedError:
                return []
            eps = torch.randn(cols, model.z1_dim, generator=gen).to(device)
            eps_rows = torch.randn(rows, model.z1_dim, generator=gen).to(device)
            z1_varies = grid(z2.repeat_interleave(cols, 0), eps.repeat(rows, 1))
            z2_varies = grid(z2_cols.repeat(rows, 1), eps_rows.repeat_interleave(cols, 0))
        return [
            plots.save_grid(
                out / "layers_z1_varies.png",
                z1_varies,
                shape,
                ncol=cols,
                title="rows: one z2 ~ p(z2) each; columns: z1 = mu(z2) + sigma(z2) eps, "
                "one eps each",
            ),
            plots.save_grid(
                out / "layers_z2_varies.png",
                z2_varies,
                shape,
                ncol=cols,
                title="rows: one eps (z1's noise) each; columns: one z2 ~ p(z2) each",
            ),
        ]

    code_site = "z1"

    @torch.no_grad()
    def decode(
        self, run: RunView, codes: dict[str, Tensor], labels: Tensor | None = None
    ) -> Tensor:
        """E[x | z1]; codes of the top layer alone are decoded through z1 = mean of
        p(z1 | z2)."""
        refuse_labels(self.name, labels)
        with _local(run):
            if "z1" not in codes:
                codes = {"z1": run.model.top_down(site(codes, "z2")).mean}
            return torch.cat([run.model.decode(zb).mean for zb in codes["z1"].split(1000)])

    @torch.no_grad()
    def sample(
        self, run: RunView, n: int, temperature: float = 1.0, labels: Tensor | None = None
    ) -> dict[str, Tensor]:
        """z2 ~ p(z2), z1 ~ p(z1 | z2), both scales times ``temperature``, and E[x | z1]."""
        refuse_labels(self.name, labels)
        with _local(run):
            z2 = draw(temper(run.model.prior(), temperature), n)
            z1 = temper(run.model.top_down(z2), temperature).sample()
            return {"z2": z2, "z1": z1, "mean": self.decode(run, {"z1": z1})}
