"""Every script in experiments/ runs with --smoke (as Pyro's tests/test_examples.py does).

Adding a script without listing it here fails ``test_every_experiment_is_listed``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO, SHARED_DATA

EXPERIMENTS = {
    # name: files it must write besides the run folder's own
    "train_mnist": ["evaluation.json"],
    "reconstructions": ["reconstructions.png", "reconstructions.json"],
    "latent_2d": ["latent_2d.png", "latent_2d.json"],
    "manifold": ["manifold.png", "manifold.json"],
    "training_gif": ["latent_training.gif", "manifold_training.gif", "training_gif.json"],
    "samples": ["prior_predictive.png", "posterior_predictive.png", "samples.json"],
    "interpolation": ["interpolation_same.png", "interpolation_different.png"],
    "learning_curves": ["learning_curves.png", "learning_curves.json"],
    "autoencoder_vs_vae": ["autoencoder_vs_vae_z2.png", "autoencoder_vs_vae_z10.png"],
    "classical_baselines": ["classical_baselines.png", "classical_baselines.json"],
    "attribute_vectors": [
        "attribute_thickness.png",
        "attribute_slant.png",
        "attribute_class_4_9.png",
        "attribute_vectors.json",
    ],
    "frey_faces": ["frey_reconstructions.png", "frey_manifold.png", "frey_faces.json"],
    "beta_vae": ["beta_vae_traversal_beta1.png", "beta_vae_traversal_beta4.png", "beta_vae.json"],
    "conditional_vae": ["class_conditional.png", "style_transfer.png", "conditional_vae.json"],
    "hierarchical": ["hierarchical.json", "hierarchical.md", "ladder/layers_z1_varies.png"],
    "celeba_attributes": [
        "attribute_Blond_Hair.png",
        "attribute_Blond_Hair_and_Eyeglasses.png",
        "interpolation.png",
        "prior_samples.png",
        "celeba_attributes.json",
    ],
    "disentanglement": [
        "traversal_beta1.png",
        "traversal_beta4.png",
        "traversal_capacity.png",
        "traversal_tcvae.png",
        "disentanglement_tradeoff.png",
        "disentanglement.json",
        "disentanglement.md",
    ],
    "sharp_samples": ["sharp_samples.png", "sharp_samples.json", "sharp_samples.md"],
    "semi_supervised": [
        "semi_supervised.json",
        "semi_supervised.md",
        "accuracy.png",
        "class_conditional.png",
    ],
}


@pytest.fixture(scope="module")
def data_root(tiny_mnist_dir):
    """The shared data when present; else made-up MNIST files, a made-up Frey faces file and
    a made-up CelebA folder (random colour images, CelebA's layout)."""
    if all((SHARED_DATA / d).exists() for d in ("mnist", "frey_faces", "celeba")):
        return SHARED_DATA
    from PIL import Image
    from scipy.io import savemat

    root = tiny_mnist_dir.parent
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (560, 1965), dtype=np.uint8)
    (root / "frey_faces").mkdir(exist_ok=True)
    savemat(root / "frey_faces" / "frey_rawface.mat", {"ff": faces})
    celeba = root / "celeba" / "img_align_celeba"
    celeba.mkdir(parents=True, exist_ok=True)
    names = ["Blond_Hair", "Eyeglasses", "Smiling", "Male"]
    rows = []
    for i in range(1, 301):
        Image.fromarray(rng.integers(0, 256, (22, 18, 3), dtype=np.uint8)).save(
            celeba / f"{i:06d}.jpg"
        )
        rows.append(f"{i:06d}.jpg " + " ".join(str(v) for v in rng.choice([-1, 1], len(names))))
    (root / "celeba" / "list_attr_celeba.txt").write_text(
        "\n".join(["300", " ".join(names), *rows])
    )
    return root


@pytest.fixture(scope="module")
def image_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("image-cache")


