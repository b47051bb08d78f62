"""Sample-quality statistics of image sets in a feature space, and a sharpness figure.

- Fréchet distance (Heusel et al. 2017) between Gaussians fitted to two feature sets,
  ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)``; with Inception features and
  pytorch-fid's weights this is FID, with any other features it is named after them.
- Precision and recall (Kynkäänniemi et al. 2019): each set's manifold is the union of balls
  around its points, each ball reaching the point's k-th nearest neighbour in its own set;
  precision is the share of generated points inside the real manifold, recall the share of real
  points inside the generated one.
- Sharpness: the variance of the Laplacian of each image's luminance, averaged over images
  (high for sharp edges, low for blur); reported as the ratio of generated to real images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# rows of one distance block (rows x n distances held at once)
BLOCK = 1024


def gaussian_stats(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and covariance (unbiased) of ``features`` (n, d), in float64."""
    f = features.detach().double().reshape(features.shape[0], -1)
    if f.shape[0] < 2:
        raise ValueError(f"a covariance needs at least 2 feature vectors; got {f.shape[0]}")
    return f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])


def _sqrt_psd(a: Tensor) -> Tensor:
    """The symmetric square root of a symmetric positive semi-definite matrix."""
    values, vectors = torch.linalg.eigh((a + a.T) / 2)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def frechet_distance(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor) -> float:
    """The Fréchet (2-Wasserstein) distance squared between N(mu1, cov1) and N(mu2, cov2).

    tr((S1 S2)^1/2) is computed as tr((S1^1/2 S2 S1^1/2)^1/2), whose matrix is symmetric, so
    an eigendecomposition gives it without the complex square roots of a general sqrtm."""
    mu1, mu2, cov1, cov2 = (t.double() for t in (mu1, mu2, cov1, cov2))
    root1 = _sqrt_psd(cov1)
    cross = torch.linalg.eigvalsh(root1 @ cov2 @ root1).clamp_min(0).sqrt().sum()
    value = (mu1 - mu2).square().sum() + cov1.trace() + cov2.trace() - 2 * cross
    return max(float(value), 0.0)


def feature_distance(real: Tensor, fake: Tensor) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets (n, d)."""
    return frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))


def kth_neighbour_radii(points: Tensor, k: int) -> Tensor:
    """Each point's distance to its k-th nearest other point of the same set."""
    n = points.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must be from 1 to {n - 1} (the set holds {n} points); got {k}")
    radii = []
    for block in points.split(BLOCK):
        d = torch.cdist(block, points)
        # the k+1 smallest: the point itself (distance 0) comes first
        radii.append(d.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(radii)


def coverage(points: Tensor, centres: Tensor, radii: Tensor) -> float:
    """The share of ``points`` inside at least one ball (``centres``, ``radii``)."""
    inside = []
    for block in points.split(BLOCK):
        inside.append((torch.cdist(block, centres) <= radii[None, :]).any(1))
    return torch.cat(inside).float().mean().item()


def precision_recall(real: Tensor, fake: Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of ``fake`` against ``real``
    feature sets (n, d), with k-th nearest-neighbour balls (the paper's k = 3)."""
    real, fake = real.detach().float().flatten(1), fake.detach().float().flatten(1)
    precision = coverage(fake, real, kth_neighbour_radii(real, k))
    recall = coverage(real, fake, kth_neighbour_radii(fake, k))
    return precision, recall


LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as PIL's "L" conversion


def sharpness(images: Tensor) -> float:
    """Mean over images (n, C, H, W) in [0, 1] of the variance of the Laplacian of their
    luminance (the valid part: no padding at the borders)."""
    if images.dim() != 4:
        raise ValueError(f"images must be (n, C, H, W); got shape {tuple(images.shape)}")
    x = images.detach().float()
    if x.shape[1] == 3:
        x = sum(w * x[:, i : i + 1] for i, w in enumerate(LUMA))
    elif x.shape[1] != 1:
        x = x.mean(1, keepdim=True)
    kernel = LAPLACIAN.to(x)[None, None]
    response = F.conv2d(x, kernel)
    return response.flatten(1).var(1).mean().item()
