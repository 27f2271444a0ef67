"""Public dataset names: D4RL's gym locomotion files and Minari's ids, what they are and where they live.

A public name resolves to a dataset registered in the offrl data directory under the same name
(`<data_dir>/datasets/d4rl/hopper-medium-replay-v2`, `<data_dir>/datasets/mujoco/hopper/medium-v0`),
which `offrl datasets download NAME` puts there. Nothing here touches the network.

- `d4rl/<env>-<level>-v2`: D4RL's HDF5 files (Fu et al. 2020), for env in hopper, halfcheetah,
  walker2d, ant and level in random, medium, medium-replay, medium-expert, expert, full-replay.
  URL and reference scores as d4rl/infos.py builds them (its "Gym-MuJoCo V1/V2 envs" loop):
  `<base>/gym_mujoco_v2/<env>_<level with '_'>-v2.hdf5`, REF_MIN/MAX_SCORE of `<env>-random-v0`.
- Minari ids (`mujoco/hopper/medium-v0`, `D4RL/antmaze/umaze-v1`, `D4RL/pen/human-v2`, ...):
  downloaded through Minari's own API. Minari's `mujoco/*-v0` datasets record no reference scores,
  so their scores are returns unless the user supplies references.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass

from offrl.errors import DatasetError

D4RL_URL_ENV = "OFFRL_D4RL_URL"
# d4rl/infos.py: DATASET_URLS[...] = 'http://rail.eecs.berkeley.edu/datasets/offline_rl/gym_mujoco_v2/%s.hdf5'
D4RL_BASE_URL = "http://rail.eecs.berkeley.edu/datasets/offline_rl/gym_mujoco_v2"
D4RL_ENVS = ("hopper", "halfcheetah", "walker2d", "ant")
# d4rl/infos.py: for dset in ['random', 'medium', 'expert', 'medium-replay', 'full-replay', 'medium-expert']
D4RL_LEVELS = ("random", "medium", "medium-replay", "medium-expert", "expert", "full-replay")
_D4RL = re.compile(rf"^d4rl/(?P<env>{'|'.join(D4RL_ENVS)})-(?P<level>{'|'.join(D4RL_LEVELS)})-v2$")

# Minari's remote datasets offrl knows by name (farama-minari on Hugging Face: mujoco/<env>/<level>-v0;
# the D4RL ports under D4RL/). Other Minari ids can still be downloaded: Minari is asked as given.
_MINARI_MUJOCO_ENVS = ("ant", "halfcheetah", "hopper", "humanoid", "walker2d")
ADROIT_TASKS = ("door", "hammer", "pen", "relocate")
ADROIT_LEVELS = ("human", "cloned", "expert")
MINARI_IDS = (
    *(f"mujoco/{env}/{level}-v0" for env in _MINARI_MUJOCO_ENVS for level in ("expert", "medium", "simple")),
    *(f"D4RL/antmaze/{maze}-v1" for maze in ("umaze", "umaze-diverse", "medium-play", "medium-diverse",
                                             "large-play", "large-diverse")),
    *(f"D4RL/{task}/{kind}-v2" for task in ADROIT_TASKS for kind in ADROIT_LEVELS),
    *(f"D4RL/kitchen/{kind}-v2" for kind in ("complete", "partial", "mixed")),
)
_MINARI_ADROIT = re.compile(rf"D4RL/(?P<task>{'|'.join(ADROIT_TASKS)})/(?P<level>{'|'.join(ADROIT_LEVELS)})-v2")
_MINARI_ID = re.compile(r"^[A-Za-z0-9][\w\-]*(/[\w\-]+)+-v\d+$")


@dataclass(frozen=True)
class PublicName:
    name: str  # as registered: d4rl/hopper-medium-replay-v2, mujoco/hopper/medium-v0
    kind: str  # "d4rl" or "minari"
    env: str | None = None  # D4RL: hopper, halfcheetah, walker2d, ant
    level: str | None = None  # D4RL: medium-replay, ...

    @property
    def file_name(self) -> str:
        """D4RL's file name: hopper_medium_replay-v2.hdf5."""
        return f"{self.env}_{self.level.replace('-', '_')}-v2.hdf5"

    def url(self) -> str:
        base = os.environ.get(D4RL_URL_ENV) or D4RL_BASE_URL
        return f"{base.rstrip('/')}/{self.file_name}"

    @property
    def preset_key(self) -> str | None:
        """The key of the references' per-dataset settings: D4RL's own dataset name."""
        if self.kind == "d4rl":
            return f"{self.env}-{self.level}-v2"
        match = re.fullmatch(r"D4RL/antmaze/(?P<maze>[\w\-]+)-v1", self.name)
        # Minari's D4RL/antmaze/*-v1 are the ports of D4RL's antmaze-*-v2 (the references' tuned sets).
        if match:
            return f"antmaze-{match.group('maze')}-v2"
        # Minari's D4RL/<task>/<level>-v2 are D4RL's Adroit <task>-<level>-v1 files replayed in
        # gymnasium-robotics' AdroitHand<Task>-v1 (Farama-Foundation/minari-dataset-generation-scripts
        # scripts/adroit/recreate_adroit_pen.py@62f1432 and recreate_adroit_door.py@ec56bf2: d4rl_dataset_name
        # '<task>-<level>-v1' -> minari_dataset_name 'D4RL/<task>/<level>-v2'); CORL's configs use the -v1 names.
        match = re.fullmatch(_MINARI_ADROIT, self.name)
        return f"{match.group('task')}-{match.group('level')}-v1" if match else None

    @property
    def how_to_get(self) -> str:
        return f"`offrl datasets download {self.name}` (or --download)"


