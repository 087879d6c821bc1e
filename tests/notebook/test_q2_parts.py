"""Question 2 building blocks, loaded from the notebook, checked against closed forms on toy data."""
import math

import pytest
import torch

WEIGHTS = torch.tensor([0.3, 0.7])
MEANS = torch.tensor([[-3.5, -1.4], [1.5, 0.6]])   # mixture mean 0, like the prior N(0, s(1)^2 I)
STD = 0.5


def mixture_score(sde):
    """Exact score of the 2-D Gaussian mixture after VE noising to time t: p_t = sum_k w_k N(mu_k, (STD^2 + s^2) I)."""
    def score(x, t):                                                             # x [B, 2], t scalar or [B]
        var = (STD ** 2 + sde.marginal_std(t) ** 2).reshape(-1, 1)                # [1, 1] or [B, 1]
        diff = x[:, None, :] - MEANS[None]                                        # [B, 2 components, 2]
        resp = torch.softmax(torch.log(WEIGHTS)[None] - diff.pow(2).sum(-1) / (2 * var), dim=1)  # [B, 2]
        return -(resp[..., None] * diff).sum(1) / var
    return score


def mixture_statistics(samples):
    """(weights [2], means [2, 2], per-coordinate variances [2, 2]) by nearest mixture mean."""
    assign = (samples[:, None] - MEANS[None]).pow(2).sum(-1).argmin(1)
    weights = torch.stack([(assign == k).float().mean() for k in range(2)])
    means = torch.stack([samples[assign == k].mean(0) for k in range(2)])
    variances = torch.stack([samples[assign == k].var(0) for k in range(2)])
    return weights, means, variances


@pytest.fixture
def sde(nb):
    return nb.VESDE(sigma=25.0, t_min=1e-5)


@pytest.mark.parametrize("rho", [7.0, None])
@pytest.mark.parametrize("sampler", ["em", "pc", "ode"])
def test_samplers_with_the_exact_score_reproduce_the_mixture(nb, sde, sampler, rho):
    generator = torch.Generator().manual_seed(0)
    score, shape = mixture_score(sde), (4000, 2)
    draw = {"em": lambda: nb.euler_maruyama(score, sde, shape, 500, generator, rho=rho)[0],
            "pc": lambda: nb.predictor_corrector(score, sde, shape, 250, snr=0.16, generator=generator, rho=rho),
            "ode": lambda: nb.probability_flow_heun(score, sde, shape, 250, generator, rho=rho)}[sampler]
    weights, means, variances = mixture_statistics(draw())
    assert torch.allclose(weights, WEIGHTS, atol=0.04)
    assert torch.allclose(means, MEANS, atol=0.1)
    assert torch.allclose(variances, torch.full((2, 2), STD ** 2), rtol=0.25)


def test_euler_maruyama_keeps_the_requested_snapshots(nb, sde):
    x, kept = nb.euler_maruyama(mixture_score(sde), sde, (10, 2), 20, snapshots=(0, 10, 19))
    assert set(kept) == {0, 10, 19} and torch.equal(kept[19], x)
    assert kept[0].std() > 3 * kept[19].std()


def noise_config(share: float) -> dict:
    return {"log_std_mean": -1.2, "log_std_spread": 1.2, "small_noise_share": share}


def test_dsm_target_is_the_conditional_score(nb, sde):
    """Data at one point x0: p_t = N(x0, s(t)^2 I), whose score -(x - x0)/s^2 is the DSM target: loss 0."""
    x0 = torch.tensor([[1.0, -2.0]]).repeat(256, 1)
    exact = lambda x, t: -(x - x0) / nb.per_sample(sde.marginal_std(t), x) ** 2  # noqa: E731
    for share in (0.0, 0.5, 1.0):
        assert nb.dsm_loss(exact, x0, sde, noise_config(share), 0.5).item() == pytest.approx(0.0, abs=1e-6)


