#!/usr/bin/env bash
# Makes the README gallery: every figure from one command, on full MNIST, Frey faces, CelebA
# and CIFAR-10.
# Usage: bash docs/make_gallery.sh [DATA_DIR]   (DATA_DIR holds mnist/, frey_faces/, celeba/
# in CelebA's layout and cifar10/ as class folders)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYRO_VAE_DATA=${1:-../shared/data}
R=runs/gallery
G=docs/gallery
mkdir -p "$R" "$G"
run() { echo "+ $*"; "$@" --no-progress; }

# a VAE with a 2-D latent space (20 epochs) and the figures drawn from it
run python -m experiments.latent_2d --epochs 20 --out $R/z2
run python -m experiments.manifold --checkpoint $R/z2/checkpoint.pt --out $R/z2/manifold
run python -m experiments.training_gif --epochs 10 --out $R/training_gif
# the 784-500-500-50 VAE (20 epochs) and the figures drawn from it
run python -m experiments.learning_curves --epochs 20 --out $R/z50
for e in reconstructions samples interpolation attribute_vectors classical_baselines; do
  run python -m experiments.$e --checkpoint $R/z50/checkpoint.pt --out $R/z50/$e
done
run python -m experiments.autoencoder_vs_vae --epochs 10 --out $R/autoencoder_vs_vae
run python -m experiments.frey_faces --out $R/frey_faces
run python -m experiments.beta_vae --epochs 10 --out $R/beta_vae
run python -m experiments.conditional_vae --epochs 10 --out $R/conditional_vae
# 4 label budgets x 3 seeds of M2, 25 epochs each: the longest step (about 1.5 h on 2 cores
# as two processes of one thread, --budgets 100 1000 and --budgets 600 3000, then --resume)
run python -m experiments.semi_supervised --epochs 25 --out $R/semi_supervised
# the hierarchical VAE: two stochastic layers at the one-layer VAE's width, KL warm-up over 5
# epochs, bottom-up guide, 100 epochs (about 15 min of training and 30 min of k=5000 scoring
# on one core); Burda et al.'s narrower 200-200 architecture is the experiment's default
run python -m experiments.hierarchical --variants bottomup --hidden 500 500 --warmup-epochs 5 \
  --epochs 100 --ll-samples 5000 --out $R/hierarchical
# your own images: CelebA faces at 64 x 64 x 3 and their attribute vectors (10 epochs, about
# 4 min on 2 cores), CIFAR-10 from its folder of JPEGs (3 epochs, about 1 min after a 15 s decode)
run python -m experiments.celeba_attributes --epochs 10 --ll-samples 20 --no-inputs --out $R/celeba
run pyro-vae train --dataset folder:$PYRO_VAE_DATA/cifar10 --net conv --likelihood logistic256 \
  --z-dim 64 --hidden 512 --epochs 3 --test-size 1000 --ll-samples 20 --out $R/cifar10
# sharper samples: the conv VAE, VAE-GAN, perceptual and MS-SSIM likelihoods on CelebA at
# equal epochs (3 each, about 25 min on 2 cores: VAE-GAN's epoch is about 7 VAE epochs)
run python -m experiments.sharp_samples --dataset celeba --likelihood logistic256 --z-dim 128 \
  --hidden 512 --epochs 3 --ll-samples 20 --no-inputs --out $R/sharp_celeba
# the same four on CIFAR-10 (50,000 JPEGs; about 55 min on 2 cores: VAE-GAN's epoch is about
# 8 VAE epochs)
run python -m experiments.sharp_samples --dataset folder:$PYRO_VAE_DATA/cifar10 \
  --likelihood logistic256 --z-dim 64 --hidden 512 --epochs 3 --test-size 1000 --ll-samples 20 \
  --out $R/sharp_cifar10
# disentanglement on 30,000 dSprites-style images (re-rendered), 5 epochs per objective, three
# seeds (about 75 min on 2 cores); the traversals are seed 0's
run python -m experiments.disentanglement --images 30000 --epochs 5 --seeds 0 1 2 --votes 1000 \
  --metric-data 5000 --out $R/disentanglement

cp $R/z2/latent_2d.png $R/z2/manifold/manifold.png $G/
cp $R/training_gif/latent_training.gif $R/training_gif/manifold_training.gif $G/
cp $R/z50/learning_curves.png $G/
cp $R/z50/reconstructions/reconstructions.png $G/
cp $R/z50/samples/prior_predictive.png $R/z50/samples/posterior_predictive.png $G/
cp $R/z50/interpolation/interpolation_same.png $R/z50/interpolation/interpolation_different.png $G/
cp $R/z50/attribute_vectors/attribute_*.png $G/
cp $R/z50/classical_baselines/classical_baselines.png $G/
cp $R/autoencoder_vs_vae/autoencoder_vs_vae_z2.png $R/autoencoder_vs_vae/autoencoder_vs_vae_z10.png $G/
cp $R/frey_faces/frey_reconstructions.png $R/frey_faces/frey_manifold.png $G/
cp $R/beta_vae/beta_vae_traversal_beta1.png $R/beta_vae/beta_vae_traversal_beta4.png $G/
cp $R/conditional_vae/class_conditional.png $R/conditional_vae/style_transfer.png $G/
for f in traversal_beta1 traversal_tcvae disentanglement_tradeoff; do
  cp $R/disentanglement/$f.png $G/dsprites_$f.png
done
cp $R/semi_supervised/accuracy.png $G/semi_supervised_accuracy.png
cp $R/semi_supervised/class_conditional.png $G/m2_class_conditional.png
for f in prior_samples reconstructions layers_z1_varies layers_z2_varies; do
  cp $R/hierarchical/bottomup/$f.png $G/hvae_$f.png
done
# CelebA's license keeps its photographs out of the repository: decoded images only, no
# reconstructions.png (it shows the test faces)
for f in prior_samples interpolation attribute_Blond_Hair attribute_Eyeglasses \
  attribute_Smiling attribute_Blond_Hair_and_Eyeglasses; do
  cp $R/celeba/$f.png $G/celeba_$f.png
done
cp $R/sharp_celeba/sharp_samples.png $G/celeba_sharp_samples.png
cp $R/sharp_cifar10/sharp_samples.png $G/cifar10_sharp_samples.png
cp $R/cifar10/prior_samples.png $G/cifar10_prior_samples.png
cp $R/cifar10/reconstructions.png $G/cifar10_reconstructions.png
# shrink for the README: at most 900 px wide, 256-colour palettes, GIFs at 3/4 size
python - "$G" <<'PY'
import sys
from pathlib import Path
from PIL import Image
for p in Path(sys.argv[1]).iterdir():
    im = Image.open(p)
    frames, durations = [], []
    for i in range(getattr(im, "n_frames", 1)):
        im.seek(i)
        f = im.convert("RGB")
        scale = 0.75 if p.suffix == ".gif" else min(1.0, 900 / f.width)
        f = f.resize((int(f.width * scale), int(f.height * scale)), Image.LANCZOS)
        frames.append(f.quantize(256))
        durations.append(im.info.get("duration", 400))
    frames[0].save(p, save_all=len(frames) > 1, append_images=frames[1:], duration=durations,
                   loop=0, optimize=True)
PY
echo "gallery written to $G"
