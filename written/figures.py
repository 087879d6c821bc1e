"""Figures for the written answers of Assignment 3 (Questions 1-4).

Run from the repository root:  python written/figures.py
Writes vector PDFs into written/figures/. Deterministic: every expectation over a
Gaussian is computed by Gauss-Hermite quadrature (the "infinitely many samples"
assumption of Question 1), and the only random draws use fixed seeds.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from numpy.polynomial.hermite_e import hermegauss

OUT = Path(__file__).resolve().parent / "figures"
PDF_META = {"CreationDate": None, "ModDate": None, "Creator": None, "Producer": None}

plt.rcParams.update(
    {
        "font.size": 8,
        "axes.titlesize": 8.5,
        "axes.labelsize": 8,
        "legend.fontsize": 7,
        "xtick.labelsize": 7,
        "ytick.labelsize": 7,
        "lines.linewidth": 1.4,
        "pdf.fonttype": 42,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "svg.hashsalt": "assignment3",
    }
)


def save(fig, name):
    OUT.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT / name, metadata=PDF_META, bbox_inches="tight")
    plt.close(fig)
    print("wrote", OUT / name)


# ---------------------------------------------------------------------------
# Question 1: the dummy GAN, G_w(z) = w + z, data N(mu, 1)
# ---------------------------------------------------------------------------
_NODES, _WEIGHTS = hermegauss(121)
_WEIGHTS = _WEIGHTS / np.sqrt(2.0 * np.pi)  # E_{e ~ N(0,1)}[f(e)] = sum w_i f(t_i)


def gauss_E(f):
    """E_{e~N(0,1)}[f(e)] by Gauss-Hermite quadrature (probabilists' Hermite)."""
    return float(np.sum(_WEIGHTS * f(_NODES)))


def log_sigmoid(s):
    return -np.logaddexp(0.0, -s)


def sigmoid(s):
    return 0.5 * (1.0 + np.tanh(0.5 * s))


def V(w, phi, mu):
    """Vanilla GAN value E_x log D(x) + E_z log(1 - D(w + z))."""
    return gauss_E(lambda e: log_sigmoid(phi * (mu + e))) + gauss_E(
        lambda e: log_sigmoid(-phi * (w + e))
    )


def dV_dphi(w, phi, mu):
    return gauss_E(lambda e: (mu + e) * sigmoid(-phi * (mu + e))) - gauss_E(
        lambda e: (w + e) * sigmoid(phi * (w + e))
    )


def d2V_dphi2(w, phi, mu):
    def curv(m):
        return gauss_E(lambda e: (m + e) ** 2 * sigmoid(phi * (m + e)) * sigmoid(-phi * (m + e)))

    return -curv(mu) - curv(w)


def dV_dw(w, phi, mu):
    return -phi * gauss_E(lambda e: sigmoid(phi * (w + e)))


def dNS_dw(w, phi, mu):
    """Gradient of the non-saturating generator objective E_z log D(w + z)."""
    return phi * gauss_E(lambda e: sigmoid(-phi * (w + e)))


def phi_star(w, mu):
    """Unique maximiser of the strictly concave phi -> V(w, phi) (damped Newton)."""
    phi = 0.0
    for _ in range(200):
        step = -dV_dphi(w, phi, mu) / d2V_dphi2(w, phi, mu)
        phi += float(np.clip(step, -1.0, 1.0))
        if abs(step) < 1e-12:
            break
    return phi


MU = 2.0
W0 = -6.0


def fig_q1_objective():
    phis = np.linspace(-4, 4, 401)
    fig, ax = plt.subplots(1, 1, figsize=(5.2, 2.5))
    for w, style in [(MU, "-"), (0.0, "--"), (-2.0, "-."), (5.0, ":")]:
        vals = [V(w, p, MU) for p in phis]
        ps = phi_star(w, MU)
        lab = rf"$w=\mu={MU:g}$" if w == MU else rf"$w={w:g}$"
        (line,) = ax.plot(phis, vals, style, label=lab + rf" ($\phi^*={ps:.2f}$)")
        ax.plot([ps], [V(w, ps, MU)], "o", color=line.get_color(), ms=3.5)
    ax.axhline(-2 * np.log(2), color="k", lw=0.7)
    ax.text(-3.9, -2 * np.log(2) + 0.08, r"$-2\log 2$", fontsize=7)
    ax.set_ylim(-4.2, 0.1)
    ax.set_xlabel(r"discriminator parameter $\phi$")
    ax.set_ylabel(r"$V(w,\phi)$")
    ax.set_title(rf"Vanilla GAN objective, $\mu={MU:g}$")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=True)
    save(fig, "q1_vanilla_objective.pdf")