def test_dsm_loss_weights_each_level_by_lambda(nb, sde):
    """A score off by a constant c has loss lambda(t) * s(t)^2 * c^2 * dims per sample, with
    lambda = (s^2 + sigma_d^2) / (1 + sigma_d^2): computed here from the same noise levels."""
    x0, c, sigma_data = torch.zeros(4096, 2), 0.1, 0.5
    exact = lambda x, t: -x / nb.per_sample(sde.marginal_std(t), x) ** 2 + c  # noqa: E731
    loss = nb.dsm_loss(exact, x0, sde, noise_config(0.2), sigma_data, generator=torch.Generator().manual_seed(4))
    s = sde.marginal_std(nb.sample_times(4096, sde, noise_config(0.2), torch.Generator().manual_seed(4)))
    expected = ((s ** 2 + sigma_data ** 2) / (1 + sigma_data ** 2) * s ** 2 * c ** 2 * 2).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)


@pytest.mark.parametrize("share", [0.0, 0.3])
def test_dsm_loss_is_lowest_at_the_exact_score(nb, sde, share):
    x0 = MEANS[torch.multinomial(WEIGHTS, 20000, replacement=True, generator=torch.Generator().manual_seed(1))]
    x0 = x0 + STD * torch.randn(x0.shape, generator=torch.Generator().manual_seed(2))
    exact = mixture_score(sde)

    def loss(score_fn):                                   # common random numbers for a fair comparison
        generator = torch.Generator().manual_seed(3)
        return nb.dsm_loss(score_fn, x0, sde, noise_config(share), 0.5, generator=generator).item()

    best = loss(exact)
    assert best < loss(lambda x, t: 1.2 * exact(x, t))
    assert best < loss(lambda x, t: 0.8 * exact(x, t))
    assert best < loss(lambda x, t: exact(x, t) + 0.3)


def test_noise_levels_mix_a_log_normal_and_a_log_uniform_share(nb, sde):
    """share 0: ln s(t) ~ N(mean, spread^2), clipped to the SDE's range; share 1: ln s uniform over the range; in
    between, the mixture in that proportion."""
    generator = torch.Generator().manual_seed(0)
    low, high = (math.log(s) for s in sde.std_range())
    log_std = sde.marginal_std(nb.sample_times(200000, sde, noise_config(0.0), generator)).log()
    assert log_std.min() >= low - 1e-3 and log_std.max() <= high + 1e-3
    inside = log_std[(log_std > low + 0.01) & (log_std < high - 0.01)]
    assert inside.median().item() == pytest.approx(-1.2, abs=0.02)
    assert ((inside + 1.2).abs() < 1.2).float().mean().item() == pytest.approx(0.683, abs=0.01)
    log_std = sde.marginal_std(nb.sample_times(200000, sde, noise_config(1.0), generator)).log()
    assert log_std.mean().item() == pytest.approx((low + high) / 2, abs=0.02)
    small = sde.marginal_std(nb.sample_times(200000, sde, noise_config(0.25), generator)) < 0.05
    normal_share = torch.distributions.Normal(-1.2, 1.2).cdf(torch.tensor(math.log(0.05))).item()
    expected = 0.75 * normal_share + 0.25 * (math.log(0.05) - low) / (high - low)
    assert small.float().mean().item() == pytest.approx(expected, abs=0.005)


def test_the_noise_level_grid(nb, sde):
    """Geometric by default; rho-spaced: s_i = (s_max^(1/rho) + i/N (s_min^(1/rho) - s_max^(1/rho)))^rho. Both from
    t = 1 down to t_min."""
    s_min, s_max = sde.std_range()
    for rho in (7.0, None):
        times = nb.noise_level_times(sde, 10, rho)
        assert times[0] == 1.0 and times[-1] == sde.t_min and (times[1:] < times[:-1]).all()
    i = torch.arange(11) / 10
    rho_levels = (s_max ** (1 / 7) + i * (s_min ** (1 / 7) - s_max ** (1 / 7))) ** 7
    assert torch.allclose(sde.marginal_std(nb.noise_level_times(sde, 10, 7.0)[1:-1]), rho_levels[1:-1], rtol=1e-4)
    geometric = sde.marginal_std(nb.noise_level_times(sde, 10))                      # the default
    ratios = geometric[1:-1] / geometric[:-2]
    assert torch.allclose(ratios, ratios[0].expand_as(ratios), rtol=1e-3)


