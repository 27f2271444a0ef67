"""Public dataset names (d4rl/..., Minari ids) and `offrl datasets download`.

Downloads are tested against a loopback HTTP server the test starts (http.server in a thread),
serving a small D4RL-layout file; Minari's remote is replaced at its API boundary
(`minari.download_dataset`). Nothing here reaches the network."""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import threading
from pathlib import Path

import h5py
import minari
import numpy as np
import pytest

from offrl.cli import main
from offrl.data.minari_io import write_minari
from offrl.data.public_names import MINARI_IDS, all_public_names, d4rl_names, parse_public_name
from offrl.data.registry import D4RL_ENV_IDS, D4RL_REFERENCE_SCORES, datasets_root, list_datasets, resolve_dataset
from offrl.errors import DatasetError

from dataset_helpers import make_random_dataset

D4RL_FILE = "hopper_medium_replay-v2.hdf5"


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, err, *needles):
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("offrl: error:"), err
    for needle in needles:
        assert needle in lines[0], lines[0]


def write_d4rl_file(path: Path, transitions: int = 300, obs_dim: int = 11, action_dim: int = 3, drop: str | None = None,
                    short: str | None = None) -> Path:
    """Hopper-shaped D4RL layout: flat arrays, an episode timeout every 100 steps, one terminal."""
    rng = np.random.default_rng(0)
    arrays = {
        "observations": rng.normal(size=(transitions, obs_dim)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(transitions, action_dim)).astype(np.float32),
        "rewards": rng.normal(size=transitions).astype(np.float32),
        "terminals": np.zeros(transitions, bool),
        "timeouts": np.zeros(transitions, bool),
    }
    arrays["timeouts"][99::100] = True
    arrays["terminals"][250] = True
    if short:
        arrays[short] = arrays[short][:-5]
    with h5py.File(path, "w") as file:
        for key, value in arrays.items():
            if key != drop:
                file.create_dataset(key, data=value)
    return path


