"""The one training routine: SVI on the ELBO of a (model, guide) pair.

``Trainer`` wraps ``elbo(model, guide)`` (Pyro's ``ELBOModule``: an ``nn.Module`` whose
parameters are the model's and the guide's) and one fused torch Adam over all of them, except
those of an adversary among the model's modules (:mod:`pyro_vae.adversary`: VAE-GAN's
discriminator), which its own Adam trains in a step beside the SVI step. The same model and
guide also work with plain ``pyro.infer.SVI`` and a user's own optimizer.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import pyro
import torch
from pyro.infer import ELBO, TraceMeanField_ELBO
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim import lr_scheduler

from . import distributed, evaluate, runtime
from .adversary import adversaries, adversaries_frozen
from .checkpoint import load_modules
from .config import TrainConfig
from .data import SemiSupervised, TrainingData, batches, collect, num_batches, num_data
from .evaluate import Data, as_args
from .objectives import (
    PARAM_STORE_ELBOS,
    Configured,
    ScaleLatents,
    Scheduled,
    differentiable,
    kl_weight,
    make_elbo,
)
from .runtime import (
    fast_modules,
    module_local_params,
    progress_bar,
    rng_state,
    set_rng_state,
)
from .traced import TracedLoss


@runtime_checkable
class StepHook(Protocol):
    """Called by :meth:`Trainer.fit` after every step."""

    def on_step(self, trainer: Trainer) -> None: ...


@runtime_checkable
class EpochHook(Protocol):
    """Called by :meth:`Trainer.fit` after every epoch with its row (a hook may add columns)."""

    def on_epoch(self, trainer: Trainer, row: dict[str, float]) -> None: ...


Hook = StepHook | EpochHook  # a training hook has either method, or both


# the columns of every epoch's row (hooks may add their own after these)
ROW = (
    "epoch",
    "step",
    "train_elbo",
    "test_elbo",
    "test_reconstruction",
    "test_kl",
    "beta",
    "seconds",
)
# with validation data (``fit(val=...)``, ``--val-size``), after ROW; the test columns are NaN
VAL_ROW = ("val_elbo", "val_reconstruction", "val_kl")


class Watch:
    """Training hook: follows one column of the epoch's rows (``metric``; higher is better
    with ``mode="max"``, lower with ``"min"``) in ``trainer.best``, which ``--keep-best``,
    ``--early-stop`` and ``--lr-schedule plateau`` read. Put it after the hooks that add the
    column and before those that save the trainer's state."""

    def __init__(self, metric: str = "val_elbo", mode: str = "max") -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min'; got {mode!r}")
        self.metric, self.mode = metric, mode

    def on_epoch(self, trainer: Trainer, row: dict[str, float]) -> None:
        if self.metric not in row:
            raise ValueError(
                f"the watched column {self.metric!r} is not in the epoch's row ({', '.join(row)})"
            )
        trainer.watch(float(row[self.metric]), self.metric, self.mode)