def test_an_euler_maruyama_step_adds_the_integral_of_g_squared(nb, sde):
    """The drift and the noise of one step use D = s(t)^2 - s(t')^2, the integral of g^2 over [t', t]."""
    t, t_next = torch.tensor(0.6), torch.tensor(0.5)
    grid = torch.linspace(0.5, 0.6, 20001)
    integral = torch.trapezoid(sde.diffusion(grid) ** 2, grid).item()
    x = torch.zeros(20000, 1)
    drift_only = nb.reverse_sde_step(lambda x, t: torch.ones_like(x), sde, x, t, t_next, noise=False)
    assert drift_only[0].item() == pytest.approx(integral, rel=1e-4)
    noisy = nb.reverse_sde_step(lambda x, t: torch.zeros_like(x), sde, x, t, t_next,
                                torch.Generator().manual_seed(0))
    assert noisy.var().item() == pytest.approx(integral, rel=0.03)


def test_heun_is_second_order(nb):
    """For dx/dt = x one Heun step of h multiplies by 1 + h + h^2/2; halving h divides the global error by ~4."""
    step = nb.heun_step(lambda state, t: (state[0],), (torch.tensor([1.0]),), 0.0, 0.1)
    assert step[0].item() == pytest.approx(1 + 0.1 + 0.005, abs=1e-7)

    def error(n):
        state = (torch.tensor([1.0], dtype=torch.float64),)
        for k in range(n):
            state = nb.heun_step(lambda s, t: (s[0],), state, k / n, (k + 1) / n)
        return abs(state[0].item() - math.e)
    assert 3.6 < error(20) / error(40) < 4.4


def test_time_of_std_inverts_marginal_std(nb, sde):
    t = torch.linspace(sde.t_min, 1.0, 50)
    assert torch.allclose(sde.time_of_std(sde.marginal_std(t)), t, rtol=1e-4, atol=1e-7)


def test_dequantize_stays_within_the_pixel_bin(nb):
    images = torch.randint(0, 256, (64, 1, 28, 28)).float() / 255
    x = nb.dequantize(images, torch.Generator().manual_seed(0))
    k = (images * 255).round()
    assert (x >= k / 256).all() and (x <= (k + 1) / 256).all()             # up to float rounding
    assert torch.equal(x, nb.dequantize(images, torch.Generator().manual_seed(0))), "the generator fixes the draw"


def test_ode_likelihood_of_a_gaussian_matches_its_density(nb, sde):
    dims, s0 = 6, 1.0
    x = torch.randn(64, dims, generator=torch.Generator().manual_seed(0)) * s0
    exact_score = lambda x, t: -x / (s0 ** 2 + sde.marginal_std(t) ** 2)  # noqa: E731
    log_p = nb.ode_log_likelihood(exact_score, sde, x.clone(), steps=200, generator=torch.Generator().manual_seed(1))
    def log_normal(x, var):
        return -0.5 * dims * math.log(2 * math.pi * var) - x.pow(2).sum(1) / (2 * var)

    closed_form = log_normal(x, s0 ** 2)
    # the ODE starts from the prior N(0, s(1)^2) while the true p_1 is N(0, s0^2 + s(1)^2); the flow of a
    # Gaussian is linear, x_1 = x * sqrt(var_1 / var_0), so the mismatch it adds is known exactly
    var_0 = s0 ** 2 + sde.marginal_std(torch.tensor(sde.t_min)).item() ** 2
    var_1 = s0 ** 2 + sde.marginal_std(torch.tensor(1.0)).item() ** 2
    x_1 = x * math.sqrt(var_1 / var_0)
    prior_mismatch = log_normal(x_1, var_1 - s0 ** 2) - log_normal(x_1, var_1)
    assert torch.allclose(log_p, closed_form + prior_mismatch, atol=0.01)
    bpd = nb.bits_per_dim(closed_form, dims)
    assert torch.allclose(bpd, -closed_form / (dims * math.log(2)) + 8)


