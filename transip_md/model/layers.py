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

    def factors(self, pos: Tensor, head_dim: int) -> tuple[Tensor, Tensor]:
        """Full-width rotation factors for positions (..., 3) in Å -> c, s (..., head_dim) each.

        With them the rotation of a head vector x is ``x * c + (x @ swap) * s`` (:func:`rotate`): c is
        (cos, cos, 1...) and s is (-sin, sin, 0...), so the pass-through dimensions need no slicing and the
        rotation is two products and a sum on whole tensors (no slices, no concatenation).
        """
        cos, sin = self.forward(pos)
        ones = torch.ones(pos.shape[:-1] + (head_dim - 2 * self.n_rot,), dtype=cos.dtype, device=cos.device)
        c = torch.cat([cos, cos, ones], dim=-1)
        s = torch.cat([-sin, sin, torch.zeros_like(ones)], dim=-1)
        return c, s


def swap_matrix(head_dim: int, n_rot: int, like: Tensor) -> Tensor:
    """(head_dim, head_dim) permutation P with x @ P = (x2, x1, rest) for x = (x1, x2, rest), |x1| = |x2| = n_rot;
    dtype and device of ``like``. Made per call (a few tiny ops), so it is neither a buffer nor in any state dict."""
    idx = torch.arange(head_dim, device=like.device)
    source = torch.cat([idx[n_rot : 2 * n_rot], idx[:n_rot], idx[2 * n_rot :]])
    p = torch.zeros(head_dim, head_dim, dtype=like.dtype, device=like.device)
    p[source, idx] = 1.0
    return p


def rotate(x: Tensor, c: Tensor, s: Tensor, swap: Tensor) -> Tensor:
    """Rotary encoding of x (..., head_dim): (x1 cos - x2 sin, x1 sin + x2 cos, rest), with the factors c, s of
    :meth:`Rotary3D.factors` (broadcast against x) and ``swap = swap_matrix(...)``; ``rotate(x, c, -s, swap)`` is the
    inverse rotation. The swap is a small matmul: on the CPU it trains faster than a gather or slices (measured)."""
    return x * c + torch.matmul(x, swap) * s


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
        # On interval i (x = r / spacing in [i, i + 1), u = x - i) the spline is a cubic in u whose coefficients are
        # fixed combinations of the four table rows i..i+3 (``power_basis`` below). Those polynomials are formed once
        # per call on the small table; each distance then gathers one row of them and evaluates it by Horner's
        # rule: one gather and six products/sums per distance instead of four gathers and the basis weights.
        table = torch.cat([self.coefficients, self.coefficients[-1:].expand(3, -1)], dim=0)
        n, heads = self.n_knots, table.shape[1]
        windows = torch.stack([table[0:n], table[1 : n + 1], table[2 : n + 2], table[3 : n + 3]], dim=1)
        # 6 x the power-basis coefficients (u^0 .. u^3) of the uniform cubic B-spline from its four control points
        # (integers: exact in any float type; a constant made per call, so no buffer and no state-dict change).
        power_basis = torch.tensor(
            [[1.0, 4.0, 1.0, 0.0], [-3.0, 0.0, 3.0, 0.0], [3.0, -6.0, 3.0, 0.0], [-1.0, 3.0, -3.0, 1.0]],
            dtype=table.dtype,
            device=table.device,
        )
        poly = torch.matmul(power_basis, windows) / 6.0  # (n_knots, 4, heads): u^0 .. u^3
        x = dist * self.inv_spacing
        last = float(n - 1)
        x = torch.where(x < last, x, torch.full_like(x, last))
        i = torch.floor(x).detach()
        u = (x - i).unsqueeze(-1)
        rows = poly.reshape(n, 4 * heads).index_select(0, i.long().reshape(-1))
        rows = rows.view(dist.shape + (4, heads))
        out = rows[..., 3, :] * u + rows[..., 2, :]
        out = out * u + rows[..., 1, :]
        return out * u + rows[..., 0, :]


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

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: int, value_rotary: bool = False, n_rot: int = 6) -> None:
        super().__init__()
        #: Rotate values by their token's position and the output back by the query's: the message from
        #: b to a is then R(p_b - p_a) v_b, so values carry relative geometry too (per-token cost).
        self.value_rotary = value_rotary
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.n_rot = n_rot
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

    def forward(self, h: Tensor, bias: Tensor, c: Tensor, s: Tensor) -> Tensor:
        """h (S, L, d); bias (S, H, L, L) added to the scores (incl. -inf for masked keys); rotation factors
        c, s (S, L, head_dim) of the token positions (:meth:`Rotary3D.factors`)."""
        n, length, d = h.shape
        swap = swap_matrix(self.head_dim, self.n_rot, h)
        qkv = self.qkv(self.norm_attn(h)).view(n, length, 3, self.n_heads, self.head_dim)
        # Queries and keys are rotated in one pass (S, L, 2, H, head_dim).
        qk = rotate(qkv[:, :, :2], c.unsqueeze(2).unsqueeze(2), s.unsqueeze(2).unsqueeze(2), swap)
        q = qk[:, :, 0].transpose(1, 2) * self.scale
        k = qk[:, :, 1].transpose(1, 2)
        v = qkv[:, :, 2].transpose(1, 2)
        c_heads = c.unsqueeze(1)
        s_heads = s.unsqueeze(1)
        if self.value_rotary:
            v = rotate(v, c_heads, s_heads, swap)
        if self.use_sdpa:
            o = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)
        else:
            att = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) + bias, dim=-1)
            o = torch.matmul(att, v)
        if self.value_rotary:
            o = rotate(o, c_heads, -s_heads, swap)
        o = o.transpose(1, 2).reshape(n, length, d)
        h = h + self.out(o)
        return h + self.mlp(self.norm_mlp(h))

    def forward_first_token(self, h: Tensor, bias: Tensor, c: Tensor, s: Tensor) -> Tensor:
        """Same block, output only for token 0 of each sequence (S, 1, d): the centre in local mode.

        Keys and values still come from every token; queries, the output projection and the MLP are
        computed for one token, which saves most of the last block's cost.
        """
        n, length, d = h.shape
        swap = swap_matrix(self.head_dim, self.n_rot, h)
        x = self.norm_attn(h)
        w = self.qkv.weight
        b = self.qkv.bias
        q = torch.nn.functional.linear(x[:, :1], w[:d], b[:d]).view(n, 1, self.n_heads, self.head_dim)
        kv = torch.nn.functional.linear(x, w[d:], b[d:]).view(n, length, 2, self.n_heads, self.head_dim)
        c_heads = c.unsqueeze(1)
        s_heads = s.unsqueeze(1)
        q = rotate(q.transpose(1, 2) * self.scale, c_heads[:, :, :1], s_heads[:, :, :1], swap)
        k = rotate(kv[:, :, 0].transpose(1, 2), c_heads, s_heads, swap)
        v = kv[:, :, 1].transpose(1, 2)
        if self.value_rotary:
            v = rotate(v, c_heads, s_heads, swap)
        att = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) + bias[:, :, :1], dim=-1)
        o = torch.matmul(att, v)
        if self.value_rotary:
            o = rotate(o, c_heads[:, :, :1], -s_heads[:, :, :1], swap)
        o = o.transpose(1, 2).reshape(n, 1, d)
        h0 = h[:, :1] + self.out(o)
        return h0 + self.mlp(self.norm_mlp(h0))
