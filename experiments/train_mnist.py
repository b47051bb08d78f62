"""Train the VAE of Kingma & Welling on MNIST and write its output folder.

    python -m experiments.train_mnist --epochs 10 --out runs/mnist

Model: z ~ N(0, I_50), x ~ Bernoulli(f(z)) with an ELU MLP 50-500-500-784; guide
q(z|x) = N(mu(x), diag sigma(x)^2) with 784-500-500-100; Trace_ELBO, Adam 1e-3, batch 128,
dynamic binarization. Prints the test ELBO and the importance-sampled log p(x) (k=5000).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from pyro_vae.cli import add_train_arguments, train_from_args

SMOKE = {
    "train_size": 512,
    "test_size": 128,
    "epochs": 1,
    "hidden": [64],
    "z_dim": 8,
    "ll_samples": 16,
    "no_progress": True,
}


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_train_arguments(parser, dataset="mnist", epochs=10)
    parser.add_argument("--smoke", action="store_true", help="tiny data and network, seconds")
    args = parser.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
    return train_from_args(args)


if __name__ == "__main__":
    main()
