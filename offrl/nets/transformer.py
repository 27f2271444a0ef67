"""A small GPT-style causal transformer: pre-LayerNorm blocks of causal self-attention and an MLP.

Generic: it maps token embeddings (batch, tokens, width) to features of the same shape, where
the features at token i depend only on tokens 0..i. Positions are the caller's business (add
position or timestep embeddings to the input). Layout follows minGPT / CORL's `dt.py`: weights
drawn from N(0, 0.02), zero biases, GELU MLP of 4x the width, dropout on attention weights and
on each residual branch, a final LayerNorm.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

_INIT = nn.initializers.normal(0.02)


def causal_mask(num_tokens: int) -> jax.Array:
    """(tokens, tokens) boolean: query i may attend to key j only where j <= i."""
    return jnp.tril(jnp.ones((num_tokens, num_tokens), dtype=bool))


class CausalSelfAttention(nn.Module):
    num_heads: int
    attention_dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, training: bool = False) -> jax.Array:
        batch, tokens, width = x.shape
        if width % self.num_heads:
            raise ValueError(f"width {width} is not divisible by num_heads {self.num_heads}")
        head_dim = width // self.num_heads
        qkv = nn.Dense(3 * width, kernel_init=_INIT, name="qkv")(x)
        query, key, value = jnp.split(qkv.reshape(batch, tokens, 3, self.num_heads, head_dim), 3, axis=2)
        query, key, value = (part.squeeze(2) for part in (query, key, value))  # (batch, tokens, heads, head_dim)
        logits = jnp.einsum("bqhd,bkhd->bhqk", query, key) / jnp.sqrt(head_dim).astype(x.dtype)
        # Masked logits get the most negative finite value: their softmax weight is exactly 0,
        # so a future token cannot change a past output at all (not even by rounding).
        logits = jnp.where(causal_mask(tokens), logits, jnp.finfo(logits.dtype).min)
        weights = jax.nn.softmax(logits, axis=-1)
        weights = nn.Dropout(self.attention_dropout)(weights, deterministic=not training)
        attended = jnp.einsum("bhqk,bkhd->bqhd", weights, value).reshape(batch, tokens, width)
        return nn.Dense(width, kernel_init=_INIT, name="out")(attended)


class TransformerBlock(nn.Module):
    num_heads: int
    attention_dropout: float = 0.0
    residual_dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, training: bool = False) -> jax.Array:
        width = x.shape[-1]
        attended = CausalSelfAttention(self.num_heads, self.attention_dropout)(nn.LayerNorm()(x), training)
        x = x + nn.Dropout(self.residual_dropout)(attended, deterministic=not training)
        hidden = nn.gelu(nn.Dense(4 * width, kernel_init=_INIT)(nn.LayerNorm()(x)))
        hidden = nn.Dense(width, kernel_init=_INIT)(hidden)
        return x + nn.Dropout(self.residual_dropout)(hidden, deterministic=not training)


class CausalTransformer(nn.Module):
    """`num_layers` pre-LayerNorm blocks and a final LayerNorm; dropout needs a 'dropout' rng
    when `training` is True."""

    num_layers: int
    num_heads: int = 1
    attention_dropout: float = 0.0
    residual_dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, training: bool = False) -> jax.Array:
        for _ in range(self.num_layers):
            x = TransformerBlock(self.num_heads, self.attention_dropout, self.residual_dropout)(x, training)
        return nn.LayerNorm()(x)