def d4rl_names() -> list[str]:
    return [f"d4rl/{env}-{level}-v2" for env in D4RL_ENVS for level in D4RL_LEVELS]


def all_public_names() -> list[str]:
    return [*d4rl_names(), *MINARI_IDS]


def parse_public_name(name: str) -> PublicName | None:
    """The public dataset `name` names, or None if it is not one offrl knows (see `looks_public`)."""
    match = _D4RL.match(name)
    if match:
        return PublicName(name=name, kind="d4rl", env=match.group("env"), level=match.group("level"))
    if name in MINARI_IDS:
        return PublicName(name=name, kind="minari")
    return None


def looks_public(name: str) -> bool:
    """A `d4rl/...` name or a namespaced Minari-style id (`ns/.../name-vN`)."""
    return name.startswith("d4rl/") or bool(_MINARI_ID.match(name))


def remote_name(name: str) -> PublicName:
    """`name` as something `offrl datasets download` can fetch: a known public name, or another
    namespaced Minari id (Minari is asked for it as given); otherwise one sentence with suggestions."""
    public = parse_public_name(name)
    if public is not None:
        return public
    if _MINARI_ID.match(name) and not name.startswith("d4rl/"):  # D4RL/... is Minari's namespace
        return PublicName(name=name, kind="minari")
    raise DatasetError(f"Dataset name {name!r} is not a public dataset offrl can download; expected "
                       f"{suggestion_text(name)}.")


def closest_names(name: str, candidates: list[str] | None = None, count: int = 3) -> list[str]:
    pool = candidates if candidates is not None else all_public_names()
    lowered = {candidate.lower(): candidate for candidate in pool}
    return [lowered[match] for match in difflib.get_close_matches(name.lower(), list(lowered), n=count, cutoff=0.5)]


def suggestion_text(name: str, extra: list[str] | None = None) -> str:
    """'one of the closest names: a, b, c' or the general shape of a public name."""
    close = closest_names(name, [*all_public_names(), *(extra or [])])
    if close:
        return "a known name, e.g. the closest: " + ", ".join(close)
    registered = f" ({', '.join(extra[:8])}{', ...' if len(extra) > 8 else ''})" if extra else ""
    return ("a D4RL name such as d4rl/hopper-medium-replay-v2, a Minari id such as mujoco/hopper/medium-v0, "
            f"a registered name{registered} or a path")
