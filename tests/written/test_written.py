"""Numerical checks of every closed form in the written answers (written/q1-q4.tex).

Each test compares a formula stated in the answers with an *independent* numerical
computation (finite differences, Monte Carlo, quadrature, scipy's own distributions,
torch autograd), so a wrong formula makes the test fail; question 4's losses are also checked
on the notebook's own quantiser (the `nb` fixture of tests/conftest.py). CPU only, a few seconds.
"""

import importlib.util
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numpy.polynomial.hermite_e import hermegauss
from scipy import stats
from scipy.integrate import quad
from scipy.optimize import minimize_scalar

ROOT = Path(__file__).resolve().parents[2]
WRITTEN = ROOT / "written"

# ---------------------------------------------------------------------------
# helpers: expectations over N(0,1) by Gauss-Hermite quadrature
# ---------------------------------------------------------------------------
_T, _WT = hermegauss(100)
_WT = _WT / np.sqrt(2 * np.pi)


def gauss_E(f):
    return float(np.sum(_WT * f(_T)))


def logsig(s):
    return -np.logaddexp(0.0, -s)


def sig(s):
    return 0.5 * (1.0 + np.tanh(0.5 * s))


def V(w, phi, mu):
    """Vanilla GAN objective, eq. (2) of q1: E log sig(phi(mu+e)) + E log sig(-phi(w+e))."""
    return gauss_E(lambda e: logsig(phi * (mu + e))) + gauss_E(lambda e: logsig(-phi * (w + e)))


def dV_dphi_formula(w, phi, mu):
    """eq. (3) of q1."""
    return gauss_E(lambda e: (mu + e) * sig(-phi * (mu + e))) - gauss_E(lambda e: (w + e) * sig(phi * (w + e)))


def dV_dw_formula(w, phi, mu):
    """eq. (4) of q1."""
    return -phi * gauss_E(lambda e: sig(phi * (w + e)))


def d2V_dphi2_formula(w, phi, mu):
    """eq. (5) of q1."""
    return -gauss_E(lambda e: (mu + e) ** 2 * sig(phi * (mu + e)) * sig(-phi * (mu + e))) - gauss_E(
        lambda e: (w + e) ** 2 * sig(phi * (w + e)) * sig(-phi * (w + e)))


def V_of_phi(w, mu):
    return partial(V, w, mu=mu)


def V_of_w(phi, mu):
    return partial(V, phi=phi, mu=mu)


def fd(f, x, h=1e-4):
    return (f(x + h) - f(x - h)) / (2 * h)


def fd2(f, x, h=1e-3):
    return (f(x + h) - 2 * f(x) + f(x - h)) / h**2


def _neg(p, f):
    return -f(p)


def phi_star_scipy(w, mu):
    """Maximiser of V(w, .) by a derivative-free bounded search (independent of Newton)."""
    res = minimize_scalar(lambda p: -V(w, p, mu), bounds=(-30, 30), method="bounded",
                          options={"xatol": 1e-10})
    # refine on a bracket around the result: V is concave, golden section is enough
    res = minimize_scalar(lambda p: -V(w, p, mu), bracket=(res.x - 0.5, res.x, res.x + 0.5),
                          method="golden", tol=1e-12)
    return res.x


POINTS = [(-1.0, 0.7, 2.0), (3.0, -0.4, 2.0), (0.5, 1.3, -1.0), (-4.0, 2.5, 1.0), (2.0, 0.0, 2.0)]


# ---------------------------------------------------------------------------
# Question 1: vanilla GAN
# ---------------------------------------------------------------------------
def test_q1_vanilla_objective_matches_monte_carlo():
    """The Gaussian-expectation form of V equals E_x log D(x) + E_z log(1 - D(G(z)))."""
    rng = np.random.default_rng(0)
    n = 400_000
    for w, phi, mu in [(-1.0, 0.7, 2.0), (0.5, -1.3, -1.0)]:
        x = rng.normal(mu, 1.0, n)
        z = rng.normal(0.0, 1.0, n)
        d_real = 1 / (1 + np.exp(-phi * x))
        d_fake = 1 / (1 + np.exp(-phi * (w + z)))
        samples = np.log(d_real) + np.log(1 - d_fake)
        mc, se = samples.mean(), samples.std() / np.sqrt(n)
        assert abs(V(w, phi, mu) - mc) < 5 * se + 1e-12


