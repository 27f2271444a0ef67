"""SynthER on a MuJoCo dataset (issue 19): do synthetic transitions look like the real ones, and do
their (s, a) -> s' follow the simulator?

    taskset -c 0 nice -n 19 python benchmarks/synther_mujoco.py --data-dir /work/suites/data \
        --training-steps 20000 --hidden-dims 512 512 512 --size 50000 \
        --augmented-out /tmp/synther_h/hopper-medium-synther.npz

1. The dataset is split as the dynamics ensemble splits it (offrl.models.training.train_dynamics:
   seed-0 permutation, min(20%, 1000) rows held out). SynthER (offrl.suites.synther, offrl's own
   code) is trained on the same training rows, so neither model has seen the held-out rows.
2. `--size` synthetic transitions are appended to the whole real dataset (offrl.suites.synther.
   append_synthetic: actions clipped, terminal = sample > 0.5, provenance with the synthetic rows);
   `--augmented-out` writes that dataset, which `offrl train ALGO --synthetic-ratio R` reads.
3. Realism: per-dimension mean and std gaps in real-std units; squared RBF MMD (bandwidth
   sqrt(dim) on standardised rows) to the held-out rows, beside a full-covariance Gaussian fitted
   to the training rows and beside as many real training rows (the noise floor of the statistic).
4. Dynamics: a Hopper/Walker-style env (observation = qpos[1:], qvel; x excluded) is set to each
   synthetic s with x = 0 (`env.unwrapped.set_state`) and stepped with the synthetic a. The
   simulator's s' and reward are compared with SynthER's, with the learned dynamics ensemble's
   prediction (the elites' mean; MBPO defaults, epochs capped by `--dynamics-epochs`, cached by
   offrl.train.model_rollouts.dataset_dynamics) on the same (s, a), with a shuffled s', and with
   s' = s. The same simulator check on held-out real rows shows how exactly `set_state`
   reproduces the logged s' (the floor), and the ensemble's error on those real rows is its
   error where it was meant to work.

Prints one JSON line per number and writes everything to `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import datetime, timezone

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from offrl.data.d4rl_io import write_npz
from offrl.data.fingerprint import dataset_fingerprint
from offrl.data.load import load_dataset
from offrl.data.registry import resolve_dataset
from offrl.data.transforms import fit_normalizer
from offrl.models.training import DynamicsConfig, holdout_size
from offrl.suites.synther import SynthERConfig, append_synthetic, train_transition_model, transition_matrix
from offrl.train.model_rollouts import dataset_dynamics, models_dir

RESULTS = {}


def report(name: str, value) -> None:
    RESULTS[name] = value
    print(json.dumps({name: value}), flush=True)


def rbf_mmd(x: np.ndarray, y: np.ndarray, bandwidth: float) -> float:
    """Biased squared MMD with a Gaussian kernel (as tests/test_synther.py)."""
    def kernel(a, b):
        distances = (a**2).sum(1)[:, None] + (b**2).sum(1)[None] - 2 * a @ b.T
        return np.exp(-distances / (2 * bandwidth**2))
    return float(kernel(x, x).mean() + kernel(y, y).mean() - 2 * kernel(x, y).mean())


def simulate(env_id: str, observations: np.ndarray, actions: np.ndarray):
    """Set the env to each (x = 0, qpos[1:], qvel) = s, step with a: (s', reward, terminated) per row."""
    env = gym.make(env_id)
    env.reset(seed=0)
    sim = env.unwrapped
    nq = sim.model.nq
    next_observations, rewards, terminated = [], [], []
    for observation, action in zip(observations, actions):
        qpos = np.concatenate([[0.0], observation[: nq - 1]])
        qvel = observation[nq - 1:]
        sim.set_state(qpos, qvel)
        next_observation, reward, done, _, _ = sim.step(action)  # unwrapped: no time limit in the way
        next_observations.append(next_observation)
        rewards.append(reward)
        terminated.append(done)
    return np.asarray(next_observations, np.float32), np.asarray(rewards, np.float32), np.asarray(terminated)


def errors(prefix: str, predicted: np.ndarray, target: np.ndarray, scale: np.ndarray, subset: np.ndarray | None = None) -> None:
    diff = predicted - target
    normalised = np.linalg.norm(diff / scale, axis=1)
    report(f"{prefix}_l2_mean", float(np.linalg.norm(diff, axis=1).mean()))
    report(f"{prefix}_l2_normalised_mean", float(normalised.mean()))
    report(f"{prefix}_l2_normalised_median", float(np.median(normalised)))
    report(f"{prefix}_l2_normalised_p90_p99", [float(np.percentile(normalised, 90)), float(np.percentile(normalised, 99))])
    if subset is not None:  # only the synthetic rows whose (s, a) lies inside the real data's box
        report(f"{prefix}_l2_normalised_mean_in_real_box", float(normalised[subset].mean()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="hopper-medium-v0")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--training-steps", type=int, default=20_000)
    parser.add_argument("--hidden-dims", type=int, nargs="+", default=[512, 512, 512])
    parser.add_argument("--diffusion-steps", type=int, default=128)
    parser.add_argument("--sampling-steps", type=int, default=128)
    parser.add_argument("--size", type=int, default=50_000, help="synthetic transitions appended")
    parser.add_argument("--check-rows", type=int, default=1000, help="synthetic rows set into the simulator")
    parser.add_argument("--dynamics-epochs", type=int, default=50, help="cap on the ensemble's epochs (MBPO defaults otherwise)")
    parser.add_argument("--models-dir", default=None, help="dynamics model cache (default: <default data dir>/models)")
    parser.add_argument("--augmented-out", default=None, help="write the real + synthetic dataset here (.npz)")
    parser.add_argument("--from-augmented", default=None,
                        help="measure the synthetic rows of an earlier --augmented-out instead of training (keeps --out's other numbers)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/synther_hopper.json")
    args = parser.parse_args()

    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    report("machine", {"platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count(),
                       "affinity": sorted(os.sched_getaffinity(0)), "nice": os.nice(0), "jax": jax.__version__,
                       "backend": jax.default_backend(), "load_average_at_start": os.getloadavg(), "started": started})
    dataset = resolve_dataset(args.dataset, data_dir=args.data_dir)
    env_id = dataset.metadata.env_id
    rows = transition_matrix(dataset)
    count, obs_dim, action_dim = dataset.num_transitions, dataset.observations.shape[1], dataset.actions.shape[1]

    # The dynamics ensemble's split (offrl/models/training.py train_dynamics), shared by SynthER.
    dynamics_config = DynamicsConfig(max_epochs=args.dynamics_epochs, seed=args.seed)
    order = np.random.default_rng(dynamics_config.seed).permutation(count)
    held_out = holdout_size(count, dynamics_config)
    holdout_rows, train_rows = order[:held_out], order[held_out:]
    report("data", {"dataset": args.dataset, "env_id": env_id, "transitions": count, "synther_training_rows": len(train_rows),
                    "held_out_rows": held_out})

    if args.from_augmented:
        # Re-measure the synthetic rows of an earlier run's --augmented-out (its training numbers stay).
        augmented = load_dataset(args.from_augmented)
        record = augmented.metadata.provenance["synther"]
        if record["source_fingerprint"]["sha256"] != dataset_fingerprint(dataset)["sha256"] or augmented.num_transitions != count + args.size:
            raise SystemExit(f"{args.from_augmented} is not {args.dataset} plus {args.size} synthetic rows")
        report("measured_from", {"path": args.from_augmented, "model": record["model"],
                                 "model_training_rows": record.get("model_training_rows")})
    else:
        config = SynthERConfig(hidden_dims=tuple(args.hidden_dims), training_steps=args.training_steps,
                               diffusion_steps=args.diffusion_steps, sampling_steps=args.sampling_steps, seed=args.seed)
        report("synther_config", {k: list(v) if isinstance(v, tuple) else v for k, v in vars(config).items()})
        clock = time.perf_counter()
        model = train_transition_model(rows[train_rows], config)
        report("synther_train_seconds", round(time.perf_counter() - clock, 1))
        report("synther_final_denoising_loss", model.final_loss)
        clock = time.perf_counter()
        augmented = append_synthetic(dataset, model, args.size)
        report("synther_sample_seconds", round(time.perf_counter() - clock, 1))
        if args.augmented_out:
            report("augmented_written", str(write_npz(augmented, args.augmented_out)))
    synthetic = transition_matrix(augmented)[count:]
    train_real, holdout_real = rows[train_rows], rows[holdout_rows]

    # Moments, in units of the real data's per-dimension std.
    names = ([f"s{i}" for i in range(obs_dim)] + [f"a{i}" for i in range(action_dim)] + ["r"]
             + [f"s'{i}" for i in range(obs_dim)] + ["terminal"])
    scale = train_real.std(0) + 1e-6
    mean_gap = np.abs(synthetic.mean(0) - train_real.mean(0)) / scale
    std_gap = np.abs(synthetic.std(0) - train_real.std(0)) / scale
    report("mean_gap_in_std", dict(zip(names, np.round(mean_gap, 4).tolist())))
    report("std_gap_in_std", dict(zip(names, np.round(std_gap, 4).tolist())))
    report("mean_gap_max", {"value": float(mean_gap.max()), "dimension": names[int(mean_gap.argmax())]})
    report("std_gap_max", {"value": float(std_gap.max()), "dimension": names[int(std_gap.argmax())]})
    report("terminal_rate", {"real": float(dataset.terminals.mean()), "synthetic": float(synthetic[:, -1].mean())})

    # MMD to the held-out rows: SynthER vs a fitted Gaussian vs real training rows (the floor).
    rng = np.random.default_rng(args.seed)
    standardise = lambda block: (block - train_real.mean(0)) / scale  # noqa: E731
    bandwidth = float(np.sqrt(rows.shape[1]))
    each = min(held_out, len(synthetic))
    gaussian = rng.multivariate_normal(train_real.mean(0), np.cov(train_real.T), size=each)
    report("mmd_to_held_out", {
        "synther": rbf_mmd(standardise(holdout_real), standardise(synthetic[rng.choice(len(synthetic), each, replace=False)]), bandwidth),
        "fitted_gaussian": rbf_mmd(standardise(holdout_real), standardise(gaussian), bandwidth),
        "real_training_rows": rbf_mmd(standardise(holdout_real), standardise(train_real[rng.choice(len(train_real), each, replace=False)]), bandwidth),
        "held_out_rows": held_out, "other_rows": each, "bandwidth": bandwidth,
    })

    # Dynamics: the simulator set to synthetic and held-out real (s, a).
    check = min(args.check_rows, args.size)
    syn_obs, syn_act = augmented.observations[count:count + check], augmented.actions[count:count + check]
    syn_next, syn_reward = augmented.next_observations[count:count + check], augmented.rewards[count:count + check]
    syn_terminal = augmented.terminals[count:count + check]
    clock = time.perf_counter()
    sim_next, sim_reward, sim_terminal = simulate(env_id, syn_obs, syn_act)
    real_obs, real_act = dataset.observations[holdout_rows], dataset.actions[holdout_rows]
    real_next, real_reward = dataset.next_observations[holdout_rows], dataset.rewards[holdout_rows]
    sim_real_next, sim_real_reward, _ = simulate(env_id, real_obs, real_act)
    report("simulate_seconds", round(time.perf_counter() - clock, 1))
    state_scale = dataset.observations.std(0) + 1e-6
    # Synthetic (s, a) inside the real training rows' per-dimension [min, max] box, and rows far out.
    inputs_real = np.concatenate([train_real[:, :obs_dim], train_real[:, obs_dim:obs_dim + action_dim]], 1)
    inputs_syn = np.concatenate([syn_obs, syn_act], 1)
    in_box = np.all((inputs_syn >= inputs_real.min(0)) & (inputs_syn <= inputs_real.max(0)), axis=1)
    z_syn = np.abs(standardise(synthetic))[:, :-1]  # every field but the terminal flag
    z_held = np.abs(standardise(holdout_real))[:, :-1]
    report("outliers", {"synthetic_rows_checked_in_real_box": float(in_box.mean()),
                        "synthetic_rows_max_abs_z_over_5": float((z_syn.max(1) > 5).mean()),
                        "held_out_real_rows_max_abs_z_over_5": float((z_held.max(1) > 5).mean())})
    report("dynamics_rows", {"synthetic": check, "held_out_real": held_out})
    shuffle = rng.permutation(check)
    errors("next_state_error_synther_vs_simulator", syn_next, sim_next, state_scale, in_box)
    errors("next_state_error_shuffled_vs_simulator", syn_next[shuffle], sim_next, state_scale, in_box)
    errors("next_state_error_no_change_vs_simulator", syn_obs, sim_next, state_scale, in_box)
    errors("next_state_error_simulator_vs_logged_on_held_out_real", sim_real_next, real_next, state_scale)

    normalizer = fit_normalizer(dataset, False, False, None, None)
    clock = time.perf_counter()
    dynamics, meta, reused = dataset_dynamics(dataset, normalizer, dynamics_config,
                                              cache_dir=args.models_dir or models_dir(), dataset_name=args.dataset)
    report("dynamics_model", {"directory": meta["directory"], "reused_from_cache": reused, "epochs": meta["epochs"],
                              "train_seconds": meta["train_seconds"], "num_train": meta["num_train"],
                              "holdout_mse_per_member": meta["holdout_mse"], "load_or_train_seconds": round(time.perf_counter() - clock, 1)})

    @jax.jit
    def elite_mean(observations, actions):
        mean, _ = dynamics.predict(observations, actions)
        return mean[dynamics.elites].mean(0)

    def ensemble(observations, actions):
        scaled = np.clip(normalizer.scale_actions(actions), -1.0, 1.0).astype(np.float32)
        prediction = np.asarray(elite_mean(jnp.asarray(observations, jnp.float32), jnp.asarray(scaled)))
        return prediction[:, :-1], prediction[:, -1]

    model_syn_next, model_syn_reward = ensemble(syn_obs, syn_act)
    model_real_next, model_real_reward = ensemble(real_obs, real_act)
    errors("next_state_error_ensemble_vs_simulator_on_synthetic", model_syn_next, sim_next, state_scale, in_box)
    errors("next_state_error_ensemble_vs_logged_on_held_out_real", model_real_next, real_next, state_scale)

    reward_std = float(dataset.rewards.std())
    report("reward_abs_error", {
        "real_reward_std": reward_std,
        "synther_vs_simulator": float(np.abs(syn_reward - sim_reward).mean()),
        "shuffled_vs_simulator": float(np.abs(syn_reward[shuffle] - sim_reward).mean()),
        "synther_vs_simulator_in_real_box": float(np.abs(syn_reward - sim_reward)[in_box].mean()),
        "ensemble_vs_simulator_on_synthetic_in_real_box": float(np.abs(model_syn_reward - sim_reward)[in_box].mean()),
        "ensemble_vs_simulator_on_synthetic": float(np.abs(model_syn_reward - sim_reward).mean()),
        "ensemble_vs_logged_on_held_out_real": float(np.abs(model_real_reward - real_reward).mean()),
        "simulator_vs_logged_on_held_out_real": float(np.abs(sim_real_reward - real_reward).mean()),
    })
    report("terminal_agreement_synther_vs_simulator", {
        "agree": float((syn_terminal == sim_terminal).mean()), "simulator_terminal_rate": float(sim_terminal.mean()),
        "synthetic_terminal_rate": float(syn_terminal.mean())})
    report("finished", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    report("load_average_at_end", os.getloadavg())
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    command = "python benchmarks/synther_mujoco.py " + " ".join(os.sys.argv[1:])
    earlier = {}
    if args.from_augmented and os.path.exists(args.out):  # keep the training run's numbers and command
        earlier = json.load(open(args.out))
        command = [*np.atleast_1d(earlier.pop("command")).tolist(), command]
        earlier.setdefault("machine_of_training_run", earlier.pop("machine", None))
    with open(args.out, "w") as handle:
        json.dump({"command": command, **earlier, **RESULTS}, handle, indent=1)
        handle.write("\n")


if __name__ == "__main__":
    main()