def test_score_network_shape_and_time_conditioning(nb, sde):
    torch.manual_seed(0)
    net = nb.ScoreNet(sde.marginal_std, channels=(8, 16, 32), embed_dim=16)
    x = torch.randn(3, 1, 28, 28)
    out = net(x, torch.full((3,), 0.5))
    assert out.shape == x.shape
    assert not torch.allclose(out, net(x, torch.full((3,), 0.9))), "time must change the network's output"


def test_the_preconditioned_score_is_tweedies_formula(nb, sde):
    """score = (D - x) / s^2 with D = c_skip x + c_out F(c_in x). With F = 0 the denoiser shrinks x toward 0 by
    c_skip, which is exactly the posterior mean of x0 ~ N(0, sigma_d^2 I): the score must be that Gaussian's
    blurred score -x / (sigma_d^2 + s^2). With F = 1 it moves by c_out / s^2 = sigma_d / (s sqrt(s^2 + sigma_d^2)).
    And F sees its input at unit scale, c_in x."""
    net = nb.ScoreNet(sde.marginal_std, channels=(8, 16, 32), embed_dim=16, sigma_data=0.4)
    x, t = torch.randn(3, 1, 28, 28) * 5, torch.tensor([0.1, 0.5, 0.9])
    s = sde.marginal_std(t).view(-1, 1, 1, 1)
    seen = []
    net.unet.forward = lambda inputs, e: seen.append(inputs) or torch.zeros_like(inputs)
    assert torch.allclose(net(x, t), -x / (0.4 ** 2 + s ** 2), rtol=1e-5)
    assert torch.allclose(seen[0], x / torch.sqrt(s ** 2 + 0.4 ** 2))
    net.unet.forward = lambda inputs, e: torch.ones_like(inputs)
    shift = net(x, t) + x / (0.4 ** 2 + s ** 2)
    assert torch.allclose(shift, (0.4 / (s * torch.sqrt(s ** 2 + 0.4 ** 2))).expand_as(x), rtol=1e-4)


def test_unconditional_network_takes_no_labels(nb, sde):
    net = nb.ScoreNet(sde.marginal_std, channels=(8, 16, 32), embed_dim=16)
    assert not any("label" in name for name, _ in net.named_parameters())
    with pytest.raises(ValueError, match="unconditional"):
        net(torch.randn(2, 1, 28, 28), torch.full((2,), 0.5), torch.tensor([3, 3]))


@pytest.mark.parametrize("space_to_depth", [True, False])
def test_score_network_shapes_at_both_layouts(nb, sde, space_to_depth):
    net = nb.ScoreNet(sde.marginal_std, channels=(8, 16, 32), embed_dim=16, space_to_depth=space_to_depth)
    x = torch.randn(3, 1, 28, 28)
    assert net(x, torch.rand(3)).shape == x.shape


def test_score_network_residual_blocks_per_level(nb, sde):
    """res_blocks gives each level its own count (the bench's former network has none at its first level); a count
    list that does not match the levels is refused with both lists in the message."""
    net = nb.ScoreNet(sde.marginal_std, channels=(8, 16, 32), embed_dim=16, res_blocks=(0, 1, 2))
    assert [len(level) for level in net.unet.res] == [0, 1, 2]
    expected = r"res_blocks \[1, 1\] must give one count per level of \[8, 16, 32\]"
    with pytest.raises(ValueError, match=expected):
        nb.ScoreNet(sde.marginal_std, channels=(8, 16, 32), res_blocks=(1, 1))