def test_q1_vanilla_gradients_match_finite_differences():
    for w, phi, mu in POINTS:
        dphi = dV_dphi_formula(w, phi, mu)
        dw = dV_dw_formula(w, phi, mu)
        d2 = d2V_dphi2_formula(w, phi, mu)
        assert dphi == pytest.approx(fd(V_of_phi(w, mu), phi), abs=1e-7)
        assert dw == pytest.approx(fd(V_of_w(phi, mu), w), abs=1e-7)
        assert d2 == pytest.approx(fd2(V_of_phi(w, mu), phi), abs=1e-4)
        assert d2 < 0


def test_q1_vanilla_strictly_concave_in_phi():
    for w, mu in [(-3.0, 2.0), (2.0, 2.0), (5.0, -1.0)]:
        phis = np.linspace(-6, 6, 241)
        vals = np.array([V(w, p, mu) for p in phis])
        assert np.all(np.diff(vals, 2) < 0)


@pytest.mark.parametrize("mu", [-1.5, 0.0, 0.8, 2.0, 4.0])
def test_q1_phi_zero_is_unique_maximiser_at_w_equal_mu(mu):
    assert V(mu, 0.0, mu) == pytest.approx(-2 * np.log(2), abs=1e-12)  # D = 1/2 on both terms
    assert fd(V_of_phi(mu, mu), 0.0) == pytest.approx(0.0, abs=1e-8)
    others = [p for p in np.linspace(-5, 5, 201) if abs(p) > 1e-9]
    assert all(V(mu, p, mu) < -2 * np.log(2) for p in others)
    assert phi_star_scipy(mu, mu) == pytest.approx(0.0, abs=1e-5)
    assert sig(0.0 * np.linspace(-10, 10, 5)) == pytest.approx(0.5)


def test_q1_vanilla_minmax_solution_is_w_equal_mu():
    """max_phi V(w, phi) > -2 log 2 for w != mu, and V(w, 0) = -2 log 2 for all w."""
    mu = 1.0
    for w in [-3.0, -0.5, 0.5, 0.9, 1.1, 2.0, 4.0]:
        assert V(w, 0.0, mu) == pytest.approx(-2 * np.log(2), abs=1e-12)
        assert fd(V_of_phi(w, mu), 0.0) == pytest.approx((mu - w) / 2, abs=1e-7)
        best = -minimize_scalar(_neg, args=(V_of_phi(w, mu),), bounds=(-30, 30), method="bounded").fun
        assert best > -2 * np.log(2) + 1e-6


def _even_integrand(x, m, phi):
    return x * sig(-phi * x) * stats.norm.pdf(x, m, 1.0)


def test_q1_vanilla_generator_gradient_vanishes_far_from_mu():
    """Numbers quoted in q1: |dV/dw| at phi*(w), mu = 2, and phi* -> 2 mu."""
    mu = 2.0
    quoted = {-2.0: 1.4e-1, -4.0: 6.6e-4, -6.0: 4.3e-7, -8.0: 1.5e-10}
    for w, value in quoted.items():
        p = phi_star_scipy(w, mu)
        g = fd(V_of_w(p, mu), w, h=1e-3)
        assert abs(g) == pytest.approx(value, rel=0.05)
        assert abs(g) <= p * np.exp(p * w + p**2 / 2) * (1 + 1e-6)  # the bound sigma(t) <= e^t
    assert phi_star_scipy(-10.0, mu) == pytest.approx(2 * mu, abs=1e-3)
    # the evenness argument: E[x sigma(-2 mu x)] = 0 for x ~ N(mu, 1)
    for m in [0.5, 1.0, 2.0, 3.0]:
        val = quad(_even_integrand, -np.inf, np.inf, args=(m, 2 * m), epsabs=1e-13)[0]
        assert val == pytest.approx(0.0, abs=1e-10)
        assert quad(_even_integrand, -np.inf, np.inf, args=(m, m))[0] > 1e-3  # only phi = 2 mu works