def fig_q1_generator_signal():
    ws = np.linspace(-8, 12, 161)
    ps = np.array([phi_star(w, MU) for w in ws])
    inner_v = np.array([V(w, p, MU) for w, p in zip(ws, ps, strict=True)])
    g_sat = np.abs([dV_dw(w, p, MU) for w, p in zip(ws, ps, strict=True)])
    g_ns = np.abs([dNS_dw(w, p, MU) for w, p in zip(ws, ps, strict=True)])
    fig, axes = plt.subplots(1, 2, figsize=(6.6, 2.5))
    ax = axes[0]
    ax.plot(ws, inner_v + 2 * np.log(2), label=r"vanilla: $\max_\phi V(w,\phi)+2\log 2$")
    ax.plot(ws, np.abs(MU - ws), "--", label=r"WGAN: $\max_{|\phi|\leq1} W(w,\phi)=|\mu-w|$")
    ax.set_ylim(-0.2, 4.5)
    ax.set_xlabel(r"generator parameter $w$")
    ax.set_title("value of the inner maximisation")
    ax.legend(loc="upper right")
    ax = axes[1]
    ax.semilogy(ws, np.maximum(g_sat, 1e-20), label=r"vanilla (saturating) $|\partial_w V|$")
    ax.semilogy(ws, np.maximum(g_ns, 1e-20), "-.", label=r"non-saturating $|\partial_w \mathbb{E}\log D|$")
    ax.semilogy(ws, np.where(np.abs(ws - MU) > 1e-9, 1.0, np.nan), "--", label=r"WGAN $|\partial_w W|=1$")
    ax.axvline(MU, color="k", lw=0.7)
    ax.set_ylim(1e-16, 20)
    ax.set_xlabel(r"generator parameter $w$")
    ax.set_title(r"generator gradient at the optimal discriminator $\phi^*(w)$")
    ax.legend(loc="lower right")
    fig.tight_layout()
    save(fig, "q1_generator_signal.pdf")


def simulate_q1(kind, steps=300, k_disc=5, lr_d=0.5, lr_g=0.1, w0=W0, mu=MU):
    """Alternating training: k_disc ascent steps on phi, then one step on w."""
    w, phi = w0, 0.0
    ws, phis = [w], [phi]
    for _ in range(steps):
        for _ in range(k_disc):
            if kind == "wgan":
                phi = float(np.clip(phi + lr_d * (mu - w), -1.0, 1.0))  # ascent + clipping
            else:
                phi = phi + lr_d * dV_dphi(w, phi, mu)
        if kind == "wgan":
            w = w - lr_g * (-phi)  # descent on W = phi (mu - w)
        elif kind == "vanilla":
            w = w - lr_g * dV_dw(w, phi, mu)  # descent on V
        else:  # non-saturating: ascent on E log D(G(z))
            w = w + lr_g * dNS_dw(w, phi, mu)
        ws.append(w)
        phis.append(phi)
    return np.array(ws), np.array(phis)


def fig_q1_training():
    fig, axes = plt.subplots(1, 2, figsize=(6.6, 2.5))
    runs = [
        ("vanilla", "-", "vanilla GAN (min-max $V$)"),
        ("ns", "-.", "vanilla GAN, non-saturating $G$ loss"),
        ("wgan", "--", r"WGAN, $\phi$ clipped to $[-1,1]$"),
    ]
    for kind, style, lab in runs:
        ws, phis = simulate_q1(kind)
        axes[0].plot(ws, style, label=lab)
        axes[1].plot(phis, style, label=lab)
    axes[0].axhline(MU, color="k", lw=0.7, label=rf"data mean $\mu={MU:g}$")
    axes[0].set_xlabel("generator step")
    axes[0].set_ylabel(r"$w$")
    axes[0].set_title(rf"generator parameter, $w_0={W0:g}$, $\mu={MU:g}$")
    axes[0].legend(loc="center right")
    axes[1].set_xlabel("generator step")
    axes[1].set_ylabel(r"$\phi$")
    axes[1].set_title(r"discriminator / critic parameter")
    fig.tight_layout()
    save(fig, "q1_training.pdf")