def test_conditional_network_starts_as_the_unconditional_one(nb, sde):
    """The label embedding starts at zero: loaded with unconditional weights, every label gives the same score,
    which must then change with the label once the embedding is trained (here: set at random)."""
    torch.manual_seed(0)
    unconditional = nb.ScoreNet(sde.marginal_std, channels=(8, 16, 32), embed_dim=16).eval()
    conditional = nb.ScoreNet(sde.marginal_std, channels=(8, 16, 32), embed_dim=16, n_classes=10).eval()
    missing, unexpected = conditional.load_state_dict(unconditional.state_dict(), strict=False)
    assert missing == ["label_embed.weight"] and not unexpected
    x, t = torch.randn(2, 1, 28, 28), torch.full((2,), 0.5)
    reference = unconditional(x, t)
    for labels in (torch.tensor([3, 5]), torch.full((2,), conditional.null_label)):
        assert torch.allclose(conditional(x, t, labels), reference, atol=1e-6)
    torch.nn.init.normal_(conditional.label_embed.weight)
    assert not torch.allclose(conditional(x, t, torch.tensor([3, 3])), conditional(x, t, torch.tensor([5, 5])))
    with pytest.raises(IndexError):
        conditional(x, t, torch.tensor([11, 0]))                  # beyond the ten digits and the null token


def test_main_model_training_never_sees_labels(nb, sde):
    """train_score_model without labels trains a network that has no label input at all, while a conditional stage
    does read its labels (invalid ones fail): the main model's training cannot depend on a label."""
    images = torch.rand(32, 1, 28, 28)
    config = {"epochs": 1, "batch": 16, "lr": 1e-3, "ema_decay": 0.9, **noise_config(0.1), "dequantize": True}
    net_config = {"channels": [8, 16, 32], "embed_dim": 16, "res_blocks": [1, 1, 1], "space_to_depth": True,
                  "sigma_data": 0.5}
    torch.manual_seed(0)
    net, losses = nb.train_score_model(config, net_config, sde, images)
    assert not any("label" in name for name, _ in net.named_parameters())
    assert len(losses) == 2
    torch.manual_seed(0)
    with pytest.raises(IndexError):           # a conditional stage does read its labels: invalid ones fail
        conditional = {**config, "label_dropout": 0.0, "label_lr_factor": 10}
        nb.train_score_model(conditional, net_config, sde, images, torch.full((32,), 99))


def test_guided_score_is_the_classifier_free_combination(nb, sde):
    torch.manual_seed(0)
    net = nb.ScoreNet(sde.marginal_std, channels=(8, 16, 32), embed_dim=16, n_classes=10).eval()
    torch.nn.init.normal_(net.label_embed.weight)
    x, labels, t = torch.randn(3, 1, 28, 28), torch.tensor([1, 4, 7]), torch.tensor(0.3)
    conditional, unconditional = net(x, t.expand(3), labels), net(x, t.expand(3), torch.full((3,), 10))
    for w in (0.0, 1.0, 2.5):
        guided = nb.score_function(net, labels, w)(x, t)
        assert torch.allclose(guided, (1 + w) * conditional - w * unconditional, atol=1e-4)
    with pytest.raises(ValueError, match="needs the labels"):
        nb.score_function(net, None, 1.0)


class ExactLabelScore(torch.nn.Module):
    """A stand-in score network: label y's 'images' are N(m_y, STD^2 I) with a flat mean image m_y, and this is
    their exact noised score (the "no label" token gets the mean of all ten)."""

    null_label, flat_means, std = 10, 0.1 + 0.08 * torch.arange(10.0), 0.1

    def __init__(self, sde):
        super().__init__()
        self.sde = sde

    def forward(self, x, t, y):
        means = torch.cat([self.flat_means, self.flat_means.mean()[None]])
        mean = means[y].view(-1, 1, 1, 1)
        return -(x - mean) / (self.std ** 2 + self.sde.marginal_std(t).view(-1, 1, 1, 1) ** 2)


@pytest.mark.parametrize("sampler", ["em", "pc", "ode"])
def test_sampled_images_follow_their_labels_across_uneven_batches(nb, sde, sampler):
    """Guided sampling (here w = 0: the conditional score) asks for the digits 0, 1, ..., 9, 0 in turn; with the
    exact score of each label, sample i must come out near the mean of label i % 10, batch after batch."""
    net = ExactLabelScore(sde)
    images = nb.sample_images(net, sde, sampler, 11, 400, 0.16, seed=0, batch=4, w=0.0)
    assert images.shape == (11, 1, 28, 28)
    assert torch.allclose(images.mean((1, 2, 3)), net.flat_means[torch.arange(11) % 10], atol=0.02)


