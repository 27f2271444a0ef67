"""Gymnasium environments: the factory, and the constrained (cost) tasks offrl registers on import."""

from offrl.envs.torque_cost import register_torque_cost_envs
from offrl.envs.velocity_cost import register_velocity_envs

register_velocity_envs()
register_torque_cost_envs()
