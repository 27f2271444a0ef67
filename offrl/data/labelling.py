"""Rewards for reward-free data, from a few expert demonstrations.

- `otr`: Optimal Transport Reward labelling (Luo et al. 2023, "Optimal Transport for Offline
  Imitation Learning"; reference code ethanluoyc/optimal_transport_reward,
  otr/agents/otil/rewarder.py and otr/train_offline.py). Each episode is aligned with each
  demonstration by entropic optimal transport over observations (cosine cost, Sinkhorn with
  epsilon 0.01), the step's reward is minus its transport cost, squashed as
  alpha * exp(beta * T / d * r) (alpha = beta = 5, T the episode length scale, d the observation
  size), and the demonstration giving the episode the highest total reward is kept (top-1).
  Sinkhorn comes from ott-jax (`pip install 'offrl[labelling]'`).
- `seabo`: SEABO (Lyu et al. 2024, "SEABO: A Simple Search-Based Method for Offline Imitation
  Learning"; reference code dmksjfl/SEABO, main.py `squashing_func`/`rewarder`): the distance d
  from (s, a, s') to its nearest neighbour among the demonstrations' transitions (scipy KD-tree),
  reward = scale * exp(-beta * d / action_dim) with beta 0.5, scale 1.
- `zero`: every reward 0 (the "unlabelled data sharing" baseline, Yu et al. 2022).

The labelled dataset records the method, its settings and the demonstrations' fingerprint.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from offrl.data.dataset import Dataset
from offrl.data.fingerprint import dataset_fingerprint
from offrl.errors import ConfigError, DatasetError

METHODS = ("otr", "seabo", "zero")


@dataclass(frozen=True)
class OTRSettings:
    epsilon: float = 0.01  # rewarder.py OTILRewarder: epsilon=1e-2
    max_iterations: int = 100  # rewarder.py OTILRewarder: max_iterations=100
    threshold: float = 1e-9  # rewarder.py OTILRewarder: threshold=1e-9
    alpha: float = 5.0  # configs/otr_iql_mujoco.py: alpha = 5.0 (exponential squashing)
    beta: float = 5.0  # configs/otr_iql_mujoco.py: beta = 5.0, scaled by episode_length / atom size
    # train_offline.py fixes episode_length = 1000 (MuJoCo); here the longest demonstration's length.
    episode_length: int | None = None


@dataclass(frozen=True)
class SEABOSettings:
    beta: float = 0.5  # dmksjfl/SEABO main.py squashing_func beta=0.5
    scale: float = 1.0  # dmksjfl/SEABO main.py squashing_func scale=1.0
    use_action_dim: bool = True  # divide the distance by the action size (the reference's default, no --no_action_dim)


def check_demonstrations(dataset: Dataset, demos: Dataset) -> None:
    if demos.spec.observation_dim != dataset.spec.observation_dim:
        raise DatasetError(
            f"The demonstrations {demos.where} have {demos.spec.observation_dim}-dimensional observations but "
            f"{dataset.where} has {dataset.spec.observation_dim}; expected demonstrations from the same observation space."
        )
    if demos.spec.action_dim != dataset.spec.action_dim:
        raise DatasetError(
            f"The demonstrations {demos.where} have {demos.spec.action_dim}-dimensional actions but "
            f"{dataset.where} has {dataset.spec.action_dim}; expected demonstrations from the same action space."
        )


def has_rewards(dataset: Dataset) -> bool:
    """A dataset 'has rewards' unless every reward is exactly 0 (offrl's reward-free convention)."""
    return bool(np.any(dataset.rewards != 0))


def otr_rewards(dataset: Dataset, demos: Dataset, settings: OTRSettings = OTRSettings()) -> np.ndarray:
    """OTR's reward for every transition of `dataset` (module docstring)."""
    import jax
    import jax.numpy as jnp
    try:
        from ott.geometry import costs, pointcloud
        from ott.problems.linear import linear_problem
        from ott.solvers.linear import sinkhorn
    except ImportError:
        raise ConfigError(
            "OTR labelling needs ott-jax, which is not installed; expected `pip install 'offrl[labelling]'`."
        ) from None

    demo_episodes = [demos.observations[s:e] for s, e in zip(demos.episode_starts, demos.episode_ends)]
    length = settings.episode_length or max(len(episode) for episode in demo_episodes)
    dim = dataset.spec.observation_dim
    # Every episode and demonstration is padded to one length with zero-weight atoms, so one
    # compiled solve serves all of them (as the reference pads to 1000 steps).
    pad = max(length, int(dataset.episode_lengths.max()), max(len(e) for e in demo_episodes))
    solver = sinkhorn.Sinkhorn(threshold=settings.threshold, max_iterations=settings.max_iterations)
    cost_fn = costs.Cosine()

    def packed(atoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.zeros((pad, dim), np.float32)
        x[: len(atoms)] = atoms
        w = np.zeros(pad, np.float32)
        w[: len(atoms)] = 1.0 / len(atoms)
        # A zero atom has an undefined cosine; a constant offset on padded rows keeps costs finite.
        x[len(atoms):] = 1.0
        return x, w

    def transport_costs(agent, agent_weights, expert, expert_weights):
        geometry = pointcloud.PointCloud(agent, expert, cost_fn=cost_fn, epsilon=settings.epsilon)
        output = solver(linear_problem.LinearProblem(geometry, a=agent_weights, b=expert_weights))
        coupling = output.matrix
        return jnp.einsum("ij,ij->i", coupling, geometry.cost_matrix)

    per_demo = jax.jit(jax.vmap(transport_costs, in_axes=(None, None, 0, 0)))
    experts = [packed(episode) for episode in demo_episodes]
    expert_atoms = jnp.asarray(np.stack([e[0] for e in experts]))
    expert_weights = jnp.asarray(np.stack([e[1] for e in experts]))
    beta = settings.beta * length / dim  # train_offline.py: beta * episode_length / atom_size
    rewards = np.empty(dataset.num_transitions, np.float32)
    for start, end in zip(dataset.episode_starts, dataset.episode_ends):
        atoms, weights = packed(dataset.observations[start:end])
        ot_costs = np.asarray(per_demo(jnp.asarray(atoms), jnp.asarray(weights), expert_atoms, expert_weights))
        # The reference's costs are for weights 1/1000 per step; ours are 1/n, so rescale by n/T.
        per_step = ot_costs[:, : end - start] * (end - start) / length
        squashed = settings.alpha * np.exp(beta * -per_step)
        best = int(np.argmax(squashed.sum(axis=1)))  # rewarder.py aggregate_top_k, k=1
        rewards[start:end] = squashed[best]
    return rewards


def seabo_rewards(dataset: Dataset, demos: Dataset, settings: SEABOSettings = SEABOSettings()) -> np.ndarray:
    """SEABO's reward for every transition of `dataset` (module docstring)."""
    from scipy.spatial import KDTree

    def keys(data: Dataset) -> np.ndarray:  # the reference's mode 'sas'
        return np.concatenate([data.observations, data.actions, data.next_observations], axis=1).astype(np.float64)

    distance, _ = KDTree(keys(demos)).query(keys(dataset), k=1)
    if settings.use_action_dim:
        distance = distance / dataset.spec.action_dim
    return (settings.scale * np.exp(-settings.beta * distance)).astype(np.float32)


def label_dataset(dataset: Dataset, method: str, demos: Dataset | None = None, overwrite_rewards: bool = False,
                  settings: Any = None) -> Dataset:
    """A copy of `dataset` with rewards from `method`; refuses to replace real rewards unless asked."""
    if method not in METHODS:
        raise ConfigError(f"--method is {method!r}; expected one of {', '.join(METHODS)}.")
    if has_rewards(dataset) and not overwrite_rewards:
        raise ConfigError(
            f"{dataset.where} already has rewards (not all zero); expected --overwrite-rewards to replace them."
        )
    record: dict[str, Any] = {"method": method, "source": dataset.where,
                              "source_fingerprint": dataset_fingerprint(dataset)}
    if method == "zero":
        rewards = np.zeros(dataset.num_transitions, np.float32)
    else:
        if demos is None:
            raise ConfigError(f"--method {method} needs demonstrations; expected --expert DEMOS.")
        check_demonstrations(dataset, demos)
        settings = settings or (OTRSettings() if method == "otr" else SEABOSettings())
        rewards = otr_rewards(dataset, demos, settings) if method == "otr" else seabo_rewards(dataset, demos, settings)
        record.update(settings=asdict(settings), demonstrations=demos.where,
                      demonstrations_fingerprint=dataset_fingerprint(demos), demonstration_episodes=demos.num_episodes)
    metadata = copy.deepcopy(dataset.metadata)
    metadata.provenance = {"labelling": record, "source_provenance": dataset.metadata.provenance}
    return dataset.replace(rewards=rewards, metadata=metadata)
