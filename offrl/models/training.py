"""Training a dynamics ensemble with a held-out split; elites chosen on held-out error.

The recipe is MBPO's as OfflineRL-Kit runs it for MOPO/MOBILE/COMBO (offlinerlkit/dynamics/
ensemble_dynamics.py `train`, run_example/run_mopo.py): a held-out split of min(20%, 1000)
transitions, Gaussian negative log-likelihood with a 0.01 penalty on the learned log-variance
bounds, per-layer weight decay, Adam 1e-3, batch 256; each member keeps its best parameters on
held-out error (an improvement counts when it is over 1%), and training stops after 5 epochs
without one (or at `max_epochs`). The `num_elites` members with the lowest held-out MSE are the elites.

With `terminal_head` (for envs without a hand-written termination function) each member also
predicts a terminal logit, trained beside the Gaussian loss with binary cross-entropy on the
dataset's `terminals`; the held-out terminal and non-terminal rows report its accuracy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from offrl.errors import ConfigError, DatasetError
from offrl.models.ensemble import DynamicsEnsemble, DynamicsModel


@dataclass(frozen=True)
class DynamicsConfig:
    num_models: int = 7  # MBPO/MOPO ensemble size (OfflineRL-Kit run_mopo.py --n-ensemble)
    num_elites: int = 5  # run_mopo.py --n-elites
    hidden_dims: tuple[int, ...] = (200, 200, 200, 200)  # run_mopo.py --dynamics-hidden-dims
    weight_decay: tuple[float, ...] = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)  # per layer, run_mopo.py --dynamics-weight-decay
    learning_rate: float = 1e-3  # run_mopo.py --dynamics-lr
    batch_size: int = 256  # ensemble_dynamics.py train(batch_size=256)
    holdout_ratio: float = 0.2  # ensemble_dynamics.py train(holdout_ratio=0.2), at most max_holdout rows
    max_holdout: int = 1000  # ensemble_dynamics.py: holdout_size = min(int(n * 0.2), 1000)
    logvar_loss_coef: float = 0.01  # ensemble_dynamics.py train(logvar_loss_coef=0.01)
    max_epochs_since_update: int = 5  # run_mopo.py dynamics.train(..., max_epochs_since_update=5)
    max_epochs: int = 0  # 0: no cap besides the stopping rule (OfflineRL-Kit max_epochs=None)
    seed: int = 0
    # a terminal logit per member (offrl's addition, not MBPO's: the references use hand-written
    # termination functions); set by `--termination learned`, so it is part of the cache key
    terminal_head: bool = False
    terminal_positive_weight: float | None = None  # a terminal row's weight in the head's loss; None: terminal_positive_weight()

    def validate(self) -> None:
        if self.num_models <= 0 or not 0 < self.num_elites <= self.num_models:
            raise ConfigError(f"--num-elites is {self.num_elites} with --num-models {self.num_models}; "
                              "expected 1 <= elites <= models.")
        if len(self.weight_decay) != len(self.hidden_dims) + 1:
            raise ConfigError(f"The dynamics weight decay has {len(self.weight_decay)} values; expected one per layer "
                              f"({len(self.hidden_dims) + 1} for hidden dims {list(self.hidden_dims)}).")
        if not 0.0 < self.holdout_ratio < 1.0:
            raise ConfigError(f"--holdout-ratio is {self.holdout_ratio}; expected a number in (0, 1).")
        for name in ("batch_size", "max_epochs_since_update", "max_holdout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} is {getattr(self, name)}; expected a positive integer.")
        if self.max_epochs < 0:
            raise ConfigError(f"--max-epochs is {self.max_epochs}; expected 0 (no cap) or a positive integer.")
        weight = self.terminal_positive_weight
        if weight is not None and not weight > 0:
            raise ConfigError(f"The terminal positive weight is {weight}; expected a number > 0 (or none: the square-root rule).")


@dataclass
class TrainedDynamics:
    model: DynamicsModel
    holdout_mse: np.ndarray  # per member, on the held-out rows (raw units)
    epochs: int
    seconds: float
    num_train: int
    num_holdout: int
    holdout_rows: np.ndarray  # the dataset rows held out (never trained on)
    holdout_terminal: dict | None = None  # the terminal head's held-out accuracy (`terminal_accuracy`); None without one


def holdout_size(num_transitions: int, config: DynamicsConfig) -> int:
    return min(int(num_transitions * config.holdout_ratio), config.max_holdout)


def check_dataset_size(num_transitions: int, config: DynamicsConfig, where: str = "the dataset") -> None:
    held_out = holdout_size(num_transitions, config)
    if held_out < 1 or num_transitions - held_out < 2:
        needed = max(int(np.ceil(1 / config.holdout_ratio)), 3)
        raise DatasetError(
            f"{where} has {num_transitions} transitions, too few to hold out {config.holdout_ratio:.0%} for choosing "
            f"elites and train on the rest; expected at least {needed} transitions."
        )


def check_terminal_rows(terminals: np.ndarray | None, flag: str, where: str = "the dataset") -> None:
    """A terminal head needs terminal rows to learn from."""
    if terminals is None or not np.any(terminals):
        raise ConfigError(f"{flag} needs terminal rows to learn termination from, but {where} has none; "
                          "use --termination never if its episodes end only by time limit.")


def terminal_positive_weight(terminals: np.ndarray) -> float:
    """The weight of a terminal row in the head's cross-entropy: sqrt(non-terminal / terminal rows).
    Terminal rows are rare (4.5% of random Hopper-v5 rows, far fewer in D4RL's longer episodes), so
    unweighted the head mostly says "never" (recall 0.51 there); the full inverse ratio calls states
    near a terminal one terminal and cuts rollouts short (precision 0.45); the square root sits
    between (recall 0.93, precision 0.66: benchmarks/learned_termination.py)."""
    positives = float(np.sum(terminals))
    return float(np.sqrt(max(len(terminals) - positives, 1.0) / max(positives, 1.0))) if positives else 1.0


def terminal_accuracy(terminal_logit: np.ndarray, labels: np.ndarray, elites: np.ndarray) -> dict:
    """Held-out accuracy of the terminal head, per member and for the elites' mean probability (what
    rollouts threshold at 0.5): `recall` on terminal rows, `specificity` on non-terminal rows, and
    for the elites `precision`, the share of rows called terminal that are (what cuts rollouts
    short when low); None where the held-out split has no such row."""
    probability = 1.0 / (1.0 + np.exp(-np.asarray(terminal_logit, np.float64)))
    predicted = {"members": probability > 0.5, "elites": probability[elites].mean(0) > 0.5}
    labels = np.asarray(labels) > 0.5

    def rate(prediction, rows, value):
        return None if not rows.any() else np.mean(prediction[..., rows] == value, axis=-1).tolist()

    return {"terminal_rows": int(labels.sum()), "non_terminal_rows": int((~labels).sum()),
            "recall": rate(predicted["members"], labels, True), "specificity": rate(predicted["members"], ~labels, False),
            "elite_recall": rate(predicted["elites"], labels, True),
            "elite_specificity": rate(predicted["elites"], ~labels, False),
            "elite_precision": None if not predicted["elites"].any() else float(labels[predicted["elites"]].mean())}


def _weight_decay_loss(params: dict, decays: tuple[float, ...]) -> jax.Array:
    members = params["params"]["members"]
    return sum(decay * 0.5 * jnp.sum(members[f"layer_{index}"]["kernel"] ** 2) for index, decay in enumerate(decays))


@jax.jit
def _keep_improved(params: dict, best: dict, improved: jax.Array) -> dict:
    """Members that improved take their new parameters; the shared log-variance bounds follow the newest."""
    def pick(new, old):
        return jnp.where(improved.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)

    members = jax.tree.map(pick, params["params"]["members"], best["params"]["members"])
    return {"params": {**params["params"], "members": members}}


def train_dynamics(observations: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_observations: np.ndarray,
                   config: DynamicsConfig, log=None, terminals: np.ndarray | None = None) -> TrainedDynamics:
    """Train an ensemble on raw observations and actions already scaled to [-1, 1] (and, with
    `config.terminal_head`, the `terminals` flags)."""
    config.validate()
    count = len(rewards)
    check_dataset_size(count, config)
    if config.terminal_head:
        check_terminal_rows(terminals, "A dynamics model with a terminal head")
    started = time.perf_counter()
    inputs = np.concatenate([observations, actions], 1).astype(np.float32)
    columns = [next_observations - observations, rewards[:, None]]
    if config.terminal_head:  # the terminal label rides as the last target column
        columns.append(np.asarray(terminals, np.float32)[:, None])
    targets = np.concatenate(columns, 1).astype(np.float32)
    gaussian = slice(0, observations.shape[1] + 1)  # the target columns the Gaussian models
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(count)
    held_out = holdout_size(count, config)
    train_rows, holdout_rows = order[held_out:], order[:held_out]
    train_inputs, train_targets = inputs[train_rows], targets[train_rows]
    holdout_inputs, holdout_targets = jnp.asarray(inputs[holdout_rows]), jnp.asarray(targets[holdout_rows])
    mean = train_inputs.mean(0)
    std = train_inputs.std(0)
    std = np.where(std < 1e-12, 1.0, std).astype(np.float32)  # OfflineRL-Kit StandardScaler
    train_inputs = (train_inputs - mean) / std
    holdout_inputs = (holdout_inputs - mean) / std

    obs_dim = observations.shape[1]
    network = DynamicsEnsemble(obs_dim, config.hidden_dims, config.num_models, config.terminal_head)
    positive_weight = 1.0
    if config.terminal_head:
        positive_weight = config.terminal_positive_weight or terminal_positive_weight(targets[train_rows, -1])
    optimizer = optax.adam(config.learning_rate)

    @jax.jit
    def initial(key):  # one compiled call: eager Flax/Optax init compiles op by op (seconds on CPU)
        params = network.init(key, jnp.zeros((1, inputs.shape[1])))
        return params, optimizer.init(params)

    params, opt_state = initial(jax.random.PRNGKey(config.seed))

    def loss_fn(params, batch_inputs, batch_targets):
        mean_out, logvar, terminal_logit = network.apply(params, batch_inputs)
        gaussian_targets = batch_targets[..., gaussian]
        nll = (((mean_out - gaussian_targets) ** 2) * jnp.exp(-logvar)).mean(axis=(1, 2)).sum() + logvar.mean(axis=(1, 2)).sum()
        bounds = params["params"]["max_logvar"].sum() - params["params"]["min_logvar"].sum()
        loss = nll + config.logvar_loss_coef * bounds + _weight_decay_loss(params, config.weight_decay)
        if terminal_logit is not None:  # weighted binary cross-entropy, summed over members like the NLL
            labels = batch_targets[..., -1]
            weights = jnp.where(labels > 0.5, positive_weight, 1.0)
            loss += (optax.sigmoid_binary_cross_entropy(terminal_logit, labels) * weights).mean(axis=1).sum()
        return loss

    def step(carry, batch):
        params, opt_state = carry
        grads = jax.grad(loss_fn)(params, *batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), None

    @jax.jit
    def epoch(params, opt_state, batch_inputs, batch_targets):
        (params, opt_state), _ = jax.lax.scan(step, (params, opt_state), (batch_inputs, batch_targets))
        mean_out, _, _ = network.apply(params, holdout_inputs)
        return params, opt_state, ((mean_out - holdout_targets[:, gaussian]) ** 2).mean(axis=(1, 2))

    num_train = len(train_rows)
    batch_size = min(config.batch_size, num_train)
    batches = num_train // batch_size
    best_params = params
    best_mse = np.full(config.num_models, np.inf)
    epochs = since_update = 0
    while True:
        # each member sees its own shuffle of the training rows (OfflineRL-Kit: per-member permutation)
        index = np.stack([rng.permutation(num_train)[: batches * batch_size] for _ in range(config.num_models)])
        index = index.reshape(config.num_models, batches, batch_size).transpose(1, 0, 2)
        params, opt_state, mse = epoch(params, opt_state, train_inputs[index], train_targets[index])
        mse = np.asarray(mse)
        epochs += 1
        improved = (best_mse - mse) / np.where(np.isfinite(best_mse), best_mse, 1.0) > 0.01
        improved |= ~np.isfinite(best_mse)
        if improved.any():
            best_params = _keep_improved(params, best_params, jnp.asarray(improved))
            best_mse = np.where(improved, mse, best_mse)
            since_update = 0
        else:
            since_update += 1
        if log is not None:
            log(epochs, mse)
        if since_update >= config.max_epochs_since_update or (config.max_epochs and epochs >= config.max_epochs):
            break
    elites = np.argsort(best_mse)[: config.num_elites]
    model = DynamicsModel(params=best_params, input_mean=jnp.asarray(mean), input_std=jnp.asarray(std),
                          elites=jnp.asarray(elites, jnp.int32), observation_dim=obs_dim,
                          hidden_dims=tuple(config.hidden_dims), num_models=config.num_models,
                          terminal_head=config.terminal_head)
    holdout_terminal = None
    if config.terminal_head:
        _, _, terminal_logit = jax.jit(network.apply)(best_params, holdout_inputs)  # one compile, not one per op
        holdout_terminal = {**terminal_accuracy(np.asarray(terminal_logit), np.asarray(holdout_targets[:, -1]), elites),
                            "positive_weight": positive_weight}
    return TrainedDynamics(model=model, holdout_mse=best_mse, epochs=epochs, seconds=time.perf_counter() - started,
                           num_train=num_train, num_holdout=held_out, holdout_rows=holdout_rows,
                           holdout_terminal=holdout_terminal)