class Trainer:
    """SVI for one (model, guide) pair: state, one epoch loop, and exact resume.

    Args:
        model, guide: Pyro model and guide (``nn.Module`` s), already on ``device``; the
            model's adversaries (:mod:`pyro_vae.adversary`) train beside the SVI step.
        config: learning rate, ELBO, particles, batch size.
        device: where the data and modules live.
    """

    def __init__(
        self, model: nn.Module, guide: nn.Module, config: TrainConfig, device: torch.device
    ) -> None:
        self.model, self.guide, self.config, self.device = model, guide, config, device
        self.elbo = make_elbo(config.elbo, config.num_particles)
        check_pair(model, guide, self.elbo, config.elbo)
        self.loss = self.elbo(model, guide)
        self.local_params = not isinstance(self.elbo, PARAM_STORE_ELBOS)
        self._differentiable = differentiable(self.elbo)
        # the traced step replays the loss's tensor operations (pyro_vae.traced); it needs a
        # loss tensor from module-local parameters (not RenyiELBO, not the Jit ELBOs)
        self.traced = (
            TracedLoss(self.loss, snapshot_each_call=False)  # told when hooks ran
            if config.step == "traced" and self._differentiable and self.local_params
            else None
        )
        self.world = distributed.world()
        # the model's adversaries, and those the objective brings (a critic of the codes)
        self.critics = list(getattr(self.elbo, "adversaries", lambda *_: [])(model, guide, config))
        self.adversaries = adversaries(model) + self.critics
        if self.adversaries and self.world.size > 1:
            raise ValueError(
                f"{type(self.adversaries[0]).__name__} trains an adversary (a discriminator) "
                "beside the SVI step, which is not wrapped for torchrun's processes: train it "
                "in one process (without torchrun)"
            )
        held_out = {id(p) for a in self.adversaries for p in a.adversary_parameters()}
        self._ddp: nn.Module | None = None
        if self.world.size > 1:
            if not (self._differentiable and self.local_params):
                raise ValueError(
                    f"--elbo {config.elbo} computes its gradients inside Pyro "
                    "(loss_and_grads) or from Pyro's global parameter store, which "
                    "DistributedDataParallel cannot wrap: train it in one process, or use "
                    "--elbo trace, meanfield or enum"
                )
            self._ddp = DistributedDataParallel(
                _ScaledLoss(self.loss, self.traced, self.world.size),
                device_ids=[device.index] if device.type == "cuda" else None,
            )
        # --weight-decay (RAE's L2 on the decoder): a group of the model's parameters that
        # decays beside the guide's that do not; one group without it, as older runs saved
        trained = [p for p in self.loss.parameters() if id(p) not in held_out]
        groups: list[Any] = trained
        if config.weight_decay > 0:
            decayed = {id(p) for p in model.parameters()}
            groups = [
                {"params": [p for p in trained if id(p) not in decayed]},
                {
                    "params": [p for p in trained if id(p) in decayed],
                    "weight_decay": config.weight_decay,
                },
            ]
        self.optimizer = torch.optim.Adam(
            groups,
            lr=config.lr,
            betas=config.adam_betas,
            fused=_fused_adam_ok(device),
        )
        # the adversaries' own optimizers (their rates stay as built: no schedule, no --lr)
        self.adversary_optimizers = [
            torch.optim.Adam(
                a.adversary_parameters(),
                lr=a.adversary_lr,
                betas=a.adversary_betas,
                fused=_fused_adam_ok(device),
            )
            for a in self.adversaries
        ]
        self.scheduler = make_scheduler(self.optimizer, config)
        # --clip-norm: what the optimizer steps; None keeps the step as it is without clipping
        self._clip = (
            None
            if config.clip_norm is None
            else [p for group in self.optimizer.param_groups for p in group["params"]]
        )
        # the watched metric (see Watch): {metric, mode, value, epoch, since}
        self.best: dict[str, Any] | None = None
        # the last step's objective, summed over its batch (detached, on the device: reading
        # it is a host sync), and the batch's size: what step hooks may log
        self.step_loss: Tensor | None = None
        self.step_size = 0
        self.epoch = 0
        self.step = 0
        self.history: list[dict[str, float]] = []
        self._validated = False
        self._checked_data: TrainingData | None = None
        self._compiled = False  # the Jit ELBOs' trace
        self._kl_scale = ScaleLatents(1.0)
        self._param_store: dict = {"params": {}, "constraints": {}}  # for the Jit ELBOs

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {
            "modules": self.loss.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "history": self.history,
            "rng": rng_state(self.device),
        }
        if self.scheduler is not None:  # its base rate, to rescale it when --lr changes
            state["scheduler"] = {"state": self.scheduler.state_dict(), "lr": self.config.lr}
        if self.best is not None:
            state["best"] = dict(self.best)
        if self.adversary_optimizers:
            state["adversaries"] = [o.state_dict() for o in self.adversary_optimizers]
        if self.critics:  # the objective's, not the model's: saved with the training state
            state["critics"] = [c.state_dict() for c in self.critics]
        return state

    def load_state_dict(self, state: dict[str, Any], path: str = "checkpoint") -> None:
        load_modules(self.loss, state["modules"], path)
        self.optimizer.load_state_dict(state["optimizer"])
        saved = state.get("adversaries", [])
        if len(saved) != len(self.adversary_optimizers):
            raise ValueError(
                f"{path} holds the optimizer states of {len(saved)} adversaries and this model "
                f"has {len(self.adversary_optimizers)}: resume it with the model it was "
                "trained with"
            )
        for optimizer, adversary_state in zip(self.adversary_optimizers, saved, strict=True):
            optimizer.load_state_dict(adversary_state)
        critics = state.get("critics", [])
        if len(critics) != len(self.critics):
            raise ValueError(
                f"{path} holds {len(critics)} critics of the codes and --elbo "
                f"{self.config.elbo} trains {len(self.critics)}: resume with the objective the "
                "run was trained with"
            )
        for critic, critic_state in zip(self.critics, critics, strict=True):
            critic.load_state_dict(critic_state)
        if self.scheduler is not None and "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"]["state"])
            # a changed --lr on resume scales the schedule (all of torch's used here are linear
            # in the rate); unchanged, the rates are kept bit for bit
            scale_lr(self.optimizer, self.scheduler, self.config.lr / state["scheduler"]["lr"])
        else:
            for group in self.optimizer.param_groups:  # the config's rate (may change on resume)
                group["lr"] = self.config.lr
        self.best = dict(state["best"]) if state.get("best") is not None else None
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.history = [dict(row) for row in state["history"]]
        set_rng_state(state["rng"], self.device)
        if self.world.rank > 0:  # the saved stream is rank 0's; the others draw their own
            torch.manual_seed(distributed.rank_seed(self.config.seed) + 7919 * self.epoch)

    # -- training --------------------------------------------------------------------------
    def fit(
        self,
        train: TrainingData,
        epochs: int,
        *,
        test: Data | None = None,
        val: Data | None = None,
        dynamic: bool = False,
        hooks: Sequence[Hook] = (),
        progress: bool | None = None,
    ) -> list[dict[str, float]]:
        """Train until ``self.epoch == epochs``; returns the per-epoch history.

        Each epoch draws a fresh permutation of ``train`` (one tensor on the device, or a tuple
        such as ``(x, y)`` passed to model and guide as arguments, or a
        :class:`~pyro_vae.data.SemiSupervised` set; a NumPy array, a torch ``Dataset``, a
        ``DataLoader`` or an iterable of batches is read once, see
        :func:`~pyro_vae.data.collect`); with
        ``dynamic`` each batch is a new Bernoulli draw of the grey levels. After each epoch the
        row ``{epoch, step, train_elbo, test_elbo, test_reconstruction, test_kl, beta,
        seconds}`` (nats per datum) is appended and passed to the hooks' ``on_epoch``.
        ``train_elbo`` is the training objective's running mean: the ELBO, or with ``beta`` /
        warm-up the β-weighted objective, or for ``iwae`` the k-sample bound; the test
        columns are always the plain ELBO and its terms.

        With ``val`` (validation data), ``val_elbo, val_reconstruction, val_kl`` follow (the
        same numbers for ``val``; the test columns are then NaN unless ``test`` is given too),
        and with a learning-rate schedule (``--lr-schedule``) the epoch's rate ``lr``. The
        schedule (torch.optim.lr_scheduler on the fused Adam) steps after each epoch; the
        plateau schedule, ``--early-stop`` and ``--keep-best`` follow the metric of a
        :class:`Watch` hook (by default ``val_elbo`` with ``val``, else ``train_elbo``).
        Training stops early once ``config.early_stop`` epochs passed without improvement.
        """
        train = collect(train)
        test = None if test is None else collect(test, "the test data")
        val = None if val is None else collect(val, "the validation data")
        watching = self.config.early_stop is not None or self.config.lr_schedule == "plateau"
        if watching and not any(isinstance(h, Watch) for h in hooks):
            hooks = [*hooks, Watch("val_elbo" if val is not None else "train_elbo")]
        self._check_data(train, dynamic)
        if isinstance(self.elbo, Configured):  # objectives with options of their own
            self.elbo.configure(self.config, num_data(train))
        if self.world.size > 1 and isinstance(train, SemiSupervised):
            raise ValueError(
                "m2's semi-supervised batches (labelled and unlabelled data interleaved) are "
                "not sharded over processes yet: train m2 in one process"
            )
        on_step = [h.on_step for h in hooks if isinstance(h, StepHook)]
        on_epoch = [h.on_epoch for h in hooks if isinstance(h, EpochHook)]
        n = num_data(train, self.config.batch_size)
        steps_per_epoch = num_batches(train, self.config.batch_size)
        global_batch = self.config.batch_size * self.world.size
        with (
            module_local_params(
                self.model, self.guide, enabled=self.local_params, store=self._param_store
            ),
            fast_modules(self._differentiable),
        ):
            while self.epoch < epochs:
                if self._early_stop(epochs, resumed=True):
                    break
                start = time.perf_counter()
                self.loss.train()
                beta = kl_weight(self.config.beta, self.config.warmup_epochs, self.epoch)
                self._kl_scale.scale = beta
                if isinstance(self.elbo, Scheduled):  # a schedule of the objective's own
                    self.elbo.set_epoch(self.epoch)
                if self.traced is not None:  # hooks may have changed what its key cannot see
                    self.traced.recheck()
                total = torch.zeros((), device=self.device)
                bar = progress_bar(
                    total=steps_per_epoch,
                    desc=f"epoch {self.epoch + 1}/{epochs}",
                    unit="step",
                    progress=progress,
                )
                epoch_batches = batches(
                    train,
                    self.config.batch_size,
                    dynamic,
                    self.device,
                    permutation_seed=self.config.seed * 100_003 + self.epoch,
                )
                for i, batch in enumerate(epoch_batches):
                    args = as_args(batch)
                    self.step_loss = self._step(*args)
                    self.step_size = args[0].shape[0]
                    total += self.step_loss
                    self.step += 1
                    for fn in on_step:
                        fn(self)
                    if on_step and self.traced is not None:
                        self.traced.changed()
                    runtime.check_interrupt()
                    if i % 50 == 49 or i == steps_per_epoch - 1:
                        # over all ranks, so that every rank takes the same decision
                        summed = distributed.all_sum(total.clone()).item()
                        running = summed / min(n, (i + 1) * global_batch)
                        self._check_finite(running)
                        bar.set_postfix(loss=f"{running:.2f}")
                        bar.update(i + 1 - bar.n)
                bar.close()
                self._check_weights()
                row = {
                    "epoch": self.epoch + 1,
                    "step": self.step,
                    "train_elbo": -distributed.all_sum(total.clone()).item() / n,
                    "test_elbo": math.nan,
                    "test_reconstruction": math.nan,
                    "test_kl": math.nan,
                    "beta": beta,
                    "seconds": time.perf_counter() - start,
                }
                for name, scored in (("test", test), ("val", val)):
                    if scored is not None:
                        terms = self.test_elbo_terms(scored)
                        if not math.isfinite(terms["elbo"]):
                            what = "test" if name == "test" else "validation"
                            raise self._diverged(f"the {what} ELBO became {terms['elbo']}")
                        row |= {f"{name}_{key}": value for key, value in terms.items()}
                if self.scheduler is not None:
                    row["lr"] = self.optimizer.param_groups[0]["lr"]  # this epoch's rate
                    if not isinstance(self.scheduler, lr_scheduler.ReduceLROnPlateau):
                        self.scheduler.step()  # plateau: by the Watch hook, on its metric
                self.epoch += 1
                self.history.append(row)
                for fn in on_epoch:
                    fn(self, row)
                distributed.barrier()  # the others wait while rank 0 writes the epoch
                if self._early_stop(epochs):
                    break
        return self.history

    def watch(self, value: float, metric: str = "val_elbo", mode: str = "max") -> bool:
        """Record this epoch's value of the watched metric (see :class:`Watch`) in
        ``self.best`` and step the plateau schedule on it; True when it improved."""
        best = self.best
        improved = (
            best is None
            or best["metric"] != metric
            or (value > best["value"] if mode == "max" else value < best["value"])
        )
        if improved:
            self.best = {"metric": metric, "mode": mode, "value": value, "epoch": self.epoch}
            self.best["since"] = 0
        else:
            assert best is not None
            best["since"] += 1
        if isinstance(self.scheduler, lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(value if mode == "max" else -value)
        return improved

    def _early_stop(self, epochs: int, resumed: bool = False) -> bool:
        """Whether ``config.early_stop`` epochs passed without a better watched value; says
        so (once per fit)."""
        patience, best = self.config.early_stop, self.best
        if patience is None or best is None or best["since"] < patience or self.epoch >= epochs:
            return False
        if distributed.world().main:
            print(
                f"early stop{' (reached before)' if resumed else ''}: {best['metric']} "
                f"has not improved for {best['since']} epochs (--early-stop {patience}); best "
                f"{best['value']:.4f} at epoch {best['epoch']}; stopped after epoch "
                f"{self.epoch} of {epochs}",
                file=sys.stderr,
            )
        return True

    def _check_data(self, train: TrainingData, dynamic: bool) -> None:
        """Check training data once per data set: against the likelihood's support, or, when
        they are binarized per batch, that they are probabilities."""
        if self._checked_data is train:
            return
        if isinstance(train, SemiSupervised):
            inputs = [train.labelled_x, train.unlabelled_x]
        else:
            inputs = [train[0] if isinstance(train, tuple) else train]
        for x in inputs:
            if not dynamic:
                evaluate.check_data(self.model, x)
            elif x.is_floating_point() and not bool(((x >= 0) & (x <= 1)).all()):
                raise ValueError(
                    "dynamic binarization draws Bernoulli(x) per batch, so the data must lie in "
                    f"[0, 1]; these range over [{x.min().item():g}, {x.max().item():g}]: rescale "
                    "them (or store them as uint8 images)"
                )
        self._checked_data = train

    def _step(self, *args: Tensor) -> Tensor:
        # Pyro's shape and support validation runs on the first step only: it costs ~2 ms per
        # step here, and the data were checked against the likelihood's support up front.
        # the KL weight's handler only where it changes something: the default path stays lean
        kl_scale = self._kl_scale if self._kl_scale.scale != 1.0 else contextlib.nullcontext()
        frozen = adversaries_frozen(self.adversaries)
        with frozen:
            with pyro.validation_enabled(not self._validated), kl_scale:
                if self.local_params is False and not self._compiled:
                    self._compile(*args)
                self.optimizer.zero_grad(set_to_none=True)
                if self._ddp is not None:
                    try:
                        scaled = self._ddp(*args)
                        scaled.backward()  # DDP sums the ranks' gradients here
                    except RuntimeError as e:
                        if distributed.communication_error(e):
                            raise distributed.lost(e) from None
                        raise
                    loss = scaled.detach() / self.world.size
                elif self._differentiable:
                    loss = (self.traced or self.loss)(*args)
                    loss.backward()
                    loss = loss.detach()
                else:
                    # Pyro 1.9.2's RenyiELBO has no differentiable_loss: it runs backward itself
                    value = self.elbo.loss_and_grads(self.model, self.guide, *args)
                    loss = torch.tensor(value, device=self.device)
            self._validated = True
            if self.adversaries:  # eager, also under the traced step: it replays the ELBO only
                with pyro.validation_enabled(False):
                    generator = [
                        a.generator_loss(self.model, self.guide, args) for a in self.adversaries
                    ]
                    torch.stack(generator).sum().backward()
        if self._clip is not None:
            nn.utils.clip_grad_norm_(self._clip, self.config.clip_norm)  # type: ignore[arg-type]
        self.optimizer.step()
        for adversary, optimizer in zip(self.adversaries, self.adversary_optimizers, strict=True):
            optimizer.zero_grad(set_to_none=True)
            with pyro.validation_enabled(False):
                adversary.discriminator_loss(self.model, self.guide, args).backward()
            optimizer.step()
        return loss

    def _compile(self, *args: Tensor) -> None:
        """Trace a Jit ELBO on the first batch, then put the RNG state back: compiling runs
        model and guide several times, and its draws must not shift the stream the steps use,
        or a resumed run (which compiles at its own first step) would not continue exactly."""
        state = rng_state(self.device)
        self.loss(*args)
        set_rng_state(state, self.device)
        self._compiled = True

    def _check_finite(self, running: float) -> None:
        if not math.isfinite(running):
            raise self._diverged(f"the loss became {running}")

    def _check_weights(self) -> None:
        params = [p.detach() for p in self.loss.parameters()]
        if params and not bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):
            raise self._diverged("the weights hold NaN or inf")

    def _diverged(self, what: str) -> FloatingPointError:
        """The error for a non-finite state in the epoch under way (never saved: a run's
        checkpoint is written after an epoch's checks pass)."""
        kept = (
            f"the last finite state is epoch {self.epoch}'s (a run's checkpoint.pt holds it)"
            if self.epoch
            else "no epoch finished, so no checkpoint was written"
        )
        return FloatingPointError(
            f"training diverged in epoch {self.epoch + 1} (step {self.step}): {what}; {kept}; "
            "lower the learning rate (--lr) or check the data scaling"
        )

    @torch.no_grad()
    def test_elbo_terms(self, x: Data) -> dict[str, float]:
        """Mean test ELBO per datum (nats), and its reconstruction and KL terms; one draw of
        z per datum. A distributed run scores each rank's shard and sums over ranks."""
        self.loss.eval()
        if self.world.size == 1:
            return evaluate.elbo_terms(self.model, self.guide, x)
        args = as_args(x)
        part = distributed.shard(args[0].shape[0])
        local = tuple(a[part] for a in args)
        n_local = local[0].shape[0]
        terms = (
            evaluate.elbo_terms(self.model, self.guide, local if len(local) > 1 else local[0])
            if n_local
            else {"elbo": 0.0, "reconstruction": 0.0, "kl": 0.0}
        )
        sums = torch.tensor([terms[k] * n_local for k in terms], dtype=torch.float64)
        sums = distributed.all_sum(sums.to(self.device)).cpu() / args[0].shape[0]
        return dict(zip(terms, sums.tolist(), strict=True))


