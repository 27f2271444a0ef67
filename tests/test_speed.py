"""offrl.bench.speed and `offrl bench-speed`: the FLOP counting and the command's plumbing.

No time is asserted anywhere: only what is counted, what is refused, and what is printed.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import pytest

from offrl.cli import EXIT_BAD_INPUT, main
from offrl.bench import speed
from offrl.types import Batch


@dataclass(frozen=True)
class _Config:
    batch_size: int = 8


def _toy_algorithm():
    """An update with a (4 x 3) @ (3 x 5) product every step and a (8 x 6) @ (6 x 2) one every other step."""

    def update(state, batch, config):
        every_step = jnp.ones((4, 3)) @ state["w"]
        every_other = jax.lax.cond(
            state["step"] % 2 == 0,
            lambda: (batch.observations @ jnp.ones((6, 2))).sum(),
            lambda: jnp.zeros(()),
        )
        return {"w": state["w"] + every_step.sum() * 0 + every_other * 0, "step": state["step"] + 1}, {}

    return SimpleNamespace(update=update)


def _toy_data(rows: int = 32):
    return {"observations": jnp.ones((rows, 6)), "actions": jnp.ones((rows, 2)), "rewards": jnp.ones(rows),
            "next_observations": jnp.ones((rows, 6)), "dones": jnp.zeros(rows)}


def test_executed_matmuls_counts_only_the_cond_branch_taken():
    state = {"w": jnp.ones((3, 5)), "step": jnp.zeros((), jnp.int32)}
    dots, final = speed.executed_matmuls(_toy_algorithm(), _Config(), state, _toy_data(), updates=4)
    assert dots == Counter({(4, 3, 5): 1.0, (8, 6, 2): 0.5})
    assert int(final["step"]) == 4  # the state is carried from one update to the next
    assert speed.matmul_flops(dots) == 2 * 4 * 3 * 5 + 0.5 * 2 * 8 * 6 * 2


def test_static_count_takes_every_branch():
    """What XLA's cost analysis does, and why the benchmark counts executed work instead."""
    state = {"w": jnp.ones((3, 5)), "step": jnp.zeros((), jnp.int32)}
    closed = jax.make_jaxpr(lambda s, b: _toy_algorithm().update(s, b, _Config()))(state, Batch(**_toy_data(8)))
    static = Counter()
    speed._static_dots(closed.jaxpr.eqns, static)
    assert static == Counter({(4, 3, 5): 1, (8, 6, 2): 1})


def test_batched_dot_counts_as_independent_products():
    # (2 critics) x (256 x 23) @ (23 x 64): a batched dot_general is `batch` plain products.
    shape = speed._dot_shape((2, 256, 23), (2, 23, 64), (((2,), (1,)), ((0,), (0,))))
    assert shape == (2, 256, 23, 64)
    # Weight gradient: contraction over the batch axis (x^T @ dh).
    assert speed._dot_shape((256, 17), (256, 64), (((0,), (0,)), ((), ()))) == (1, 17, 256, 64)


def test_d3rlpy_settings_carry_offrl_network_sizes():
    assert speed.d3rlpy_settings("cql")["hidden_dims"] == [256, 256, 256]
    assert speed.d3rlpy_settings("iql")["hidden_dims"] == [256, 256]
    assert speed.d3rlpy_settings("rebrac")["batch_size"] == speed.BATCH_SIZE  # its default is 1024; compared at 256


def test_measure_d3rlpy_reports_an_interpreter_without_d3rlpy():
    try:
        import d3rlpy  # noqa: F401
    except ImportError:
        answer = speed.measure_d3rlpy(sys.executable, ["bc"], 1000, 2, [1], 1)
        assert "error" in answer and "exited" in answer["error"]
    else:
        pytest.skip("d3rlpy is installed in this interpreter")


@pytest.mark.parametrize("flags, named", [
    (["--steps", "0"], "--steps"),
    (["--algos", "nosuch"], "--algos"),
    (["--threads", "1,x"], "--threads"),
    (["--steps", "10", "--chunk", "20"], "--chunk"),
])
def test_bench_speed_refuses_bad_flags(flags, named, capsys):
    assert main(["bench-speed", *flags]) == EXIT_BAD_INPUT
    assert named in capsys.readouterr().err


def test_bench_speed_prints_a_row_per_algorithm(capsys):
    assert main(["bench-speed", "--algos", "bc", "--steps", "4", "--chunk", "2", "--transitions", "2000", "--no-extras"]) == 0
    out = capsys.readouterr().out
    assert "machine:" in out and "GFLOP/s" in out
    row = next(line for line in out.splitlines() if line.startswith("bc "))
    assert float(row.split()[2]) > 0  # updates/s
