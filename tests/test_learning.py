"""Each algorithm learns a real control task where imitation fails, and the test fails without
the algorithm's own mechanism.

Value-based algorithms train on `pendulum_mostly_random_dataset` (tests/conftest.py): 40
Pendulum-v1 episodes where 80% of the actions are uniform random and the rest come from a noisy
swing-up controller (mean return about -930). Behaviour cloning stays near -845 there, so a
return above the threshold needs the Q-function. %BC trains on `two_quality_pendulum`
(tests/learning_data.py): every fifth episode is the controller's (about -210), the others are
uniform random (about -1180); BC on all of it scores about -1080. The Decision Transformer
trains on the half-scripted `pendulum_dataset` and must follow its target return (its
docstring says why not the two-quality data).

Every threshold is below the lowest final return of three seeds (0, 1, 2) with a margin of at
least 150, so the tested seed (0) is not a lucky pick, and far above BC on the same data. It is
also above the broken variant of the algorithm (its mechanism switched off by the config in
BROKEN), so the test fails on it, except for CQL, Cal-QL and EDAC: these data do not need their
mechanism. CQL's and Cal-QL's penalties are tested on narrow controller data instead, where
switching them off fails; EDAC's diversity term (which has no gradient with Pendulum's one action
dimension) on a one-step task with two action dimensions, where diversity off fails. Each test's
docstring records the measurements; docs/learning-tests.md has the table, with wall times.
Small 64x64 networks and a few thousand updates keep each test under a minute on one core.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from offrl.algos import edac, get_algorithm
from offrl.data.dataset import Dataset
from offrl.evaluate.rollout import evaluate_policy
from offrl.train.offline import TrainConfig, prepare, train_offline
from offrl.types import Batch, Spec
from offrl.train.initial_state import init_state
from learning_data import NarrowTwoActionBandit, good_episode_mask, narrow_controller_pendulum, two_quality_pendulum


@dataclass(frozen=True)
class Case:
    data: str  # "mostly_random" (conftest's pendulum_mostly_random_dataset) or "two_quality"
    steps: int  # updates (SPOT: after its VAE pretraining)
    threshold: float  # final return over 10 evaluation episodes must exceed this
    overrides: dict[str, Any] = field(default_factory=dict)  # on top of 64x64 networks


CQL_SETTINGS = {
    # 10 sampled actions make each update ~30 critic passes; 2 keep the penalty's sign and the
    # test in budget. The reference's actor lr 1e-4 needs more updates here than 3e-4.
    "num_sampled_actions": 2, "actor_learning_rate": 3e-4, "normalize_observations": True,
}

CASES = {
    "bc": Case("mostly_random", 3_000, -750.0),  # an upper bound: BC must stay *below* it (the premise)
    # alpha = 2.5 is a D4RL setting where data are mostly good; with 80% random actions the BC
    # term pulls toward the noise (5k updates, seeds 0-2: alpha 2.5 -807/-817/-782, 10
    # -587/-703/-771, 20 -475/-656/-726, 50 -288/-288/-590; alpha 20 at 10k: -135/-158/-147).
    "td3bc": Case("mostly_random", 10_000, -500.0, {"alpha": 20.0}),
    # Expectile 0.9 and inverse temperature 10 (the paper's AntMaze values) and lr 1e-3: with the
    # locomotion 0.7 / 3.0 and lr 3e-4, 5k updates ended at -790/-445/-843 (states not yet standardised).
    "iql": Case("mostly_random", 6_000, -500.0, {"expectile": 0.9, "temperature": 10.0, "actor_learning_rate": 1e-3,
                                                "critic_learning_rate": 1e-3, "value_learning_rate": 1e-3}),
    "cql": Case("mostly_random", 5_000, -500.0, CQL_SETTINGS),
    "calql": Case("mostly_random", 5_000, -500.0, CQL_SETTINGS),
    # With 64x64 critics at the reference's 3e-4, AWAC needs ~14k updates to rank swing-up actions.
    "awac": Case("mostly_random", 5_000, -500.0, {"critic_learning_rate": 1e-3}),
    # ReBRAC's batch of 1024 is for D4RL's 1M transitions; this dataset has 8,000.
    "rebrac": Case("mostly_random", 5_000, -500.0, {"batch_size": 256}),
    # N = 10 deep critics is for D4RL's narrow datasets; SAC-N and EDAC need standardised states here.
    "sac_n": Case("mostly_random", 5_000, -500.0, {"num_critics": 5, "normalize_observations": True}),
    "edac": Case("mostly_random", 5_000, -500.0, {"num_critics": 5, "normalize_observations": True}),
    # 2k VAE updates (pretraining, apart from the steps), then 10k TD3 updates (at 5k: -840/-653/-750);
    # a 750x750 VAE is for D4RL-size data.
    "spot": Case("mostly_random", 10_000, -500.0, {"vae_steps": 2_000, "vae_hidden_dims": (64, 64)}),
    # The 8 controller episodes are the top 20%.
    "percent_bc": Case("two_quality", 3_000, -500.0, {"top_fraction": 0.2}),
}

# Each algorithm with its mechanism switched off, as measured for the docstrings (not run here).
BROKEN = {
    "td3bc": {"alpha": 0.0},  # no Q term in the actor: BC
    "iql": {"temperature": 0.0},  # every advantage weight exp(0 * A) = 1: BC
    "cql": {"cql_weight": 0.0},  # no conservative penalty: SAC with a deterministic backup
    "calql": {"cql_weight": 0.0},  # no (calibrated) conservative penalty
    "awac": {"awac_lambda": 1e6},  # weights exp(A / 1e6) = 1: BC
    "rebrac": {"actor_bc_coef": 1e6},  # Q term negligible in the actor: BC
    "sac_n": {"critic_learning_rate": 1e-12},  # critics frozen at their initialisation
    "edac": {"eta": 0.0},  # no diversity term: SAC-N
    "spot": {"support_weight": 1e6},  # Q term negligible in the actor: the VAE's support only
    "percent_bc": {"top_fraction": 1.0},  # no filter: BC
}


@pytest.fixture(scope="module")
def two_quality(pendulum_references) -> Dataset:
    return two_quality_pendulum(pendulum_references)


@pytest.fixture(scope="module")
def narrow_controller(pendulum_references) -> Dataset:
    return narrow_controller_pendulum(pendulum_references)


def final_return(name: str, dataset: Dataset, tmp_path, seed: int = 0, **changes) -> float:
    case = CASES[name]
    algo = get_algorithm(name)
    config = algo.Config(**{"hidden_dims": (64, 64), **case.overrides, **changes})
    train = TrainConfig(steps=case.steps, eval_every=case.steps, log_every=1_000, eval_episodes=10, seed=seed)
    result = train_offline(algo, config, dataset, train, tmp_path / f"{name}-{seed}", progress=False)
    assert np.isfinite(result.summary["updates_per_second"])
    return result.summary["final_return"]


def assert_learns(name: str, dataset: Dataset, tmp_path) -> None:
    score = final_return(name, dataset, tmp_path)
    threshold = CASES[name].threshold
    assert score > threshold, f"{name} reached {score:.0f}, expected above {threshold:.0f}"


@pytest.mark.slow
def test_bc_fails_on_mostly_random_data(pendulum_mostly_random_dataset, tmp_path):
    """The premise of the value-based tests: imitation alone does not swing the pendulum up here.
    Measured: -846/-878/-854 (seeds 0-2, 3k updates), so the bound is -750."""
    score = final_return("bc", pendulum_mostly_random_dataset, tmp_path)
    assert score < CASES["bc"].threshold, f"BC reached {score:.0f}: the data no longer needs a Q-function"


@pytest.mark.slow
def test_td3_bc_learns_where_bc_fails(pendulum_mostly_random_dataset, tmp_path):
    """TD3+BC (alpha 20): 10k updates: -135/-158/-147 (seeds 0-2), threshold -500.
    Broken, alpha = 0 (no Q term in the actor, BC): -846/-855/-856; the test fails on it."""
    assert_learns("td3bc", pendulum_mostly_random_dataset, tmp_path)


@pytest.mark.slow
def test_iql_learns_where_bc_fails(pendulum_mostly_random_dataset, tmp_path):
    """IQL: 6k updates: -122/-144/-133 (seeds 0-2), threshold -500.
    Broken, constant advantage weights (temperature 0, so the actor is BC): -823/-835/-782; the
    test fails on it. The V(s') target and the weights are checked against their formulas in
    tests/test_critic_targets.py."""
    assert_learns("iql", pendulum_mostly_random_dataset, tmp_path)


@pytest.mark.slow
def test_cql_learns_where_bc_fails(pendulum_mostly_random_dataset, tmp_path):
    """CQL: 5k updates: -123/-146/-214 (seeds 0-2), threshold -500.
    Broken, penalty off (cql_weight 0): -253/-147/-135, which still passes. These data do not
    need conservatism: the uniform random actions cover the whole action range, so
    off-policy SAC has no out-of-distribution actions to overestimate. On narrower data (20%
    controller, 80% N(0, 0.2) torque) neither version learned in 5k updates (CQL
    -804/-1149/-1100, penalty off -796/-953/-867), so the penalty is tested by its unit tests
    (tests/test_algos_zoo.py: the formula, and that it lowers Q on out-of-distribution actions)."""
    assert_learns("cql", pendulum_mostly_random_dataset, tmp_path)


@pytest.mark.slow
def test_calql_learns_where_bc_fails(pendulum_mostly_random_dataset, tmp_path):
    """Cal-QL: 5k updates: -123/-265/-217 (seeds 0-2), threshold -500.
    Broken, penalty off (cql_weight 0): -253/-147/-135, which still passes, as for CQL (see
    test_cql_learns_where_bc_fails); the calibrated penalty is tested in tests/test_calql.py."""
    assert_learns("calql", pendulum_mostly_random_dataset, tmp_path)


NARROW_THRESHOLD = -1100.0  # see the two tests below


@pytest.mark.slow
def test_cql_penalty_keeps_the_actor_on_narrow_data(narrow_controller, tmp_path):
    """CQL's mechanism, on narrow controller data (tests/learning_data.py, mean return -148),
    with CQL's learning-test settings and 5k updates: CQL -702/-867/-732 (seeds 0-2), threshold
    -1100. Broken, penalty off (cql_weight 0): -1532/-1481/-1499 (the actor chases actions the
    critic never saw; final q_uniform_mean rises to q_data_mean, -13 vs -12, where CQL keeps it
    11 below); the test fails on it. BC reaches -110/-134 here: this test is about the penalty,
    test_cql_learns_where_bc_fails about learning beyond imitation."""
    score = final_return("cql", narrow_controller, tmp_path)
    assert score > NARROW_THRESHOLD, f"CQL reached {score:.0f} on narrow data, expected above {NARROW_THRESHOLD:.0f}"


@pytest.mark.slow
def test_calql_penalty_keeps_the_actor_on_narrow_data(narrow_controller, tmp_path):
    """Cal-QL on the same narrow data and budget: -854/-854/-802 (seeds 0-2), threshold -1100.
    Broken, penalty off (cql_weight 0): -1532/-1481/-1499; the test fails on it."""
    score = final_return("calql", narrow_controller, tmp_path)
    assert score > NARROW_THRESHOLD, f"Cal-QL reached {score:.0f} on narrow data, expected above {NARROW_THRESHOLD:.0f}"


@pytest.mark.slow
def test_awac_learns_where_bc_fails(pendulum_mostly_random_dataset, tmp_path):
    """AWAC: 5k updates: -121/-132/-121 (seeds 0-2), threshold -500.
    Broken, constant advantage weights (awac_lambda 1e6: exp(A / 1e6) = 1, BC): -769/-855/-828;
    the test fails on it."""
    assert_learns("awac", pendulum_mostly_random_dataset, tmp_path)


@pytest.mark.slow
def test_rebrac_learns_where_bc_fails(pendulum_mostly_random_dataset, tmp_path):
    """ReBRAC: 5k updates: -132/-155/-143 (seeds 0-2), threshold -500.
    Broken, Q term negligible in the actor (actor_bc_coef 1e6, BC): -867/-896/-890; the test
    fails on it."""
    assert_learns("rebrac", pendulum_mostly_random_dataset, tmp_path)


@pytest.mark.slow
def test_sac_n_learns_where_bc_fails(pendulum_mostly_random_dataset, tmp_path):
    """SAC-N: 5k updates: -304/-147/-197 (seeds 0-2), threshold -500.
    Broken, critics frozen at initialisation (critic_learning_rate 1e-12): -1247/-1163/-1273;
    the test fails on it."""
    assert_learns("sac_n", pendulum_mostly_random_dataset, tmp_path)


@pytest.mark.slow
def test_edac_learns_where_bc_fails(pendulum_mostly_random_dataset, tmp_path):
    """EDAC: 5k updates: -300/-147/-186 (seeds 0-2), threshold -500.
    Broken, diversity term off (eta 0, i.e. SAC-N with 5 critics): -286/-147/-199, which still
    passes: as for CQL, these data have no out-of-distribution actions for the diversity to
    guard against (with 3 critics on narrower data neither learned in 5k updates: eta 1
    -842/-952/-802, eta 0 -840/-938/-794; on the narrow controller data of the CQL penalty test,
    5k updates, seeds 0-1: N = 5 eta 1 -1537/-1546, eta 0 -1544/-1545; N = 10 eta 1 -1534/-1542,
    eta 0 -1529/-1546). No Pendulum data can separate them: with one action dimension the
    diversity term has no gradient (each unit action-gradient is a sign; see
    test_edac_diversity_has_no_gradient_when_actions_are_one_dimensional), so EDAC trains as
    SAC-N here. Its mechanism is tested on a task with two action dimensions by
    test_edac_diversity_keeps_a_small_ensemble_on_the_data below."""
    assert_learns("edac", pendulum_mostly_random_dataset, tmp_path)


def edac_bandit_rewards(bandit: NarrowTwoActionBandit, eta: float, seeds: int = 3, updates: int = 1_000) -> np.ndarray:
    """True reward of EDAC's deterministic policy after `updates` updates, one per seed (vmapped)."""
    config = edac.Config(hidden_dims=(64, 64), num_critics=3, eta=eta, batch_size=256)
    spec = Spec(bandit.observation_dim, bandit.action_dim)
    observations, actions, rewards = map(jnp.asarray, (bandit.observations, bandit.actions, bandit.rewards))
    size = observations.shape[0]

    def step(state, key):
        index = jax.random.randint(key, (config.batch_size,), 0, size)
        batch = Batch(observations[index], actions[index], rewards[index], observations[index],
                      jnp.ones(config.batch_size))  # one-step task: every row terminal
        return edac.update(state, batch, config)[0], None

    def train(seed):
        state = init_state(edac, jax.random.PRNGKey(seed), spec, config)
        return jax.lax.scan(step, state, jax.random.split(jax.random.PRNGKey(seed + 100), updates))[0]

    states = jax.jit(jax.vmap(train))(jnp.arange(seeds))
    test_observations = np.random.default_rng(123).normal(size=(2_000, bandit.observation_dim)).astype(np.float32)
    policy_actions = jax.vmap(lambda state: edac.act(state, jnp.asarray(test_observations), jax.random.PRNGKey(0), True))(states)
    return np.array([bandit.true_reward(test_observations, np.asarray(a)).mean() for a in policy_actions])


@pytest.mark.slow
def test_edac_diversity_keeps_a_small_ensemble_on_the_data():
    """EDAC's own mechanism: with only 3 critics, the diversity term (eta 1, the reference's value)
    spreads the critics' action-gradients so that their minimum falls off outside the data, and
    the actor stays on it. Task: tests/learning_data.py NarrowTwoActionBandit (a one-step task
    whose critic, fitted on a narrow band of actions, extrapolates a reward that rises beyond it).
    1k updates, 64x64, seeds 0-2: true reward -0.040/-0.122/-0.043 (policy 0.20-0.22 from the
    behaviour action; the band's edge is 0.15), threshold -0.5.
    Broken, diversity off (eta 0, i.e. SAC-N with 3 critics): -1.246/-1.128/-0.847 (the policy
    leaves the band, 0.45-0.49 from the behaviour action); the test fails on it. Behaviour cloning
    would score about 0 here: this tests the term, test_edac_learns_where_bc_fails tests learning."""
    rewards = edac_bandit_rewards(NarrowTwoActionBandit(), eta=1.0)
    assert (rewards > -0.5).all(), rewards


@pytest.mark.slow
def test_spot_learns_where_bc_fails(pendulum_mostly_random_dataset, tmp_path):
    """SPOT: 2k VAE updates, then 10k: -244/-229/-205 (seeds 0-2), threshold -500.
    Broken, Q term negligible in the actor (support_weight 1e6, the VAE's support only):
    -888/-720/-902; the test fails on it."""
    assert_learns("spot", pendulum_mostly_random_dataset, tmp_path)


def test_percent_bc_trains_on_the_top_episodes_by_return(two_quality):
    """The rows the engine hands to %BC are exactly the top 20% of episodes by return, in order:
    here the 8 controller episodes (every fifth), not the first 8 nor any random one."""
    algo = get_algorithm("percent_bc")
    config = algo.Config(top_fraction=0.2, normalize_observations=False)
    _, data = prepare(algo, config, two_quality, "Pendulum-v1")
    returns = two_quality.episode_returns()
    top = np.sort(np.argsort(-returns)[:8])
    np.testing.assert_array_equal(top, np.flatnonzero(good_episode_mask(two_quality)))
    assert returns[top].min() > np.delete(returns, top).max()
    expected = np.concatenate([two_quality.episode(int(i))["observations"] for i in top])
    np.testing.assert_array_equal(np.asarray(data["observations"]), expected)


@pytest.mark.slow
def test_percent_bc_learns_from_the_good_episodes_where_bc_fails(two_quality, tmp_path):
    """%BC: top 20%, 3k updates: -122/-145/-133 (seeds 0-2), threshold -500.
    Broken, no filter (top_fraction 1.0, i.e. BC): -1043/-1110/-1091; the test fails on it."""
    assert_learns("percent_bc", two_quality, tmp_path)


@pytest.mark.slow
def test_dt_follows_its_target_return(pendulum_dataset, tmp_path):
    """Decision Transformer on `pendulum_dataset`: half of the actions scripted, half random, per
    step, so episode returns spread from -867 to -239 (mean about -550). 3k updates; the same
    policy evaluated on the same 10 episodes with a high (-150) and a low (-1200) target return,
    seeds 0-2: high -312/-339/-449, low -630/-625/-605 (gaps 318/286/156). Thresholds: high
    above -600, gap above 100. Broken, returns-to-go zeroed in training, so DT never learns to
    use them: high -414/-411/-457, low -502/-408/-474 (gaps 88/-3/17; untrained weights still
    read the target at evaluation, hence a gap of 88 on seed 0), so the test fails on it; with
    the returns-to-go ignored at evaluation too, the gap is 0. The gap's margins are narrower
    than the other tests' (56 below the worst seed, 12 above the broken seed 0).

    On `two_quality_pendulum` (controller or random, whole episodes) DT did not learn the
    conditioning at this budget: high -1286/-1318/-1316, low -1306/-1345/-1291 at 3k updates,
    high -1295, low -1322 at 15k (seed 0), i.e. BC's average action (BC there: -1080).
    """
    # Two blocks of width 32 over 5-step windows keep the test short on 2 CPU cores; the
    # reference's lr 1e-4 after a 10k-step warmup is for 100k updates. One timestep embedding for
    # every step: with one per step, 40 episodes are memorised.
    algo = get_algorithm("dt")
    config = algo.Config(hidden_dims=(32, 32), context_length=5, learning_rate=1e-3, warmup_steps=200, max_episode_steps=1)
    train = TrainConfig(steps=3_000, eval_every=3_000, log_every=1_000, eval_episodes=10, seed=0)
    policy = train_offline(algo, config, pendulum_dataset, train, tmp_path / "dt", progress=False).policy
    returns = {}
    for name, target in (("high", -150.0), ("low", -1200.0)):
        policy.state = policy.state.replace(target_return=jnp.float32(target))
        returns[name] = evaluate_policy(policy, "Pendulum-v1", 10, seed=100).mean_return
    assert returns["high"] > -600, f"DT with a high target reached only {returns['high']:.0f}"
    assert returns["high"] > returns["low"] + 100, f"DT ignores its target return: {returns}"
