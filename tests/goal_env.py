"""A tiny goal-conditioned env with a Dict observation, like gymnasium-robotics' mazes: the point
moves by its action, the goal is a constructor argument (D4RL AntMaze's evaluation env fixes it)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

GOAL_REACH_ID = "OffrlTestGoalReach-v0"


class GoalReach(gym.Env):
    def __init__(self, goal=(0.0, 0.0)):
        box = gym.spaces.Box(-10.0, 10.0, (2,), np.float32)
        self.observation_space = gym.spaces.Dict({"achieved_goal": box, "desired_goal": box, "observation": gym.spaces.Box(-10.0, 10.0, (3,), np.float32)})
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.goal = np.asarray(goal, np.float32)

    def _obs(self):
        return {"achieved_goal": self.position.copy(), "desired_goal": self.goal.copy(),
                "observation": np.array([*self.position, np.linalg.norm(self.position - self.goal)], np.float32)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.position = self.np_random.uniform(-1.0, 1.0, 2).astype(np.float32)
        return self._obs(), {}

    def step(self, action):
        self.position = (self.position + 0.1 * np.clip(action, -1.0, 1.0)).astype(np.float32)
        reward = float(np.linalg.norm(self.position - self.goal) < 0.2)
        return self._obs(), reward, False, False, {}


if GOAL_REACH_ID not in gym.registry:
    gym.register(GOAL_REACH_ID, entry_point="goal_env:GoalReach", max_episode_steps=50)