def test_weight_average_is_an_exponential_moving_average_with_a_warm_up(nb):
    """The first update copies the weights; the k-th does theta_ema <- d theta_ema + (1 - d) theta with
    d = min(decay, (1 + k) / (10 + k)), computed here by hand; the average has no gradients and survives a
    state_dict round trip."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    averaged = nb.weight_average(model, decay=0.95)
    expected = None
    for k in range(1, 61):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        averaged.update_parameters(model)
        current = [p.detach().clone() for p in model.parameters()]
        d = min(0.95, (1 + k) / (10 + k))
        expected = current if expected is None else [d * e + (1 - d) * c for e, c in zip(expected, current)]
    assert all(torch.allclose(a, e, atol=1e-6) for a, e in zip(averaged.module.parameters(), expected))
    assert not any(p.requires_grad for p in averaged.module.parameters())
    restored = nb.weight_average(model, decay=0.95)
    restored.load_state_dict(averaged.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(restored.module.parameters(), averaged.module.parameters()))


def test_the_library_average_matches_the_hand_made_one_it_replaced(nb):
    """The former EMA class started from a copy of the initial weights and updated with the same warm-up from its
    first step; torch's AveragedModel copies at its first update instead. Within 100 updates the initial weights'
    share has vanished, and the two agree to float tolerance: the replacement leaves the trained weights as they
    were."""
    torch.manual_seed(1)
    model = torch.nn.Linear(8, 8)
    averaged = nb.weight_average(model, decay=0.999)
    former = [p.detach().clone() for p in model.parameters()]
    for n in range(1, 101):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
        averaged.update_parameters(model)
        d = min(0.999, (1 + n) / (10 + n))
        former = [f.lerp(p.detach(), 1 - d) for f, p in zip(former, model.parameters())]
    assert all(torch.allclose(a, f, atol=1e-6) for a, f in zip(averaged.module.parameters(), former))


def test_the_exact_score_error_of_the_exact_score_is_zero(nb, sde):
    """exact_score_error compares a network with the score of the blurred empirical distribution; a stand-in
    network that returns that very score must score 0, and one that returns 0 must score 1."""
    data = torch.rand(50, 1, 28, 28)

    class Exact(torch.nn.Module):
        def forward(self, x, t, y=None):
            s = sde.marginal_std(t)[0].item()
            flat = x.flatten(1)
            weights = torch.softmax(-torch.cdist(flat, data.flatten(1)) ** 2 / (2 * s ** 2), dim=1)
            return ((weights @ data.flatten(1) - flat) / s ** 2).view_as(x)

    levels = torch.tensor([0.05, 0.5, 5.0])
    assert torch.allclose(nb.exact_score_error(Exact(), sde, data, levels, n=20), torch.zeros(3), atol=1e-6)

    class Zero(torch.nn.Module):
        def forward(self, x, t, y=None):
            return torch.zeros_like(x)

    assert torch.allclose(nb.exact_score_error(Zero(), sde, data, levels, n=20), torch.ones(3))


def test_fine_energy_is_zero_for_flat_images_and_grows_with_speckle(nb):
    flat = torch.full((2, 1, 28, 28), 0.3)
    speckled = flat + 0.1 * torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(nb.fine_energy(flat), torch.zeros(2), atol=1e-12)
    assert (nb.fine_energy(speckled) > 0.005).all()


def test_vesde_closed_forms(nb, sde):
    t = torch.tensor([0.3])
    numeric = torch.trapezoid(sde.diffusion(torch.linspace(0, 0.3, 20001)) ** 2, torch.linspace(0, 0.3, 20001))
    assert sde.marginal_std(t).item() ** 2 == pytest.approx(numeric.item(), rel=1e-5)
    x = torch.randn(5, 3)
    var = sde.marginal_std(torch.tensor(1.0)).item() ** 2
    expected = torch.distributions.Normal(0, math.sqrt(var)).log_prob(x).sum(1)
    assert torch.allclose(sde.prior_log_prob(x), expected, atol=1e-4)