# ---------------------------------------------------------------------------
# Question 2: decoder with a learned scalar variance
# ---------------------------------------------------------------------------
def fig_q2():
    fig, axes = plt.subplots(1, 3, figsize=(6.8, 2.3))
    d = 1
    sig = np.logspace(-1.3, 1.3, 400)
    ax = axes[0]
    for r in [0.1, 1.0, 10.0]:
        nll = 0.5 * d * np.log(2 * np.pi * sig**2) + r / (2 * sig**2)
        (line,) = ax.semilogx(sig, nll, label=rf"$\|x-\mu\|^2={r:g}$")
        s_opt = np.sqrt(r / d)
        ax.plot([s_opt], [0.5 * d * np.log(2 * np.pi * s_opt**2) + r / (2 * s_opt**2)], "o",
                color=line.get_color(), ms=3.5)
    ax.set_ylim(-2, 6)
    ax.set_xlabel(r"$\sigma$")
    ax.set_title(r"$-\log P_\theta(x|z)$ vs. $\sigma$ ($d=1$)")
    ax.legend(loc="upper right")

    ax = axes[1]
    ax.loglog(sig, 1 / sig**2, label=r"$\|\nabla_{\mu}\|\,/\,\|x-\mu\| = 1/\sigma^2$")
    ax.set_xlabel(r"$\sigma$")
    ax.set_title("reconstruction gradient")
    ax.legend(loc="upper right")

    # exact-expectation gradient ascent on E log N(x; m, sigma^2), x ~ N(5, 0.5^2)
    ax = axes[2]
    m_true, s_true, lr, steps = 5.0, 0.5, 0.05, 400
    for mode, style, lab in [
        ("learned", "-", r"learned $\sigma$"),
        ("fixed", "--", r"fixed $\sigma=1$"),
        ("betanll", "-.", r"learned $\sigma$, $\mathrm{sg}(\sigma^2)$-weighted"),
    ]:
        m, logs = 0.0, 0.0
        traj = [m]
        for _ in range(steps):
            s2 = np.exp(2 * logs)
            r = (m_true - m) ** 2 + s_true**2  # E ||x - m||^2
            g_m = (m_true - m) / s2
            g_logs = -1.0 + r / s2
            if mode == "fixed":
                g_m, g_logs = (m_true - m), 0.0
            if mode == "betanll":
                g_m, g_logs = g_m * s2, g_logs * s2
            m, logs = m + lr * g_m, logs + lr * g_logs
            traj.append(m)
        ax.plot(traj, style, label=lab)
    ax.axhline(m_true, color="k", lw=0.7)
    ax.set_xlabel("gradient step")
    ax.set_ylabel("decoder mean $m$")
    ax.set_title(r"fitting $m$ to data $\mathcal{N}(5,0.5^2)$")
    ax.legend(loc="center right")
    fig.tight_layout()
    save(fig, "q2_variance.pdf")


# ---------------------------------------------------------------------------
# Question 3: score of an affine transformation, Langevin sampling of y
# ---------------------------------------------------------------------------
MIX_W = np.array([0.3, 0.7])
MIX_M = np.array([-1.5, 1.0])
MIX_S = np.array([0.6, 0.8])
A, B = -1.5, 3.0


def px(x):
    x = np.asarray(x)[..., None]
    return np.sum(MIX_W * np.exp(-0.5 * ((x - MIX_M) / MIX_S) ** 2) / (MIX_S * np.sqrt(2 * np.pi)), -1)


def sx(x):
    x = np.asarray(x)[..., None]
    comp = MIX_W * np.exp(-0.5 * ((x - MIX_M) / MIX_S) ** 2) / (MIX_S * np.sqrt(2 * np.pi))
    return np.sum(comp * (-(x - MIX_M) / MIX_S**2), -1) / np.sum(comp, -1)


def py(y):
    return px((y - B) / A) / abs(A)


def sy(y):
    return sx((y - B) / A) / A


