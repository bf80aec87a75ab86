"""The two SSN layers: connectivity and the power-law drive (spec §6, §7).

Both classes are pytrees (their arrays are traced, their sizes and constants are static), so they can be
built inside jitted, differentiated functions from the trained parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from parameters import SSNPars

SplitDrive = Callable[[jnp.ndarray, jnp.ndarray, jnp.ndarray, jnp.ndarray], tuple[jnp.ndarray, jnp.ndarray]]
"""(r_E, r_I, h_E, h_I) -> (drive_E, drive_I): a layer's fixed-point map on its E and I parts."""


def padded_width(n: int) -> int:
    """n rounded up to a multiple of 16: an output width at which float32 matrix products run fastest.

    CPU product kernels work on blocks of 8 or 16 output columns; with 162 columns the last block is
    nearly empty and costs as much as a full one. On the 2-core CPU of docs/performance.md a product with
    176 columns (zeros appended) is about 15 % faster than with 162. Zero columns add nothing to the results.
    """
    return -(-n // 16) * 16


def power_law(x: jnp.ndarray, k: float, n: float) -> jnp.ndarray:
    """k·[x]_+^n, with the common n = 2 as a square (much cheaper than pow)."""
    x = jnp.maximum(x, 0.0)
    return k * (x * x if n == 2.0 else x**n)


def power_law_slope(x: jnp.ndarray, k: float, n: float) -> jnp.ndarray:
    """Derivative of :func:`power_law` with respect to x."""
    x = jnp.maximum(x, 0.0)
    return k * n * (x if n == 2.0 else x ** (n - 1))


def kappa_profile(kappa: jnp.ndarray, d: jnp.ndarray, kappa_range: float) -> jnp.ndarray:
    """tanh(kappa)·d²/(2·kappa_range²), the exponent of every kappa modulation."""
    return jnp.tanh(kappa) * d**2 / (2 * kappa_range**2)


def inhibition_is_local(ssn: SSNPars, grid_spacing: float) -> bool:
    """True if every off-diagonal entry of the Gaussian I kernels is below min_syn for any kappa.

    The largest kernel value between distinct cells is exp(-spacing²/(2 s²) + max kappa term), and the
    kappa terms add at most 2·(180/pi)²/(2·kappa_range²) to the exponent.
    """
    if grid_spacing <= 0:
        return False
    max_kappa_gain = 2 * (180 / np.pi) ** 2 / (2 * ssn.kappa_range**2)
    widest = max(ssn.s_2x2_s[0][1], ssn.s_2x2_s[1][1])
    return bool(-(grid_spacing**2) / (2 * widest**2) + max_kappa_gain < np.log(ssn.min_syn))


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class SSN_mid:
    """Middle layer: phases x grid isolated 2-cell E/I circuits.

    The solver works on type-major rates (2, phases, Nx²): E and I are then contiguous blocks, which
    makes the per-step update markedly cheaper than the documented (phases, 2, Nx²) order.
    """

    W: jnp.ndarray
    """Weights [post][pre][grid], shape (2, 2, Nx²)."""
    k: float = field(metadata={"static": True})
    n: float = field(metadata={"static": True})
    tau: tuple[float, float] = field(metadata={"static": True})

    @classmethod
    def build(cls, J_2x2: jnp.ndarray, kappa_Jmid: jnp.ndarray, d_ref: jnp.ndarray, ssn: SSNPars) -> SSN_mid:
        """Weights J·e/mean(e) with e = exp(tanh(kappa)·d²/(2·90²)), spec §6.2."""
        e = jnp.exp(kappa_profile(kappa_Jmid[:, :, None], d_ref[None, None, :], ssn.kappa_range))
        e = jnp.where(e < ssn.min_syn, 0.0, e)
        W = J_2x2[:, :, None] * e / jnp.mean(e, axis=-1, keepdims=True)
        return cls(W=W, k=ssn.k, n=ssn.n, tau=(ssn.tauE, ssn.tauI))

    def input_current(self, r: jnp.ndarray, h: jnp.ndarray) -> jnp.ndarray:
        """W r + h per circuit, for type-major r, h of shape (2, phases, Nx²)."""
        vE = self.W[0, 0] * r[0] + self.W[0, 1] * r[1]
        vI = self.W[1, 0] * r[0] + self.W[1, 1] * r[1]
        return jnp.stack([vE, vI]) + h

    def drive(self, r: jnp.ndarray, h: jnp.ndarray) -> jnp.ndarray:
        """k[W r + h]_+^n, the fixed-point map of the layer."""
        return power_law(self.input_current(r, h), self.k, self.n)

    def split(self, x: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """E and I parts (phases, Nx²) of a type-major array."""
        return x[0], x[1]

    def merge(self, x_E: jnp.ndarray, x_I: jnp.ndarray) -> jnp.ndarray:
        """Inverse of :meth:`split`."""
        return jnp.stack([x_E, x_I])

    def split_drive(self) -> SplitDrive:
        """The drive on split rates, (r_E, r_I, h_E, h_I) -> (drive_E, drive_I), with hoisted weights."""
        (w_EE, w_EI), (w_IE, w_II) = self.W[0], self.W[1]
        k, n = self.k, self.n

        def drive(r_E, r_I, h_E, h_I):
            return (power_law(w_EE * r_E + w_EI * r_I + h_E, k, n),
                    power_law(w_IE * r_E + w_II * r_I + h_I, k, n))  # fmt: skip

        return drive

    def solve_adjoint(self, r: jnp.ndarray, h: jnp.ndarray, g: jnp.ndarray) -> jnp.ndarray:
        """lambda solving (I - D W)ᵀ lambda = g per circuit, D = diag(drive'), in closed form."""
        D = power_law_slope(self.input_current(r, h), self.k, self.n)  # (2, phases, grid)
        dE, dI = D[0], D[1]
        # M = I - D W; Mᵀ = [[1 - dE W_EE, -dI W_IE], [-dE W_EI, 1 - dI W_II]]
        a, b = 1 - dE * self.W[0, 0], -dI * self.W[1, 0]
        c, d = -dE * self.W[0, 1], 1 - dI * self.W[1, 1]
        det = a * d - b * c
        gE, gI = g[0], g[1]
        return jnp.stack([(d * gE - b * gI) / det, (a * gI - c * gE) / det])


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class SharedKernels:
    """Superficial weights whose I columns reuse each row's E kernel: W_ab = J[a, b]·K_a (LINEAGE.md B.1).

    Then W r = [K_E (J_EE r_E + J_EI r_I); K_I (J_IE r_E + J_II r_I)]: two Nx²-wide products instead of one
    dense 2·Nx² product, as cheap as the local-inhibition layer although the I columns are dense.
    """

    kernels: jnp.ndarray
    """K_a per post type a, shape (2, Nx², Nx²), row = post cell."""
    J: jnp.ndarray
    """Signed J [post][pre], shape (2, 2)."""

    def dense(self) -> jnp.ndarray:
        """The full weight matrix W (2·Nx², 2·Nx²)."""
        return jnp.block([[self.J[a, b] * self.kernels[a] for b in range(2)] for a in range(2)])

    def recurrent(self, r_E: jnp.ndarray, r_I: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """(W r)_E and (W r)_I for split rates (any leading batch axes)."""
        x_E = self.J[0, 0] * r_E + self.J[0, 1] * r_I
        x_I = self.J[1, 0] * r_E + self.J[1, 1] * r_I
        return x_E @ self.kernels[0].T, x_I @ self.kernels[1].T


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class SSN_sup:
    """Superficial layer: 81 E then 81 I cells with full recurrent connectivity. Rates have shape (162,)."""

    W: jnp.ndarray
    """Recurrent weights (2·Nx², 2·Nx²), row = post cell."""
    k: float = field(metadata={"static": True})
    n: float = field(metadata={"static": True})
    tau: tuple[float, float] = field(metadata={"static": True})
    local_inhibition: bool = field(default=False, metadata={"static": True})
    """True when the I->E and I->I blocks are provably diagonal (then W r costs half as much)."""
    shared: SharedKernels | None = None
    """The factors of W when each post type's I block reuses its E kernel (SSNPars.sup_I_kernel 'reuse_E')."""

    @classmethod
    def build(cls, J_2x2: jnp.ndarray, kappa_Jsup: jnp.ndarray, rho: jnp.ndarray, ori_dist: jnp.ndarray,
              d_ref: jnp.ndarray, ssn: SSNPars, grid_spacing: float = 0.0) -> SSN_sup:
        """The superficial weights W (spec §7.1) from signed J (2,2), raw kappa (2,2,2), distances (mm) and ring
        distances: block (a, b) is J[a, b] times a kernel that falls off with cortical distance (exponential for
        E inputs, Gaussian for I inputs) and with orientation difference, modulated by kappa, cut below min_syn,
        normalised to a mean row sum of 1 and, for E inputs, mixed with the identity by p_local_s.

        With SSNPars.sup_I_kernel 'reuse_E' (the figure era, LINEAGE.md B.1) the I block of each post type a
        is J[a, I] times that row's E kernel K_a, identity part and kappa included; the kappas of I inputs
        then have no effect (and a zero gradient). ``grid_spacing`` (mm, the smallest distance between two
        cells) lets the layer detect that the Gaussian I kernels fall below min_syn off the diagonal for
        every kappa.
        """
        def kernel(a: int, b: int) -> jnp.ndarray:
            kap = (kappa_profile(kappa_Jsup[0, a, b], d_ref, ssn.kappa_range)[:, None]
                   + kappa_profile(kappa_Jsup[1, a, b], d_ref, ssn.kappa_range)[None, :])  # fmt: skip
            s = ssn.s_2x2_s[a][b]
            spatial = rho / s if b == 0 else rho**2 / (2 * s**2)
            K = jnp.exp(-spatial - ori_term - kap)
            K = jnp.where(ssn.min_syn > K, 0.0, K)
            K = K / jnp.mean(jnp.sum(K, axis=1))
            if b == 0:
                K = ssn.p_local_s[a] * jnp.eye(K.shape[0]) + (1 - ssn.p_local_s[a]) * K
            return K

        ori_term = ori_dist**2 / (2 * ssn.sigma_oris**2)
        static = dict(k=ssn.k, n=ssn.n, tau=(ssn.tauE, ssn.tauI))
        if ssn.sup_I_kernel == "reuse_E":
            shared = SharedKernels(kernels=jnp.stack([kernel(0, 0), kernel(1, 0)]), J=J_2x2)
            return cls(W=shared.dense(), shared=shared, **static)
        blocks = [[J_2x2[a, b] * kernel(a, b) for b in range(2)] for a in range(2)]
        return cls(W=jnp.block(blocks), local_inhibition=inhibition_is_local(ssn, grid_spacing), **static)

    def input_current(self, r: jnp.ndarray, h: jnp.ndarray) -> jnp.ndarray:
        """W r + h (written as r Wᵀ: under vmap XLA then runs one well-shaped matrix product)."""
        if not self.local_inhibition:
            return r @ self.W.T + h
        half = self.W.shape[0] // 2
        inhibitory = jnp.concatenate(self.local_inhibitory_weights())
        return r[:half] @ self.W[:, :half].T + inhibitory * jnp.tile(r[half:], 2) + h

    def local_inhibitory_weights(self) -> tuple[jnp.ndarray, jnp.ndarray]:
        """Diagonals (a, b) of the I->E and I->I blocks, the whole of them when ``local_inhibition``."""
        half = self.W.shape[0] // 2
        return jnp.diagonal(self.W[:half, half:]), jnp.diagonal(self.W[half:, half:])

    def drive(self, r: jnp.ndarray, h: jnp.ndarray) -> jnp.ndarray:
        """k[W r + h]_+^n, the fixed-point map of the layer."""
        return power_law(self.input_current(r, h), self.k, self.n)

    def split(self, x: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """E and I parts (Nx²,) of a cell vector."""
        half = self.W.shape[0] // 2
        return x[:half], x[half:]

    def merge(self, x_E: jnp.ndarray, x_I: jnp.ndarray) -> jnp.ndarray:
        """Inverse of :meth:`split`."""
        return jnp.concatenate([x_E, x_I])

    def split_drive(self) -> SplitDrive:
        """The drive on split rates, (r_E, r_I, h_E, h_I) -> (drive_E, drive_I), with hoisted weights.

        The E columns enter as one product r_E W[:, E]ᵀ (under vmap a single matrix product per step)
        whose output has :func:`padded_width` columns: E inputs first, I inputs from the middle. With
        shared kernels (:class:`SharedKernels`) the two post types' products run on the J-mixed rates.
        """
        half = self.W.shape[0] // 2
        k, n = self.k, self.n
        offset = padded_width(2 * half) // 2

        def padded_product(pre: slice) -> jnp.ndarray:
            block = self.W[:, pre].T  # (pre cells, post cells)
            out = jnp.zeros((block.shape[0], 2 * offset), block.dtype)
            return out.at[:, :half].set(block[:, :half]).at[:, offset : offset + half].set(block[:, half:])

        if self.shared is not None:
            recurrent = self.shared.recurrent
        elif self.local_inhibition:
            from_E = padded_product(slice(0, half))
            a, b = self.local_inhibitory_weights()

            def recurrent(r_E, r_I):
                x = r_E @ from_E
                return x[..., :half] + a * r_I, x[..., offset : offset + half] + b * r_I
        else:
            from_E, from_I = padded_product(slice(0, half)), padded_product(slice(half, None))

            def recurrent(r_E, r_I):
                x = r_E @ from_E + r_I @ from_I
                return x[..., :half], x[..., offset : offset + half]

        def drive(r_E, r_I, h_E, h_I):
            v_E, v_I = recurrent(r_E, r_I)
            return power_law(v_E + h_E, k, n), power_law(v_I + h_I, k, n)

        return drive

    def solve_adjoint(self, r: jnp.ndarray, h: jnp.ndarray, g: jnp.ndarray) -> jnp.ndarray:
        """lambda solving (I - D W)ᵀ lambda = g, D = diag(drive')."""
        D = power_law_slope(self.input_current(r, h), self.k, self.n)
        if self.local_inhibition:
            return self._solve_adjoint_local(D, g)
        M = jnp.eye(self.W.shape[0], dtype=self.W.dtype) - self.W.T * D[None, :]
        return jnp.linalg.solve(M, g)

    def _solve_adjoint_local(self, D: jnp.ndarray, g: jnp.ndarray) -> jnp.ndarray:
        """The same solve when the I columns of W are diagonal: eliminate lambda_I, solve for lambda_E.

        With W = [[A, diag a], [B, diag b]], the I rows of the system give
        lambda_I = (g_I + a·d_E·lambda_E) / (1 - b·d_I), which leaves the E-sized system
        (I - (Aᵀ + Bᵀ diag(s a)) diag(d_E)) lambda_E = g_E + Bᵀ (s g_I), s = d_I / (1 - b d_I).
        """
        half = self.W.shape[0] // 2
        A, B = self.W[:half, :half], self.W[half:, :half]
        a, b = self.local_inhibitory_weights()
        dE, dI = D[:half], D[half:]
        gE, gI = g[:half], g[half:]
        s = dI / (1 - b * dI)
        M = jnp.eye(half, dtype=self.W.dtype) - (A.T + B.T * (s * a)[None, :]) * dE[None, :]
        lam_E = jnp.linalg.solve(M, gE + B.T @ (s * gI))
        lam_I = (gI + a * dE * lam_E) / (1 - b * dI)
        return jnp.concatenate([lam_E, lam_I])
