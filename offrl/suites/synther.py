"""SynthER (Lu, Ball, Teh & Parker-Holder, 2023, "Synthetic Experience Replay"): a diffusion model
of whole transitions (s, a, r, s', terminal), trained on a dataset and sampled to enlarge it.

Each field is standardised by the data's mean and std (SynthER's 'standard' normaliser), an
unconditional DDPM (offrl.nets.diffusion, a zero-width condition) learns the joint vector, and N
samples are mapped back: actions clipped to their bounds, terminal = sample > 0.5. The result is
the real dataset followed by the N synthetic transitions, each its own one-step episode (cut by a
timeout unless terminal), with provenance: source fingerprint, model settings, real and
synthetic counts and the synthetic rows. Above the engines (it trains a network) but it is a data
tool: `offrl datasets augment NAME --method synther` (offrl/suites/augment_command.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from offrl.data.dataset import Dataset, DatasetMetadata
from offrl.data.fingerprint import dataset_fingerprint
from offrl.errors import ConfigError
from offrl.nets import diffusion
from offrl.nets.denoiser import ConditionalDenoiser


@dataclass(frozen=True)
class SynthERConfig:
    # conditionalnotbad/synther config/resmlp_denoiser.gin: a residual MLP of 6 layers of width 1024;
    # here offrl's plain MLP denoiser, 3 x 1024 by default (CPU-sized runs pass smaller).
    hidden_dims: tuple[int, ...] = (1024, 1024, 1024)
    training_steps: int = 100_000  # synther Trainer.train_num_steps
    batch_size: int = 256  # Trainer.train_batch_size
    learning_rate: float = 3e-4  # Trainer.train_lr (cosine-decayed there and here)
    # SynthER samples with the Elucidated (EDM) sampler in 128 steps; here the shared DDPM layer
    # with T = 128 steps of the cosine schedule and ancestral sampling.
    diffusion_steps: int = 128
    sampling_steps: int = 128
    beta_schedule: str = "cosine"
    time_features: int = 64
    seed: int = 0

    def validate(self) -> None:
        for name in ("training_steps", "batch_size", "diffusion_steps", "time_features"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} is {getattr(self, name)}; expected a positive integer.")
        if not self.learning_rate > 0:
            raise ConfigError(f"--learning-rate is {self.learning_rate}; expected a positive number.")
        diffusion.check_steps(self.sampling_steps, self.diffusion_steps)
        diffusion.make_schedule(self.beta_schedule, self.diffusion_steps)


def transition_matrix(dataset: Dataset) -> np.ndarray:
    """Rows [s, a, r, s', terminal] as float32."""
    return np.concatenate([
        dataset.observations, dataset.actions, dataset.rewards[:, None], dataset.next_observations,
        dataset.terminals.astype(np.float32)[:, None],
    ], axis=1).astype(np.float32)


@dataclass
class TransitionModel:
    """A trained SynthER model: the denoiser's parameters and the data's standardisation."""

    config: SynthERConfig
    params: dict
    mean: np.ndarray
    std: np.ndarray
    final_loss: float
    constant: np.ndarray  # columns with zero spread in the data
    training_rows: int  # how many transitions the model was fitted to

    def network(self) -> ConditionalDenoiser:
        return ConditionalDenoiser(self.mean.shape[0], self.config.hidden_dims, time_features=self.config.time_features)

    def sample(self, count: int, seed: int = 0, chunk: int = 10_000) -> np.ndarray:
        """`count` transition rows in data units (before clipping and thresholding)."""
        schedule = diffusion.make_schedule(self.config.beta_schedule, self.config.diffusion_steps)
        net, dim = self.network(), self.mean.shape[0]

        @jax.jit
        def draw(key):
            condition = jnp.zeros((chunk, 0))
            return diffusion.sample(net.apply, self.params, schedule, condition, key, (chunk, dim),
                                    self.config.sampling_steps, clip=None)

        keys = jax.random.split(jax.random.PRNGKey(seed), -(-count // chunk))
        rows = np.concatenate([np.asarray(draw(key)) for key in keys])[:count] * self.std + self.mean
        # A column the data holds constant (no terminal anywhere) stays that constant: its
        # standardised noise would otherwise cross the terminal threshold now and then.
        return np.where(self.constant, self.mean, rows)


def train_transition_model(rows: np.ndarray, config: SynthERConfig, chunk: int = 1_000) -> TransitionModel:
    """Fit the DDPM to standardised `rows` for `config.training_steps` minibatch updates."""
    config.validate()
    mean, std = rows.mean(axis=0), rows.std(axis=0)
    constant = std < 1e-6
    std = np.where(constant, 1.0, std)
    data = jnp.asarray((rows - mean) / std, jnp.float32)
    net = ConditionalDenoiser(rows.shape[1], config.hidden_dims, time_features=config.time_features)
    schedule = diffusion.make_schedule(config.beta_schedule, config.diffusion_steps)
    init_key, train_key = jax.random.split(jax.random.PRNGKey(config.seed))
    params = net.init(init_key, jnp.zeros((1, 0)), jnp.zeros((1, rows.shape[1])), jnp.zeros((1,)))
    optimizer = optax.adam(optax.cosine_decay_schedule(config.learning_rate, config.training_steps))
    opt_state = optimizer.init(params)

    def step(carry, key):
        params, opt_state = carry
        index_key, loss_key = jax.random.split(key)
        batch = data[jax.random.randint(index_key, (config.batch_size,), 0, data.shape[0])]
        loss, grads = jax.value_and_grad(
            lambda p: diffusion.denoising_loss(net.apply, p, schedule, jnp.zeros((config.batch_size, 0)), batch, loss_key)
        )(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    @jax.jit
    def run(carry, keys):
        return jax.lax.scan(step, carry, keys)

    carry, done, losses = (params, opt_state), 0, np.zeros(1)
    while done < config.training_steps:
        size = min(chunk, config.training_steps - done)
        carry, losses = run(carry, jax.random.split(jax.random.fold_in(train_key, done), size))
        done += size
    return TransitionModel(config, carry[0], mean, std, float(np.mean(np.asarray(losses)[-100:])), constant,
                           len(rows))


def synthetic_dataset_arrays(rows: np.ndarray, dataset: Dataset) -> dict[str, np.ndarray]:
    """Split sampled rows into fields: actions clipped to [-1, 1] scaled bounds (the dataset's), terminal > 0.5."""
    obs_dim, action_dim = dataset.observations.shape[1], dataset.actions.shape[1]
    observations = rows[:, :obs_dim]
    actions = rows[:, obs_dim:obs_dim + action_dim]
    low, high = dataset.metadata.action_low, dataset.metadata.action_high
    if low is not None and high is not None:
        actions = np.clip(actions, low, high)
    rewards = rows[:, obs_dim + action_dim]
    next_observations = rows[:, obs_dim + action_dim + 1:obs_dim + action_dim + 1 + obs_dim]
    terminals = rows[:, -1] > 0.5
    return {"observations": observations, "actions": actions, "rewards": rewards,
            "next_observations": next_observations, "terminals": terminals}


def augment_with_synther(dataset: Dataset, size: int, config: SynthERConfig = SynthERConfig()) -> tuple[Dataset, TransitionModel]:
    """The real dataset followed by `size` synthetic transitions (one-step episodes)."""
    if size <= 0:
        raise ConfigError(f"--size is {size}; expected a positive number of synthetic transitions.")
    config.validate()
    model = train_transition_model(transition_matrix(dataset), config)
    return append_synthetic(dataset, model, size), model


def append_synthetic(dataset: Dataset, model: TransitionModel, size: int) -> Dataset:
    """The real dataset followed by `size` transitions sampled from `model` (trained on it, or on
    part of it: benchmarks/synther_mujoco.py holds rows out), with provenance."""
    config = model.config
    synthetic = synthetic_dataset_arrays(model.sample(size, seed=config.seed + 1), dataset)
    real = dataset.num_transitions
    dtype = dataset.observations.dtype
    merged = {name: np.concatenate([getattr(dataset, name), synthetic[name].astype(getattr(dataset, name).dtype)])
              for name in ("observations", "actions", "rewards", "next_observations", "terminals")}
    timeouts = np.concatenate([dataset.timeouts, ~synthetic["terminals"]])
    starts = np.concatenate([dataset.episode_starts, real + np.arange(size)])
    costs = None if dataset.costs is None else np.concatenate([dataset.costs, np.zeros(size, dataset.costs.dtype)])
    provenance = {
        **dataset.metadata.provenance,
        "synther": {
            "source": dataset.metadata.name or dataset.metadata.source,
            "source_fingerprint": dataset_fingerprint(dataset),
            "model": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()},
            "final_denoising_loss": model.final_loss,
            "model_training_rows": model.training_rows,
            "real_transitions": real,
            "synthetic_transitions": size,
            "synthetic_rows": [real, real + size],  # rows [real, real + size) are synthetic
        },
    }
    metadata = DatasetMetadata(**{**vars(dataset.metadata), "provenance": provenance})
    merged["observations"] = merged["observations"].astype(dtype)
    return Dataset(**merged, timeouts=timeouts, episode_starts=starts, metadata=metadata, costs=costs)