class Server:
    """A loopback HTTP server over `directory`; `mode` changes how it answers."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.mode = "ok"
        self.requests = 0
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(directory), **kwargs)

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                server.requests += 1
                if server.mode == "error":
                    self.send_error(500, "Internal Server Error")
                    return
                if server.mode == "truncated":
                    payload = (directory / self.path.lstrip("/")).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/mirror"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def d4rl_server(tmp_path, monkeypatch):
    mirror = tmp_path / "served" / "mirror"
    mirror.mkdir(parents=True)
    write_d4rl_file(mirror / D4RL_FILE)
    server = Server(tmp_path / "served")
    monkeypatch.setenv("OFFRL_D4RL_URL", server.url)
    yield server, mirror / D4RL_FILE
    server.close()


def nothing_registered() -> None:
    root = datasets_root()
    assert [row["name"] for row in list_datasets() if row["name"] != "default"] == []
    leftovers = [path.name for path in root.iterdir()] if root.exists() else []
    assert [name for name in leftovers if name.startswith(".")] == [], leftovers  # no temporary files left


# ------------------------------------------------------------------------------------ names
def test_every_d4rl_gym_name_and_minari_id_is_known():
    names = all_public_names()
    assert len(d4rl_names()) == 24
    for env in ("hopper", "halfcheetah", "walker2d", "ant"):
        for level in ("random", "medium", "medium-replay", "medium-expert", "expert", "full-replay"):
            public = parse_public_name(f"d4rl/{env}-{level}-v2")
            assert public is not None and public.kind == "d4rl"
            assert public.file_name == f"{env}_{level.replace('-', '_')}-v2.hdf5"
            assert public.preset_key == f"{env}-{level}-v2"
    assert {"mujoco/hopper/medium-v0", "D4RL/antmaze/umaze-v1"} <= set(MINARI_IDS) <= set(names)
    assert parse_public_name("D4RL/antmaze/umaze-v1").preset_key == "antmaze-umaze-v2"
    assert parse_public_name("mujoco/hopper/medium-v0").preset_key is None
    assert parse_public_name("d4rl/hopper-medium-v1") is None  # only v2 of the gym files


@pytest.mark.parametrize("name", all_public_names())
def test_absent_public_name_says_how_to_get_it(name):
    with pytest.raises(DatasetError) as raised:
        resolve_dataset(name)
    message = str(raised.value)
    assert f"offrl datasets download {name}" in message and "\n" not in message


@pytest.mark.parametrize("name", ["d4rl/hopper-medium-replay-v2", "mujoco/hopper/medium-v0", "D4RL/antmaze/umaze-v1"])
def test_present_public_name_resolves_to_the_local_file(name):
    dataset = make_random_dataset([20, 30], obs_dim=3, action_dim=1)
    write_minari(dataset, name, root=datasets_root(create=True))
    resolved = resolve_dataset(name)
    assert resolved.num_transitions == 50
    np.testing.assert_array_equal(resolved.observations, dataset.observations)


def test_unknown_name_suggests_the_closest(capsys):
    code, _, err = run_cli(capsys, "datasets", "info", "d4rl/hoper-medium-replay-v2")
    assert_one_line_error(code, err, "d4rl/hopper-medium-replay-v2")
    code, _, err = run_cli(capsys, "datasets", "download", "d4rl/hopper-medium-replay-v1")
    assert_one_line_error(code, err, "d4rl/hopper-medium-replay-v2")


# --------------------------------------------------------------------------------- D4RL download
def test_download_registers_with_d4rl_references_and_env(capsys, d4rl_server):
    server, served = d4rl_server
    code, out, err = run_cli(capsys, "datasets", "download", "d4rl/hopper-medium-replay-v2",
                             "--sha256", hashlib.sha256(served.read_bytes()).hexdigest(), "--size", str(served.stat().st_size))
    assert code == 0, err
    assert f"{server.url}/{D4RL_FILE}" in out and "registered" in out
    dataset = resolve_dataset("d4rl/hopper-medium-replay-v2")
    # D4RL files have no next_observations: the last row of each timed-out episode has no successor
    # and is dropped (3 timeouts), the terminal row is kept; four episodes.
    assert dataset.num_transitions == 297
    assert (dataset.metadata.ref_min_score, dataset.metadata.ref_max_score) == D4RL_REFERENCE_SCORES["hopper"]
    assert dataset.metadata.env_id == D4RL_ENV_IDS["hopper"]
    assert int(dataset.terminals.sum()) == 1 and dataset.num_episodes == 4
    requests = server.requests
    code, out, _ = run_cli(capsys, "datasets", "download", "d4rl/hopper-medium-replay-v2")
    assert code == 0 and "already" in out and server.requests == requests  # cached: no second request
    nothing_left = [p.name for p in datasets_root().iterdir() if p.name.startswith(".")]
    assert nothing_left == []


@pytest.mark.parametrize("case", ["sha256", "size", "truncated", "http500", "not_hdf5", "missing_key", "unequal"])
def test_failed_download_is_one_line_registers_nothing_and_rerun_works(capsys, d4rl_server, case):
    server, served = d4rl_server
    original = served.read_bytes()
    flags = []
    if case == "sha256":
        flags = ["--sha256", "0" * 64]
    elif case == "size":
        flags = ["--size", str(len(original) + 1)]
    elif case == "truncated":
        server.mode = "truncated"
    elif case == "http500":
        server.mode = "error"
    elif case == "not_hdf5":
        served.write_bytes(b"<html>not found</html>")
    elif case == "missing_key":
        write_d4rl_file(served, drop="timeouts")
    elif case == "unequal":
        write_d4rl_file(served, short="rewards")
    needle = {"sha256": "SHA-256", "size": "bytes; expected", "truncated": "stopped at", "http500": "HTTP 500",
              "not_hdf5": "not an HDF5 file", "missing_key": "lacks timeouts", "unequal": "different lengths"}[case]
    code, _, err = run_cli(capsys, "datasets", "download", "d4rl/hopper-medium-replay-v2", *flags)
    assert_one_line_error(code, err, needle, "nothing was registered")
    nothing_registered()
    server.mode = "ok"
    served.write_bytes(original)
    code, out, err = run_cli(capsys, "datasets", "download", "d4rl/hopper-medium-replay-v2")
    assert code == 0 and "registered" in out, err
    assert resolve_dataset("d4rl/hopper-medium-replay-v2").num_transitions == 297


def test_connection_refused_is_one_line(capsys, monkeypatch):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("OFFRL_D4RL_URL", f"http://127.0.0.1:{port}")
    code, _, err = run_cli(capsys, "datasets", "download", "d4rl/walker2d-medium-v2")
    assert_one_line_error(code, err, "walker2d_medium-v2.hdf5", "nothing was registered")
    nothing_registered()


def test_train_download_flag_fetches_then_trains_nothing_else(d4rl_server):
    from offrl.data.download import download_if_public

    assert download_if_public("d4rl/hopper-medium-replay-v2") is not None
    assert download_if_public("d4rl/hopper-medium-replay-v2") is None  # registered: untouched
    assert resolve_dataset("d4rl/hopper-medium-replay-v2").num_transitions == 297


# -------------------------------------------------------------------------------- Minari download
@pytest.fixture
def fake_minari_remote(monkeypatch):
    """minari.download_dataset replaced: writes a small dataset where Minari would (its root)."""
    calls = []

    def fake_download(dataset_id, force_download=False):
        calls.append(dataset_id)
        if dataset_id.startswith("mujoco/nothing"):
            raise ValueError(f"Couldn't find any version for dataset {dataset_id} in the remote")
        dataset = make_random_dataset([15, 25], obs_dim=3, action_dim=1)
        dataset.metadata.ref_min_score = dataset.metadata.ref_max_score = None  # as Minari's mujoco/*-v0
        write_minari(dataset, dataset_id, root=os.environ["MINARI_DATASETS_PATH"])

    monkeypatch.setattr(minari, "download_dataset", fake_download)
    return calls


def test_minari_download_registers_and_says_there_are_no_references(capsys, fake_minari_remote):
    code, out, err = run_cli(capsys, "datasets", "download", "mujoco/hopper/medium-v0")
    assert code == 0, err
    assert fake_minari_remote == ["mujoco/hopper/medium-v0"]
    assert "no reference scores" in out
    dataset = resolve_dataset("mujoco/hopper/medium-v0")
    assert dataset.num_transitions == 40 and dataset.metadata.ref_min_score is None
    assert os.environ.get("MINARI_DATASETS_PATH") != str(datasets_root())  # Minari's root put back
    code, out, err = run_cli(capsys, "datasets", "download", "mujoco/hopper/medium-v0", "--ref-min", "-20", "--ref-max", "3000")
    assert code == 0 and fake_minari_remote == ["mujoco/hopper/medium-v0"], err
    dataset = resolve_dataset("mujoco/hopper/medium-v0")
    assert (dataset.metadata.ref_min_score, dataset.metadata.ref_max_score) == (-20.0, 3000.0)


def test_minari_failure_is_one_line_and_registers_nothing(capsys, fake_minari_remote):
    code, _, err = run_cli(capsys, "datasets", "download", "mujoco/nothing/medium-v0")
    assert_one_line_error(code, err, "Minari could not download", "nothing was registered")
    nothing_registered()
    code, _, err = run_cli(capsys, "datasets", "download", "mujoco/hopper/medium-v0", "--ref-min", "1")
    assert_one_line_error(code, err, "--ref-max")


def test_minari_dataset_offrl_cannot_read_is_refused_and_not_registered(capsys, monkeypatch):
    """D4RL/kitchen's observations nest a Dict of per-task goals inside the Dict (AntMaze's flat Dict
    is read: tests/test_goal_conditioned.py): the download stops with the reader's sentence and
    leaves nothing registered."""
    import gymnasium as gym
    from minari.dataset.minari_storage import MinariStorage

    def fake_download(dataset_id, force_download=False):
        goals = gym.spaces.Dict({"kettle": gym.spaces.Box(-1, 1, (2,))})
        space = gym.spaces.Dict({"observation": gym.spaces.Box(-1, 1, (2,)), "desired_goal": goals})
        data = Path(os.environ["MINARI_DATASETS_PATH"]) / dataset_id / "data"
        data.mkdir(parents=True)
        storage = MinariStorage.new(data, observation_space=space, action_space=gym.spaces.Box(-1, 1, (1,)),
                                    data_format="hdf5")
        storage.update_metadata({"dataset_id": dataset_id, "minari_version": minari.__version__})

    monkeypatch.setattr(minari, "download_dataset", fake_download)
    code, _, err = run_cli(capsys, "datasets", "download", "D4RL/kitchen/complete-v2")
    assert_one_line_error(code, err, "Dict", "nothing was registered")
    nothing_registered()
