"""Train the VAE of Kingma & Welling on MNIST and write its output folder.

    pyro-vae run train_mnist --epochs 10 --out runs/mnist

Model: z ~ N(0, I_50), x ~ Bernoulli(f(z)) with an ELU MLP 50-500-500-784; guide
q(z|x) = N(mu(x), diag sigma(x)^2) with 784-500-500-100; Trace_ELBO, Adam 1e-3, batch 128,
dynamic binarization. Prints the test ELBO and the importance-sampled log p(x) (k=5000).
"""

from __future__ import annotations

from collections.abc import Sequence

from pyro_vae import experiment


def main(argv: Sequence[str] | None = None) -> dict:
    p = experiment.parser(__name__, __doc__, ll_samples=5000)
    args = experiment.parse(p, argv, z_dim=8, ll_samples=16)
    out = experiment.output_folder(args, "mnist")
    experiment.train_variant(args, out)
    result = experiment.evaluation(out) or {}
    experiment.done(out, [out / "evaluation.json"])
    return result


if __name__ == "__main__":
    main()