def langevin(score, y0, eps, steps, rng):
    y = y0.copy()
    for _ in range(steps):
        y = y + eps * score(y) + np.sqrt(2 * eps) * rng.standard_normal(y.shape)
    return y


def fig_q3():
    rng = np.random.default_rng(0)
    y0 = B + 3.0 * rng.standard_normal(20000)  # broad initialisation in y-space
    ys = langevin(sy, y0, eps=0.02 * A**2, steps=1000, rng=rng)
    grid = np.linspace(-6, 8, 600)
    fig, axes = plt.subplots(1, 2, figsize=(6.6, 2.4))
    ax = axes[0]
    ax.plot(grid, px(grid), label=r"$P_X$ (mixture)")
    ax.plot(grid, py(grid), "--", label=rf"$P_Y$, $y={A:g}x+{B:g}$")
    ax.hist(ys, bins=80, density=True, alpha=0.35, color="C1", label="Langevin on $y$")
    ax.set_xlabel("value")
    ax.set_title("densities")
    ax.set_ylim(0, 0.45)
    ax.legend(loc="upper right")
    ax = axes[1]
    ax.plot(grid, sx(grid), label=r"$s_X(x)$")
    ax.plot(grid, sy(grid), "--", label=r"$s_Y(y)=s_X\!\left(\frac{y-b}{a}\right)/a$")
    ax.set_ylim(-8, 8)
    ax.set_xlabel("value")
    ax.set_title("score functions")
    ax.legend(loc="upper right")
    fig.tight_layout()
    save(fig, "q3_affine_score.pdf")


# ---------------------------------------------------------------------------
# Question 4: where the two VQ losses send their gradients (2-D toy picture)
# ---------------------------------------------------------------------------
def fig_q4():
    rng = np.random.default_rng(1)
    codebook = np.array([[-1.5, 1.0], [1.2, 1.4], [0.8, -1.4]])
    u = np.concatenate(
        [rng.normal([-0.6, 0.5], 0.25, (6, 2)), rng.normal([1.8, 0.6], 0.25, (6, 2))]
    )
    k = np.argmin(((u[:, None, :] - codebook[None]) ** 2).sum(-1), 1)
    z = codebook[k]
    beta, lr = 0.25, 0.5
    fig, ax = plt.subplots(1, 1, figsize=(3.6, 3.0))
    ax.scatter(u[:, 0], u[:, 1], s=12, c="C0", label=r"encoder outputs $u$", zorder=3)
    ax.scatter(codebook[:, 0], codebook[:, 1], s=60, marker="*", c="C3", label=r"codebook $e_k$", zorder=3)
    for j in range(len(u)):
        ax.plot([u[j, 0], z[j, 0]], [u[j, 1], z[j, 1]], color="0.7", lw=0.5, zorder=1)
        du = -lr * beta * 2 * (u[j] - z[j])  # -lr * beta * d/du ||sg(z) - u||^2
        ax.annotate("", xy=u[j] + du, xytext=u[j],
                    arrowprops={"arrowstyle": "->", "color": "C0", "lw": 0.9})
    for kk in range(len(codebook)):
        sel = k == kk
        if not sel.any():
            continue
        de = -lr * 2 * (codebook[kk] - u[sel]).sum(0) / sel.sum()  # codebook loss gradient (mean)
        ax.annotate("", xy=codebook[kk] + de, xytext=codebook[kk],
                    arrowprops={"arrowstyle": "->", "color": "C3", "lw": 1.4})
    ax.plot([], [], color="C3", label=r"$-\nabla_{e}\,\|\mathrm{sg}(u)-z\|^2$ (codebook)")
    ax.plot([], [], color="C0", label=r"$-\beta\nabla_{u}\,\|\mathrm{sg}(z)-u\|^2$ (commitment)")
    ax.text(1.05, -1.45, "unused code:\nno gradient", fontsize=6.5, ha="left", va="center")
    ax.set_aspect("equal")
    ax.set_xlim(-2.3, 2.8)
    ax.set_ylim(-2.0, 2.0)
    ax.set_title(r"one gradient step of the VQ losses ($\beta=0.25$)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=6.5)
    save(fig, "q4_vq_losses.pdf")


def main():
    fig_q1_objective()
    fig_q1_generator_signal()
    fig_q1_training()
    fig_q2()
    fig_q3()
    fig_q4()


if __name__ == "__main__":
    main()