class _ScaledLoss(nn.Module):
    """The step's loss times the number of ranks, for DistributedDataParallel: DDP averages
    the ranks' gradients, and Pyro's loss is a sum over the batch, so N ranks with batches of
    B take exactly the step of one process with their N·B data."""

    def __init__(self, loss: nn.Module, traced: TracedLoss | None, ranks: int) -> None:
        super().__init__()
        self.loss = loss
        self.traced = traced
        self.ranks = ranks

    def forward(self, *args: Tensor) -> Tensor:
        return (self.traced or self.loss)(*args) * self.ranks


def check_pair(model: nn.Module, guide: nn.Module, elbo: ELBO, elbo_name: str) -> None:
    """Refuse an objective the guide cannot train under, with the fix in the message."""
    if isinstance(elbo, TraceMeanField_ELBO) and not getattr(guide, "mean_field", True):
        raise ValueError(
            f"--elbo {elbo_name} needs a mean-field guide, and {type(guide).__name__} is "
            "not one: choose --elbo trace, jit-trace or iwae, or a mean-field guide (vae: "
            "normal or fullcov; hvae: ladder)"
        )


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig
) -> lr_scheduler.LRScheduler | None:
    """The ``--lr-schedule`` of ``config`` on ``optimizer`` (torch's schedulers, stepped once
    per epoch), or None."""
    name = config.lr_schedule
    if name == "cosine":
        horizon = config.lr_cosine_epochs or config.epochs
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=horizon)
    if name == "step":
        return lr_scheduler.StepLR(optimizer, config.lr_step_epochs, gamma=config.lr_gamma)
    if name == "plateau":  # on the watched metric, made "higher is better" by Trainer.watch
        return lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="max",
            factor=config.lr_gamma,
            patience=config.lr_patience,
            threshold=0.0,  # any improvement counts (torch's relative one misreads ELBOs < 0)
            threshold_mode="abs",
        )
    return None


def scale_lr(
    optimizer: torch.optim.Optimizer, scheduler: lr_scheduler.LRScheduler, scale: float
) -> None:
    """Multiply the optimizer's rates and the schedule's base rates by ``scale``."""
    if scale == 1.0:
        return
    for group in optimizer.param_groups:
        group["lr"] *= scale
        if "initial_lr" in group:
            group["initial_lr"] *= scale
    for name in ("base_lrs", "_last_lr"):
        if hasattr(scheduler, name):
            setattr(scheduler, name, [lr * scale for lr in getattr(scheduler, name)])


def _fused_adam_ok(device: torch.device) -> bool:
    # torch's fused Adam: one kernel for all parameters (CPU since torch 2.4, CUDA earlier).
    return device.type in ("cpu", "cuda")