def test_every_experiment_is_listed():
    found = sorted(p.stem for p in (REPO / "experiments").glob("*.py") if p.stem != "__init__")
    assert found == sorted(EXPERIMENTS), "list new experiments in tests/test_experiments.py"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_smoke(name, tmp_path, data_root, image_cache):
    done = subprocess.run(
        [sys.executable, "-m", f"experiments.{name}", "--smoke", "--out", str(tmp_path / name)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        env={**os.environ, "PYRO_VAE_DATA": str(data_root), "PYRO_VAE_CACHE": str(image_cache)},
    )
    assert done.returncode == 0, done.stderr
    assert f"output folder: {tmp_path / name}" in done.stderr
    for file in EXPERIMENTS[name]:
        assert (tmp_path / name / file).stat().st_size > 0, file


def test_experiment_from_a_checkpoint_through_the_cli(tmp_path, tiny_mnist_dir):
    """``pyro-vae run NAME --checkpoint`` draws from a saved run instead of training."""
    env = {**os.environ, "PYRO_VAE_DATA": str(tiny_mnist_dir.parent)}
    first = subprocess.run(
        [
            sys.executable,
            "-m",
            "pyro_vae",
            "run",
            "latent_2d",
            "--smoke",
            "--out",
            str(tmp_path / "a"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        env=env,
    )
    assert first.returncode == 0, first.stderr
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pyro_vae",
            "run",
            "manifold",
            "--smoke",
            "--checkpoint",
            str(tmp_path / "a" / "checkpoint.pt"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "a" / "manifold" / "manifold.png").exists()
    assert not (tmp_path / "a" / "manifold" / "checkpoint.pt").exists()  # nothing retrained
    unknown = subprocess.run(
        [sys.executable, "-m", "pyro_vae", "run", "nope"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert unknown.returncode == 1 and "unknown experiment 'nope'" in unknown.stderr


def test_celeba_attribute_figures_without_the_photographs(
    tmp_path, data_root, image_cache, monkeypatch
):
    """``--no-inputs`` drops the column of test faces (CelebA's photographs may not be
    republished); the edits themselves are the same images."""
    from PIL import Image

    from experiments import celeba_attributes

    monkeypatch.setenv("PYRO_VAE_DATA", str(data_root))
    monkeypatch.setenv("PYRO_VAE_CACHE", str(image_cache))
    with_inputs = celeba_attributes.main(["--smoke", "--out", str(tmp_path / "a")])
    without = celeba_attributes.main(
        [
            "--smoke",
            "--checkpoint",
            str(tmp_path / "a" / "checkpoint.pt"),
            "--no-inputs",
            "--out",
            str(tmp_path / "b"),
        ]
    )
    for name, numbers in with_inputs["attributes"].items():
        again = without["attributes"][name]
        assert again["train_faces_with"] == numbers["train_faces_with"]
        # the same codes and probe, up to float summation order after a reload
        assert again["probe_probability_by_multiple"] == pytest.approx(
            numbers["probe_probability_by_multiple"], abs=1e-3
        )
    wide = Image.open(tmp_path / "a" / "attribute_Smiling.png").size[0]
    narrow = Image.open(tmp_path / "b" / "attribute_Smiling.png").size[0]
    assert narrow < wide


def test_disentanglement_summarises_seeds(tmp_path):
    """Every seed's numbers are kept; the summary is their mean and sample standard deviation,
    and a seed trains its own model (different numbers from another seed)."""
    import statistics

    from experiments import disentanglement

    numbers = disentanglement.main(
        ["--smoke", "--variants", "beta1", "--seeds", "0", "1", "--out", str(tmp_path)]
    )
    v = numbers["variants"]["beta1"]
    assert [s["seed"] for s in v["per_seed"]] == [0, 1]
    assert v["per_seed"][0]["test_elbo"] != v["per_seed"][1]["test_elbo"]
    for key in disentanglement.SUMMARISED:
        values = [s[key] for s in v["per_seed"]]
        assert v[key] == pytest.approx(statistics.fmean(values))
        assert v[f"{key}_sd"] == pytest.approx(statistics.stdev(values))
    assert (tmp_path / "beta1-seed1" / "checkpoint.pt").exists()
    assert (tmp_path / "disentanglement_tradeoff.png").stat().st_size > 0
