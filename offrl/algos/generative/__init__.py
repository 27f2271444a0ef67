"""Expressive policies: flow and diffusion models of the behaviour policy (FQL, IDQL, EDP)."""