def test_q1_simulated_training_matches_caption():
    spec = importlib.util.spec_from_file_location("written_figures", WRITTEN / "figures.py")
    figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figures)
    ws, phis = figures.simulate_q1("vanilla")
    assert abs(ws[-1] - ws[0]) < 1e-4 and phis[-1] == pytest.approx(4.0, abs=0.05)
    ws, _ = figures.simulate_q1("wgan")
    assert np.argmax(ws >= figures.MU) == 81 and np.all(np.abs(ws[90:] - figures.MU) < 0.5)
    ws, _ = figures.simulate_q1("ns")
    assert abs(ws[-1] - figures.MU) < 0.2


# ---------------------------------------------------------------------------
# Question 1: W-GAN
# ---------------------------------------------------------------------------
def W_mc(w, phi, mu, n=200_000, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(mu, 1.0, n)
    gz = w + rng.normal(0.0, 1.0, n)
    return np.mean(phi * x) - np.mean(phi * gz), np.std(phi * x - phi * gz) / np.sqrt(n)


def W_quad(w, phi, mu):
    """E_x[phi x] - E_z[phi (w + z)] by quadrature."""
    return gauss_E(lambda e: phi * (mu + e)) - gauss_E(lambda e: phi * (w + e))


def test_q1_wgan_objective_and_gradients():
    for w, phi, mu in [(-1.0, 0.7, 2.0), (3.0, -0.4, 2.0), (0.5, 1.0, -1.0)]:
        mc, se = W_mc(w, phi, mu)
        assert abs(phi * (mu - w) - mc) < 5 * se  # eq. (7)
        assert W_quad(w, phi, mu) == pytest.approx(phi * (mu - w), abs=1e-12)
        assert fd(partial(W_quad, w, mu=mu), phi) == pytest.approx(mu - w, abs=1e-8)  # eq. (8)
        assert fd(partial(W_quad, phi=phi, mu=mu), w) == pytest.approx(-phi, abs=1e-8)


def test_q1_wgan_inner_and_outer_solution():
    mu = 1.5
    phis = np.linspace(-1, 1, 2001)
    ws = np.linspace(-4, 6, 1001)
    inner = []
    for w in ws:
        vals = phis * (mu - w)
        inner.append(vals.max())
        if abs(w - mu) > 1e-9:
            assert phis[np.argmax(vals)] == pytest.approx(np.sign(mu - w))  # phi* = sign(mu - w)
        assert vals.max() == pytest.approx(abs(mu - w), abs=1e-12)  # value |mu - w|
    inner = np.array(inner)
    assert ws[np.argmin(inner)] == pytest.approx(mu, abs=1e-2)  # outer min at w = mu
    assert inner.min() == pytest.approx(0.0, abs=1e-2)
    # generator gradient at the optimal critic has magnitude 1 (numerical derivative of the envelope)
    def envelope(w):
        return max(phis * (mu - w))

    for w in [-30.0, -3.0, 0.0, 3.0, 30.0]:
        assert fd(envelope, w, h=1e-3) == pytest.approx(-np.sign(mu - w), abs=1e-6)


def test_q1_wgan_value_is_wasserstein1_distance():
    rng = np.random.default_rng(2)
    for mu, w in [(2.0, -6.0), (0.0, 1.5)]:
        a = rng.normal(mu, 1.0, 100_000)
        b = rng.normal(w, 1.0, 100_000)
        assert stats.wasserstein_distance(a, b) == pytest.approx(abs(mu - w), abs=0.03)


# ---------------------------------------------------------------------------
# Question 2: ELBO with learned scalar decoder variance
# ---------------------------------------------------------------------------
def _linear_vae(seed=0, d=3, m=2):
    rng = np.random.default_rng(seed)
    return {"A": rng.normal(size=(m, d)) * 0.5, "B": rng.normal(size=(d, m)), "c": rng.normal(size=d),
            "x": rng.normal(size=d), "d": d, "m": m}


def test_q2_gaussian_loglik_and_kl_closed_forms():
    rng = np.random.default_rng(3)
    d = 4
    x, mu = rng.normal(size=d), rng.normal(size=d)
    for s2 in [0.01, 0.3, 1.0, 7.0]:
        closed = -d / 2 * np.log(2 * np.pi * s2) - np.sum((x - mu) ** 2) / (2 * s2)  # eq. (2)
        assert closed == pytest.approx(stats.multivariate_normal(mu, s2 * np.eye(d)).logpdf(x))
    m = 3
    eta = rng.normal(size=m)
    z = eta + rng.normal(size=(200_000, m))
    diff = stats.multivariate_normal(eta, np.eye(m)).logpdf(z) - stats.multivariate_normal(
        np.zeros(m), np.eye(m)).logpdf(z)
    assert abs(diff.mean() - 0.5 * eta @ eta) < 5 * diff.std() / np.sqrt(len(diff))  # eq. (3)


@pytest.mark.parametrize("s2", [0.25, 1.0, 4.0])
def test_q2_elbo_closed_form_matches_monte_carlo(s2):
    """Linear encoder/decoder, constant sigma: eq. (4) in closed form vs a direct MC estimate
    of E_Q[log P(x|z) + log P(z) - log Q(z|x)] computed with scipy densities."""
    p = _linear_vae()
    A, B, c, x, d, m = p["A"], p["B"], p["c"], p["x"], p["d"], p["m"]
    eta = A @ x
    # E||x - B(eta+eps) - c||^2 = ||x - B eta - c||^2 + ||B||_F^2
    closed = (-d / 2 * np.log(2 * np.pi * s2)
              - (np.sum((x - B @ eta - c) ** 2) + np.sum(B**2)) / (2 * s2) - 0.5 * eta @ eta)
    rng = np.random.default_rng(4)
    z = eta + rng.normal(size=(200_000, m))
    mu = z @ B.T + c
    logpx_z = stats.norm(mu, np.sqrt(s2)).logpdf(x).sum(1)
    logpz = stats.norm(0, 1).logpdf(z).sum(1)
    logq = stats.norm(eta, 1).logpdf(z).sum(1)
    terms = logpx_z + logpz - logq
    assert abs(terms.mean() - closed) < 5 * terms.std() / np.sqrt(len(terms))
    # it is a lower bound on the exact evidence x ~ N(c, B B^T + s2 I)
    logpx = stats.multivariate_normal(c, B @ B.T + s2 * np.eye(d)).logpdf(x)
    assert closed <= logpx + 1e-12
    if s2 == 1.0:  # eq. (5): the unit-variance ELBO is the same formula at sigma = 1
        unit = -d / 2 * np.log(2 * np.pi) - 0.5 * (np.sum((x - B @ eta - c) ** 2) + np.sum(B**2)) - 0.5 * eta @ eta
        assert unit == pytest.approx(closed)


def test_q2_elbo_with_z_dependent_variance_monte_carlo():
    """eq. (4) with sigma(z) = exp(g.z + h): per-sample integrand vs scipy densities."""
    p = _linear_vae(seed=5)
    A, B, c, x, d, m = p["A"], p["B"], p["c"], p["x"], p["d"], p["m"]
    g, h = np.array([0.3, -0.2]), 0.1
    eta = A @ x
    rng = np.random.default_rng(6)
    eps = rng.normal(size=(100_000, m))
    z = eta + eps
    mu, s2 = z @ B.T + c, np.exp(2 * (z @ g + h))
    formula = (-d / 2 * np.log(2 * np.pi * s2) - np.sum((x - mu) ** 2, 1) / (2 * s2)).mean() - 0.5 * eta @ eta
    direct = (stats.norm(mu, np.sqrt(s2)[:, None]).logpdf(x).sum(1) + stats.norm(0, 1).logpdf(z).sum(1)
              - stats.norm(eta, 1).logpdf(z).sum(1))
    assert abs(direct.mean() - formula) < 5 * direct.std() / np.sqrt(len(direct))


def test_q2_reconstruction_gradient_scales_like_inverse_variance():
    x = torch.tensor([1.0, -2.0, 0.5])
    mu0 = torch.tensor([0.2, 0.3, -0.4])
    grads = {}
    for sigma in [0.5, 1.0, 2.0, 4.0, 8.0]:
        mu = mu0.clone().requires_grad_(True)
        s = torch.tensor(sigma)
        ell = -(x - mu).pow(2).sum() / (2 * s**2) - 3 / 2 * torch.log(s**2)
        (g,) = torch.autograd.grad(ell, mu)
        grads[sigma] = g
        assert torch.allclose(g, (x - mu0) / sigma**2)  # eq. (6)
    for s in [0.5, 1.0, 2.0, 4.0]:
        ratio = grads[2 * s].norm() / grads[s].norm()
        assert float(ratio) == pytest.approx(0.25)  # doubling sigma quarters the gradient
    # numpy finite differences of the same scalar objective (independent of autograd)
    xn, mn = x.numpy().astype(float), mu0.numpy().astype(float)
    def recon(v, i, sigma):
        return -np.sum((xn - np.where(np.arange(3) == i, v, mn)) ** 2) / (2 * sigma**2)

    for sigma in [0.5, 8.0]:
        g_fd = [fd(partial(recon, i=i, sigma=sigma), mn[i]) for i in range(3)]
        assert np.allclose(g_fd, (xn - mn) / sigma**2, atol=1e-7)


def test_q2_sigma_gradient_and_optimal_variance():
    d, r = 5, 3.7

    def ell(s):
        return -d * np.log(s) - r / (2 * s**2)

    for s in [0.3, 1.0, 2.5]:
        assert fd(ell, s) == pytest.approx(-d / s + r / s**3, rel=1e-6)  # eq. (7)
    best = minimize_scalar(_neg, args=(ell,), bounds=(1e-3, 100), method="bounded", options={"xatol": 1e-10})
    assert best.x**2 == pytest.approx(r / d, rel=1e-6)  # sigma^2 = ||x - mu||^2 / d
    # plugging the optimum in gives -d/2 log(2 pi e r / d) for the full Gaussian log-likelihood
    full = -d / 2 * np.log(2 * np.pi * best.x**2) - r / (2 * best.x**2)
    assert full == pytest.approx(-d / 2 * np.log(2 * np.pi * np.e * r / d), rel=1e-8)


def test_q2_fixes_bounded_variance_and_sg_weighting():
    s = torch.linspace(-50, 50, 101)
    lo, hi = 1e-4, 10.0
    var = lo + (hi - lo) * torch.sigmoid(s)
    assert torch.all(var >= lo) and torch.all(var <= hi)
    assert torch.all(F.softplus(s) + 1e-3 >= 1e-3)
    # beta-NLL with beta = 1: gradient wrt mu equals the unit-variance gradient x - mu
    x = torch.tensor([1.0, -2.0, 0.5])
    mu = torch.tensor([0.2, 0.3, -0.4], requires_grad=True)
    logvar = torch.tensor(3.0, requires_grad=True)
    loglik = -0.5 * (3 * logvar + (x - mu).pow(2).sum() * torch.exp(-logvar))
    (torch.exp(logvar).detach() * loglik).backward()
    assert torch.allclose(mu.grad, x - mu.detach())
    assert logvar.grad is not None and logvar.grad.item() != 0.0  # sigma still learns


def test_q2_closed_form_batch_variance():
    rng = np.random.default_rng(7)
    N, d = 16, 6
    res = rng.normal(size=(N, d)) * 0.7

    def nll(s2):
        return np.sum(d / 2 * np.log(2 * np.pi * s2) + np.sum(res**2, 1) / (2 * s2))

    best = minimize_scalar(nll, bounds=(1e-4, 10), method="bounded", options={"xatol": 1e-12})
    assert best.x == pytest.approx(np.sum(res**2) / (N * d), rel=1e-5)


# ---------------------------------------------------------------------------
# Question 3: score of y = a x + b
# ---------------------------------------------------------------------------
G_LOC, G_SCALE = 0.3, 1.2


def gumbel_score(x):
    """Score of gumbel_r(loc, scale): log p = -t - exp(-t) - log scale, t = (x - loc)/scale."""
    t = (x - G_LOC) / G_SCALE
    return (-1.0 + np.exp(-t)) / G_SCALE


def transformed_gumbel(a, b):
    """scipy's own distribution of a X + b (reference, not the answer's formula)."""
    if a > 0:
        return stats.gumbel_r(loc=a * G_LOC + b, scale=a * G_SCALE)
    return stats.gumbel_l(loc=a * G_LOC + b, scale=-a * G_SCALE)


def test_q3_gumbel_score_reference():
    xs = np.linspace(-3, 6, 19)
    ref = fd(stats.gumbel_r(loc=G_LOC, scale=G_SCALE).logpdf, xs, h=1e-5)
    assert np.allclose(gumbel_score(xs), ref, atol=1e-6)


@pytest.mark.parametrize("a,b", [(2.5, -1.0), (-0.7, 2.0), (-1.5, 3.0), (0.2, 0.0)])
def test_q3_density_and_score_of_affine_gumbel(a, b):
    X = stats.gumbel_r(loc=G_LOC, scale=G_SCALE)
    Y = transformed_gumbel(a, b)
    ys = a * np.linspace(-2.5, 6.0, 23) + b
    p_formula = X.pdf((ys - b) / a) / abs(a)  # eq. (1)
    assert np.allclose(p_formula, Y.pdf(ys), rtol=1e-10, atol=1e-14)
    s_formula = gumbel_score((ys - b) / a) / a  # eq. (2)
    s_numeric = fd(Y.logpdf, ys, h=1e-5 * abs(a))
    assert np.allclose(s_formula, s_numeric, rtol=1e-5, atol=1e-5)
    # the reference itself: samples of a X + b follow Y
    rng = np.random.default_rng(8)
    samples = a * X.rvs(size=20_000, random_state=rng) + b
    assert stats.kstest(samples, Y.cdf).pvalue > 1e-3


def test_q3_wrong_score_formulas_are_detected():
    a, b = -1.5, 3.0
    Y = transformed_gumbel(a, b)
    ys = a * np.linspace(-1.0, 4.0, 11) + b
    ref = fd(Y.logpdf, ys, h=1e-5)
    for wrong in [gumbel_score((ys - b) / a) * a, gumbel_score((ys - b) / a) / abs(a), gumbel_score(ys)]:
        assert not np.allclose(wrong, ref, rtol=1e-3, atol=1e-3)


MIX_W = np.array([0.3, 0.7])
MIX_M = np.array([-1.5, 1.0])
MIX_S = np.array([0.6, 0.8])


def mix_score(x):
    """Score of sum_k w_k N(m_k, s_k^2): sum_k r_k(x) (m_k - x) / s_k^2 with responsibilities r_k."""
    x = np.asarray(x)[..., None]
    logc = np.log(MIX_W / MIX_S) - 0.5 * ((x - MIX_M) / MIX_S) ** 2
    r = np.exp(logc - logc.max(-1, keepdims=True))
    return np.sum(r * (MIX_M - x) / MIX_S**2, -1) / np.sum(r, -1)


def _affine_mixture_logpdf(y, a, b):
    comps = stats.norm(a * MIX_M + b, abs(a) * MIX_S).pdf(np.asarray(y)[..., None])
    return np.log(np.sum(MIX_W * comps, -1))


def test_q3_mixture_score_against_closed_family():
    """A Gaussian mixture maps to the mixture of N(a m_k + b, a^2 s_k^2): compare with FD of its log density."""
    for a, b in [(-1.5, 3.0), (0.4, -2.0)]:
        ys = np.linspace(-6, 8, 57)
        logpy = partial(_affine_mixture_logpdf, a=a, b=b)
        assert np.allclose(mix_score((ys - b) / a) / a, fd(logpy, ys, h=1e-5), rtol=1e-5, atol=1e-6)


def _langevin(score, y0, tau, steps, rng):
    y = y0.copy()
    for _ in range(steps):
        y = y + tau * score(y) + np.sqrt(2 * tau) * rng.standard_normal(y.shape)
    return y


def _mix_mean_var(a, b):
    mean_x = np.sum(MIX_W * MIX_M)
    var_x = np.sum(MIX_W * (MIX_S**2 + MIX_M**2)) - mean_x**2
    return a * mean_x + b, a**2 * var_x


def test_q3_langevin_for_y_reproduces_mean_and_variance():
    a, b = -1.5, 3.0
    mean_y, var_y = _mix_mean_var(a, b)  # 2.625, 4.204

    def accepted(ys):  # mean within ~4 standard errors, variance within 6 %
        return abs(ys.mean() - mean_y) < 0.1 and abs(ys.var() / var_y - 1) < 0.06

    rng = np.random.default_rng(9)
    y0 = b + 2.0 * rng.standard_normal(6000)
    ys = _langevin(lambda y: mix_score((y - b) / a) / a, y0, tau=0.05 * a**2, steps=400, rng=rng)
    assert accepted(ys), (ys.mean(), mean_y, ys.var(), var_y)
    # negative controls: the same criterion rejects chains driven by wrong scores
    for wrong in [lambda y: mix_score((y - b) / a) * a, lambda y: mix_score((y - b) / a) / abs(a)]:
        rng = np.random.default_rng(9)
        bad = _langevin(wrong, y0, tau=0.05 * a**2, steps=400, rng=rng)
        assert not accepted(bad), (bad.mean(), bad.var())


def test_q3_y_chain_equals_mapped_x_chain():
    """Option A with step tau_y = a^2 tau_x and noise xi is option B with noise sign(a) xi."""
    a, b, tau_x = -1.7, 0.4, 0.01
    rng = np.random.default_rng(10)
    xi = rng.standard_normal((200, 50))
    x = rng.standard_normal(50)
    y = a * x + b
    for k in range(200):
        x = x + tau_x * mix_score(x) + np.sqrt(2 * tau_x) * np.sign(a) * xi[k]
        tau_y = a**2 * tau_x
        y = y + tau_y / a * mix_score((y - b) / a) + np.sqrt(2 * tau_y) * xi[k]
    assert np.allclose(y, a * x + b, atol=1e-9)


# ---------------------------------------------------------------------------
# Question 4: stop-gradient, codebook and commitment losses
# ---------------------------------------------------------------------------
def test_q4_notebook_losses_equal_in_value_the_mean_squared_distance_to_the_nearest_code(nb):
    """The answer's two losses as the notebook's quantiser computes them: equal in value (they differ only in where
    the gradient goes, which tests/notebook/test_q1_parts.py checks on the same quantiser), and equal to the mean
    squared distance of each encoder output to its nearest code, computed here with numpy."""
    torch.manual_seed(0)
    vq = nb.VectorQuantizer(8, 4)
    u = torch.randn(2, 4, 3, 3)
    out = vq(u)
    flat = u.permute(0, 2, 3, 1).reshape(-1, 4).numpy()
    squared = ((flat[:, None, :] - vq.codebook.detach().numpy()[None]) ** 2).sum(-1)  # [M, K]
    expected = squared.min(1).mean() / 4  # the mean over M positions and D = 4 dimensions
    assert out["codebook_loss"].item() == pytest.approx(expected, rel=1e-5)
    assert out["commitment_loss"].item() == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------------------
# the PDFs
# ---------------------------------------------------------------------------
