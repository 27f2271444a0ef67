"""Monte-Carlo returns-to-go of every transition: G_t = r_t + gamma * G_{t+1} inside an episode.

Cal-QL (Nakamoto et al. 2023, "Cal-QL: Calibrated Offline RL Pre-Training for Efficient Online
Fine-Tuning") lower-bounds the conservative penalty's Q-values on policy actions by the return
of the behaviour policy from the dataset state; this is that return, estimated from the one
trajectory the dataset holds.

Episode ends. A terminal stops the sum (nothing follows the end of the MDP). An episode cut by a
time limit, or a trailing episode cut by the end of the data, has an unobserved tail: the
reference code (nakamotoo/Cal-QL `calc_return_to_go`, and CORL's `cal_ql.py` `get_return_to_go`)
sums only the observed rewards, i.e. the tail counts as 0, and so does this function by default.
That is a lower bound of the true return when rewards are non-negative (MuJoCo locomotion) but
an upper bound when they are negative (Pendulum), so a caller that knows better can pass
`tail_values`: the value added, discounted, after the last observed step of each episode that
did not end in a terminal (e.g. r_last / (1 - gamma), the sparse-reward rule of the reference).
"""

from __future__ import annotations

import numpy as np

from offrl.errors import DatasetError


def returns_to_go(
    rewards: np.ndarray,
    episode_starts: np.ndarray,
    terminals: np.ndarray,
    discount: float,
    tail_values: np.ndarray | None = None,
) -> np.ndarray:
    """Discounted return-to-go of every transition (float32, same length as `rewards`).

    `episode_starts`: first index of each episode (starting with 0, increasing). `terminals[t]`
    marks a transition after which the MDP ended. `tail_values[e]` (optional, one per episode)
    is the value bootstrapped after episode e's last step unless that step is terminal.
    """
    rewards = np.asarray(rewards, np.float64)
    terminals = np.asarray(terminals, bool)
    starts = np.asarray(episode_starts, np.int64)
    n = len(rewards)
    if len(terminals) != n:
        raise DatasetError(f"'terminals' has {len(terminals)} rows but 'rewards' has {n}; expected equal lengths.")
    if n and (starts.ndim != 1 or len(starts) == 0 or starts[0] != 0 or np.any(np.diff(starts) <= 0) or starts[-1] >= n):
        raise DatasetError(f"'episode_starts' must be increasing indices below {n} that begin with 0.")
    if not 0.0 <= discount <= 1.0:
        raise DatasetError(f"discount is {discount}; expected a value in [0, 1].")
    ends = np.append(starts[1:], n)
    if tail_values is None:
        tails = np.zeros(len(starts))
    else:
        tails = np.asarray(tail_values, np.float64)
        if tails.shape != (len(starts),):
            raise DatasetError(f"'tail_values' has shape {tails.shape}; expected one value per episode ({len(starts)}).")
    returns = np.empty(n, np.float64)
    for episode, (start, end) in enumerate(zip(starts, ends)):
        following = 0.0 if terminals[end - 1] else tails[episode]
        for t in range(end - 1, start - 1, -1):
            # A terminal inside an episode cannot occur in a valid Dataset; stopping there anyway
            # keeps the function right for raw arrays.
            following = rewards[t] + discount * (0.0 if terminals[t] else following)
            returns[t] = following
    return returns.astype(np.float32)
