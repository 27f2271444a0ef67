"""COptiDICE: offline constrained RL by stationary distribution correction estimation (Lee et al.
2022, "COptiDICE: Offline Constrained Reinforcement Learning via Stationary Distribution
Correction Estimation"; OSRL's COptiDICE, after deepmind/constrained_optidice).

No Q-function and no policy gradient: it estimates the ratio w(s, a) = d_π(s, a) / d_D(s, a) of
the best constrained policy's discounted state-action distribution to the data's, then clones the
data weighted by w. With ν(s) a state function (the Lagrangian dual of the Bellman flow
constraints) and λ >= 0 the cost multiplier:
    e(s, a, s') = r - λ c + γ (1 - done) ν(s') - ν(s)
    w(s, a)    = relu((f')^-1(e / α))        (closed form; f the soft-χ² divergence by default)
    ν:  min (1 - γ) E_s0[ν(s0)] + E_D[w e - α f(w)]
The cost of the policy d_π is estimated from above (the data give d_π only through w, so the
estimate is made robust over distributions within KL ε of it): a state function χ and a
temperature τ give
    ℓ = (1 - γ) χ(s0) + w (c + γ (1 - done) χ(s') - χ(s)),  q = B softmax(ℓ / τ) over the batch
    χ:  min E[q ℓ];   τ: min τ (ε - KL(q));   cost estimate Ĉ = E[q w c]
    λ:  min λ (limit - Ĉ)   (λ rises while the estimated cost is above the limit)
    π:  max E[w log π(a | s)]   (weighted BC; w recomputed with the updated ν)
λ = softplus(·) and τ = softplus(·) of raw scalars that start at 1, each network group an ensemble
whose value is its minimum (OSRL's EnsembleQCritic with no action input). E_s0 comes from the
engine's `initial_state_weights` (1 / p on episodes' first rows: OSRL's is_init / proportion).

Defaults: OSRL `examples/configs/coptidice_configs.py` (COptiDICETrainConfig) and
`osrl/algorithms/coptidice.py`. Differences, said plainly:
- The limit. OSRL compares Ĉ, an average cost per step under d_π (E_D[w] = 1), with qc_thres =
  κ (1 - γ^T) / ((1 - γ) T), a discounted cost *sum*: 1 / (1 - γ) = 100 times looser than κ means.
  Here the limit is κ (1 - γ^T) / T, the normalised discounted cost of paying κ / T per step, in
  Ĉ's units (the paper's ĉ; deepmind/constrained_optidice compares cost_ub with per-step
  thresholds). `--cost-limit-units discounted_sum` restores OSRL's (on the torque-cost test data
  it never binds: λ decays to 0.001, docs/safe-rl.md).
- Acting. OSRL fits an unsquashed Gaussian N(μ(s), σ(s)) to the data's actions but acts tanh(μ),
  which plays a cloned action 1 as 0.76; here the mean is clipped to the action box instead.
- The BC noise (0.1 × std on states and actions, OSRL's update) uses the batch's std, not the
  whole dataset's.
- ν(s') and χ(s') are kept after a time-limit cut (`dones` marks terminals only); OSRL's `done`
  also drops them at timeouts.
- `constrained=False` freezes λ at 0: OptiDICE on rewards alone, the broken variant.

Engine hooks: `EXTRA_FIELDS = ("costs", "initial_state_weights")`; data without costs is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training.train_state import TrainState

from offrl.errors import ConfigError
from offrl.nets import CriticEnsemble, TanhGaussianPolicy
from offrl.nets.policies import gaussian_log_prob
from offrl.types import Batch, Spec

NAME = "coptidice"
DESCRIPTION = "COptiDICE: weighted BC with stationary-distribution ratios of the best policy within a cost limit."
PAPER = "Lee et al. 2022, COptiDICE: Offline Constrained Reinforcement Learning via Stationary Distribution Correction Estimation"
EXTRA_FIELDS = ("costs", "initial_state_weights")
F_DIVERGENCES = ("softchi", "chi2", "kl")
COST_LIMIT_UNITS = ("per_step", "discounted_sum")
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # osrl/common/net.py SquashedGaussianMLPActor


@dataclass(frozen=True)
class Config:
    actor_learning_rate: float = 1e-4  # OSRL examples/configs/coptidice_configs.py actor_lr
    critic_learning_rate: float = 1e-4  # OSRL coptidice_configs.py critic_lr (ν and χ networks)
    scalar_learning_rate: float = 1e-4  # OSRL coptidice_configs.py scalar_lr (λ and τ)
    hidden_dims: tuple[int, ...] = (256, 256)  # OSRL coptidice_configs.py a_hidden_sizes, c_hidden_sizes
    num_nu: int = 2  # ν networks, value = their minimum (OSRL coptidice_configs.py num_nu)
    num_chi: int = 2  # χ networks (OSRL coptidice_configs.py num_chi)
    alpha: float = 0.5  # weight of the f-divergence to the data (OSRL coptidice_configs.py alpha)
    f_divergence: str = "softchi"  # OSRL coptidice_configs.py f_type
    cost_ub_epsilon: float = 0.01  # KL radius of the cost upper bound; 0: plain E[w c] (OSRL coptidice_configs.py)
    target_cost: float = 10.0  # κ: cost per episode (OSRL coptidice_configs.py cost_limit)
    max_episode_steps: int = 300  # T in the limit (OSRL coptidice_configs.py episode_len; per task there)
    cost_limit_units: str = "per_step"  # "discounted_sum": OSRL's qc_thres (module docstring)
    constrained: bool = True  # False: λ frozen at 0, costs ignored (the broken variant)
    bc_noise: float = 0.1  # state and action noise in the BC step, x their std (OSRL coptidice.py update)
    batch_size: int = 512  # OSRL coptidice_configs.py
    discount: float = 0.99  # OSRL coptidice_configs.py gamma
    reward_scale: float = 0.1  # rewards are multiplied by this (OSRL coptidice_configs.py; cost_scale 1)
    normalize_observations: bool = False  # OSRL's TransitionDataset feeds raw states
    normalize_rewards: bool = False  # reward_scale instead

    def __post_init__(self):
        if self.f_divergence not in F_DIVERGENCES:
            raise ConfigError(f"--f-divergence is {self.f_divergence!r}; expected one of {', '.join(F_DIVERGENCES)}.")
        if self.cost_limit_units not in COST_LIMIT_UNITS:
            raise ConfigError(f"--cost-limit-units is {self.cost_limit_units!r}; expected one of {', '.join(COST_LIMIT_UNITS)}.")
        if not 0.0 < self.discount < 1.0:  # d_π is normalised by 1 - γ: (1 - γ) E[ν(s0)] needs γ < 1
            raise ConfigError(f"--discount is {self.discount}; expected a value in (0, 1).")
        for name in ("num_nu", "num_chi", "max_episode_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} is {getattr(self, name)}; expected a positive integer.")
        for name in ("alpha", "cost_ub_epsilon", "bc_noise"):
            value = getattr(self, name)
            if not (value >= 0 and value < float("inf")) or (name == "alpha" and value == 0):
                raise ConfigError(f"--{name.replace('_', '-')} is {value}; expected a finite "
                                  f"{'positive' if name == 'alpha' else 'non-negative'} number.")


@struct.dataclass
class State:
    actor: TrainState
    critics: TrainState  # the ν networks, then the χ networks: one vmapped ensemble of state functions
    scalars: TrainState  # raw λ and τ; each is softplus(raw)
    rng: jax.Array
    num_nu: int = struct.field(pytree_node=False, default=2)


def f_divergence(kind: str):
    """(f, (f')^-1) of the divergence between d_π and d_D (OSRL coptidice.py get_f_div_fn)."""
    if kind == "chi2":
        return (lambda x: 0.5 * (x - 1.0) ** 2), (lambda y: y + 1.0)
    if kind == "kl":
        return (lambda x: x * jnp.log(x + 1e-10)), (lambda y: jnp.exp(y - 1.0))
    # soft-χ²: KL's x log x - x + 1 below 1 (finite slope at 0), χ² above (linear inverse, no blow-up).
    return ((lambda x: jnp.where(x < 1.0, x * (jnp.log(x + 1e-10) - 1.0) + 1.0, 0.5 * (x - 1.0) ** 2)),
            (lambda y: jnp.where(y < 0.0, jnp.exp(jnp.minimum(y, 0.0)), y + 1.0)))


def cost_limit(config: Config) -> float:
    """The limit on Ĉ for κ per T-step episode (module docstring: per step, or OSRL's discounted sum)."""
    gamma, steps = config.discount, config.max_episode_steps
    per_step = config.target_cost * (1.0 - gamma**steps) / steps
    return per_step if config.cost_limit_units == "per_step" else per_step / (1.0 - gamma)


def init(key: jax.Array, spec: Spec, config: Config) -> State:
    actor_key, critic_key, rng = jax.random.split(key, 3)
    observations = jnp.zeros((1, spec.observation_dim))
    actor = TanhGaussianPolicy(spec.action_dim, config.hidden_dims, LOG_STD_MIN, LOG_STD_MAX)
    critics = CriticEnsemble(config.hidden_dims, config.num_nu + config.num_chi)
    raw_scalars = {"multiplier": jnp.ones((), jnp.float32), "temperature": jnp.ones((), jnp.float32)}  # OSRL torch.ones(1)
    return State(
        actor=TrainState.create(apply_fn=actor.apply, params=actor.init(actor_key, observations),
                                tx=optax.adam(config.actor_learning_rate)),
        critics=TrainState.create(apply_fn=critics.apply, params=critics.init(critic_key, observations, observations[:, :0]),
                                  tx=optax.adam(config.critic_learning_rate)),
        scalars=TrainState.create(apply_fn=None, params=raw_scalars, tx=optax.adam(config.scalar_learning_rate)),
        rng=rng, num_nu=config.num_nu,
    )


def multiplier(state: State, config: Config) -> jax.Array:
    return jax.nn.softplus(state.scalars.params["multiplier"]) if config.constrained else jnp.zeros((), jnp.float32)


def state_functions(state: State, params: dict, observations: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(ν(s), χ(s)): each group's minimum over its networks."""
    values = state.critics.apply_fn(params, observations, observations[..., :0])
    return values[:state.num_nu].min(axis=0), values[state.num_nu:].min(axis=0)


def ratios(state: State, params: dict, batch: Batch, lagrange: jax.Array, config: Config):
    """(e, w, ν(s), χ(s), χ(s')): the advantage e of ν and the closed-form ratio w at each transition."""
    size = batch.observations.shape[0]
    nu, chi = state_functions(state, params, jnp.concatenate([batch.observations, batch.next_observations]))
    not_done = 1.0 - batch.dones
    advantage = (batch.rewards * config.reward_scale - lagrange * batch.costs
                 + config.discount * not_done * nu[size:] - nu[:size])
    weights = jax.nn.relu(f_divergence(config.f_divergence)[1](advantage / config.alpha))
    return advantage, weights, nu[:size], chi[:size], chi[size:]


def update(state: State, batch: Batch, config: Config) -> tuple[State, dict[str, jax.Array]]:
    rng, state_noise_key, action_noise_key = jax.random.split(state.rng, 3)
    f = f_divergence(config.f_divergence)[0]
    lagrange = multiplier(state, config)
    temperature = jax.nn.softplus(state.scalars.params["temperature"])
    gamma, size = config.discount, batch.observations.shape[0]

    def critic_loss_fn(params):
        advantage, weights, nu, chi, next_chi = ratios(state, params, batch, lagrange, config)
        nu_loss = (1.0 - gamma) * jnp.mean(batch.initial_state_weights * nu) + jnp.mean(
            weights * advantage - config.alpha * f(weights))
        fixed_weights = jax.lax.stop_gradient(weights)
        if config.cost_ub_epsilon == 0.0:
            chi_loss = kl = jnp.zeros(())
            cost_estimate = jnp.mean(fixed_weights * batch.costs)
        else:
            # The worst reweighting q of the batch within KL ε (τ its dual): the gradient reaches χ
            # through both ℓ and q, as in the references.
            ell = (1.0 - gamma) * batch.initial_state_weights * chi + fixed_weights * (
                batch.costs + gamma * (1.0 - batch.dones) * next_chi - chi)
            logits = ell / temperature
            reweighting = jax.nn.softmax(logits) * size
            log_reweighting = jax.nn.log_softmax(logits) + jnp.log(size)
            kl = jnp.mean(reweighting * log_reweighting - reweighting + 1.0)
            cost_estimate = jnp.mean(reweighting * fixed_weights * batch.costs)
            chi_loss = jnp.mean(reweighting * ell)
        aux = (nu_loss, chi_loss, jax.lax.stop_gradient(kl), jax.lax.stop_gradient(cost_estimate), advantage, fixed_weights)
        return nu_loss + chi_loss, aux  # disjoint parameters: one Adam step is the two references' steps

    (_, (nu_loss, chi_loss, kl, cost_estimate, advantage, weights)), critic_grads = jax.value_and_grad(
        critic_loss_fn, has_aux=True)(state.critics.params)
    critics = state.critics.apply_gradients(grads=critic_grads)

    limit = cost_limit(config)

    def scalar_loss_fn(raw):
        temperature_loss = jax.nn.softplus(raw["temperature"]) * (config.cost_ub_epsilon - kl)
        multiplier_loss = jax.nn.softplus(raw["multiplier"]) * (limit - cost_estimate) if config.constrained else 0.0
        return temperature_loss + multiplier_loss

    scalars = state.scalars.apply_gradients(grads=jax.grad(scalar_loss_fn)(state.scalars.params))

    # Policy: w from the updated ν and this step's λ (OSRL recomputes _optimal_w after the ν step).
    new_weights = jax.lax.stop_gradient(ratios(state, critics.params, batch, lagrange, config)[1])
    noisy_observations = batch.observations + config.bc_noise * batch.observations.std(axis=0) * jax.random.normal(
        state_noise_key, batch.observations.shape)
    noisy_actions = batch.actions + config.bc_noise * batch.actions.std(axis=0) * jax.random.normal(
        action_noise_key, batch.actions.shape)

    def actor_loss_fn(params):
        mean, log_std = state.actor.apply_fn(params, noisy_observations, method=TanhGaussianPolicy.distribution_params)
        return -jnp.mean(new_weights * gaussian_log_prob(mean, log_std, noisy_actions))

    actor_loss, actor_grads = jax.value_and_grad(actor_loss_fn)(state.actor.params)
    actor = state.actor.apply_gradients(grads=actor_grads)

    metrics = {
        "nu_loss": nu_loss,
        "chi_loss": chi_loss,
        "bellman_loss": jnp.mean(advantage**2),  # OSRL's td_error: e's mean square (reads s' unless done)
        "actor_loss": actor_loss,
        "multiplier": lagrange,
        "temperature": temperature,
        "cost_estimate": cost_estimate,
        "cost_limit": jnp.asarray(limit, jnp.float32),
        "kl": kl,
        "f_divergence": jnp.mean(f(weights)),
        "w_mean": jnp.mean(weights),
        "w_max": jnp.max(weights),
    }
    return state.replace(actor=actor, critics=critics, scalars=scalars, rng=rng), metrics


def act(state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    """The policy's mean, clipped to [-1, 1]; with `deterministic=False`, a Gaussian sample, clipped."""
    mean, log_std = state.actor.apply_fn(state.actor.params, observations, method=TanhGaussianPolicy.distribution_params)
    if not deterministic:
        mean = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
    return jnp.clip(mean, -1.0, 1.0)
