"""Building blocks of the TransIP Transformer (TorchScript-scriptable). Lengths in Å."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class Rotary3D(nn.Module):
    """3-D rotary position encoding.

    Rotating queries by their token position p_a and keys by p_b makes q.k depend on p_b - p_a only,
    so the encoding sees relative vectors (translation invariant) but their orientation too: it is
    deliberately not rotation invariant (TransIP learns that symmetry from its training objective).
    The first ``6 * n_freqs`` dimensions of each head are rotated, the rest pass through.
    """

    def __init__(self, n_freqs: int, min_wavelength: float, max_wavelength: float) -> None:
        super().__init__()
        wavelengths = torch.logspace(math.log10(min_wavelength), math.log10(max_wavelength), n_freqs)
        omega = 2.0 * math.pi / wavelengths  # rad/Å
        proj = torch.zeros(3, 3 * n_freqs)
        for axis in range(3):
            proj[axis, axis * n_freqs : (axis + 1) * n_freqs] = omega
        self.register_buffer("proj", proj)
        self.n_rot = 3 * n_freqs

    def forward(self, pos: Tensor) -> tuple[Tensor, Tensor]:
        """cos and sin of the rotation angles for positions (..., 3) in Å -> (..., 3F) each."""
        theta = pos @ self.proj.to(pos.dtype)
        return torch.cos(theta), torch.sin(theta)


def apply_rotary_inverse(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Inverse of :func:`apply_rotary` (rotation by the negative angles)."""
    n = cos.shape[-1]
    x1 = x[..., :n]
    x2 = x[..., n : 2 * n]
    rest = x[..., 2 * n :]
    return torch.cat([x1 * cos + x2 * sin, x2 * cos - x1 * sin, rest], dim=-1)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate the leading 2 x 3F dimensions of x (S, H, L, Dh) with cos/sin (S, 1, L, 3F)."""
    n = cos.shape[-1]
    x1 = x[..., :n]
    x2 = x[..., n : 2 * n]
    rest = x[..., 2 * n :]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos, rest], dim=-1)


class SplineRadialBias(nn.Module):
    """Per-head attention bias b_h(r): a learned uniform cubic B-spline of the pair distance r (Å).

    ``n_knots`` coefficients per head on [0, r_max]; beyond r_max the bias is constant. The spline is C2
    everywhere (the last coefficient is repeated three times, so value, slope and curvature meet the
    constant tail), so forces stay smooth. Only four coefficients touch a given r, so the cost per pair is
    independent of the resolution (a Gaussian basis of the same resolution costs n_knots exponentials).
    """

    def __init__(self, n_knots: int, r_max: float, n_heads: int) -> None:
        super().__init__()
        if n_knots < 4:
            raise ValueError(f"a cubic spline needs at least 4 knots, got {n_knots}")
        self.n_knots = n_knots
        self.inv_spacing = float((n_knots - 1) / r_max)
        self.coefficients = nn.Parameter(0.2 * torch.randn(n_knots, n_heads))

    def forward(self, dist: Tensor) -> Tensor:
        """dist (...) in Å -> bias (..., n_heads)."""
        table = torch.cat([self.coefficients, self.coefficients[-1:].expand(3, -1)], dim=0)
        x = dist * self.inv_spacing
        last = float(self.n_knots - 1)
        x = torch.where(x < last, x, torch.full_like(x, last))
        i = torch.floor(x).detach()
        u = (x - i).unsqueeze(-1)
        idx = i.long()
        u2 = u * u
        u3 = u2 * u
        one_minus = 1.0 - u
        w0 = one_minus * one_minus * one_minus
        w1 = 3.0 * u3 - 6.0 * u2 + 4.0
        w2 = -3.0 * u3 + 3.0 * u2 + 3.0 * u + 1.0
        # index_select, not embedding: the same gather, but its backward (an index_add) is ~4x faster on the CPU
        # than embedding's for these many indices into a small table (training profile: 16 % of a step before).
        flat = idx.reshape(-1)
        shape = idx.shape + (table.shape[1],)
        out = w0 * table.index_select(0, flat).view(shape)
        out = out + w1 * table.index_select(0, flat + 1).view(shape)
        out = out + w2 * table.index_select(0, flat + 2).view(shape)
        out = out + u3 * table.index_select(0, flat + 3).view(shape)
        return out * (1.0 / 6.0)


def log_envelope(dist: Tensor, cutoff: float, power: int) -> Tensor:
    """log of the smooth envelope (1 - (r/rc)^2)^p; -inf at and beyond the cutoff.

    The envelope and its first p-1 derivatives vanish at rc, so attention weights (which are
    multiplied by it) switch an edge off smoothly. Written to give finite gradients everywhere.
    """
    inside = dist < cutoff
    safe = torch.where(inside, dist, torch.zeros_like(dist)) / cutoff
    logw = power * torch.log1p(-safe * safe)
    return torch.where(inside, logw, torch.full_like(dist, -math.inf))


def pair_distances(pos: Tensor) -> Tensor:
    """|p_b - p_a| for token positions (S, L, 3) -> (S, L, L), in Å.

    Uses |p_a|^2 + |p_b|^2 - 2 p_a.p_b (one batched matmul, no (S, L, L, 3) tensor); callers keep
    positions small (relative to a centre) so float32 round-off stays ~1e-6 Å^2. The gradient is zero,
    not NaN, for coincident tokens (a token with itself).
    """
    sq = (pos * pos).sum(-1)
    d2 = sq.unsqueeze(1) + sq.unsqueeze(2) - 2.0 * torch.bmm(pos, pos.transpose(1, 2))
    positive = d2 > 1e-10
    d = torch.sqrt(torch.where(positive, d2, torch.ones_like(d2)))
    return torch.where(positive, d, torch.zeros_like(d))


def safe_norm(vec: Tensor) -> Tensor:
    """|vec| over the last axis with a zero (not NaN) gradient at the origin."""
    d2 = (vec * vec).sum(-1)
    nonzero = d2 > 0
    d = torch.sqrt(torch.where(nonzero, d2, torch.ones_like(d2)))
    return torch.where(nonzero, d, torch.zeros_like(d))


class TransformerBlock(nn.Module):
    """Pre-LayerNorm Transformer block: rotary multi-head attention with an additive bias, then MLP."""

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: int, value_rotary: bool = False) -> None:
        super().__init__()
        #: Rotate values by their token's position and the output back by the query's: the message from
        #: b to a is then R(p_b - p_a) v_b, so values carry relative geometry too (per-token cost).
        self.value_rotary = value_rotary
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.norm_attn = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.norm_mlp = nn.LayerNorm(d_model)
        #: Use torch's fused scaled_dot_product_attention (GPU kernels) instead of explicit matmul/softmax.
        #: The explicit path supports double backward (training with force losses); both give equal numbers.
        self.use_sdpa = False
        self.mlp = nn.Sequential(
            nn.Linear(d_model, mlp_ratio * d_model), nn.SiLU(), nn.Linear(mlp_ratio * d_model, d_model)
        )

    def forward(self, h: Tensor, bias: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """h (S, L, d); bias (S, H, L, L) added to the scores (incl. -inf for masked keys)."""
        s, length, d = h.shape
        qkv = self.qkv(self.norm_attn(h)).view(s, length, 3, self.n_heads, self.head_dim)
        q = qkv[:, :, 0].transpose(1, 2)
        k = qkv[:, :, 1].transpose(1, 2)
        v = qkv[:, :, 2].transpose(1, 2)
        q = apply_rotary(q * self.scale, cos, sin)
        k = apply_rotary(k, cos, sin)
        if self.value_rotary:
            v = apply_rotary(v, cos, sin)
        if self.use_sdpa:
            o = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)
        else:
            att = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) + bias, dim=-1)
            o = torch.matmul(att, v)
        if self.value_rotary:
            o = apply_rotary_inverse(o, cos, sin)
        o = o.transpose(1, 2).reshape(s, length, d)
        h = h + self.out(o)
        return h + self.mlp(self.norm_mlp(h))

    def forward_first_token(self, h: Tensor, bias: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """Same block, output only for token 0 of each sequence (S, 1, d): the centre in local mode.

        Keys and values still come from every token; queries, the output projection and the MLP are
        computed for one token, which saves most of the last block's cost.
        """
        s, length, d = h.shape
        x = self.norm_attn(h)
        w = self.qkv.weight
        b = self.qkv.bias
        q = torch.nn.functional.linear(x[:, :1], w[:d], b[:d]).view(s, 1, self.n_heads, self.head_dim)
        kv = torch.nn.functional.linear(x, w[d:], b[d:]).view(s, length, 2, self.n_heads, self.head_dim)
        q = apply_rotary(q.transpose(1, 2) * self.scale, cos[:, :, :1], sin[:, :, :1])
        k = apply_rotary(kv[:, :, 0].transpose(1, 2), cos, sin)
        v = kv[:, :, 1].transpose(1, 2)
        if self.value_rotary:
            v = apply_rotary(v, cos, sin)
        att = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) + bias[:, :, :1], dim=-1)
        o = torch.matmul(att, v)
        if self.value_rotary:
            o = apply_rotary_inverse(o, cos[:, :, :1], sin[:, :, :1])
        o = o.transpose(1, 2).reshape(s, 1, d)
        h0 = h[:, :1] + self.out(o)
        return h0 + self.mlp(self.norm_mlp(h0))
