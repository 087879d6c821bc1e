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


@pytest.mark.parametrize("sampler", ["em", "pc", "ode"])
def test_samplers_with_the_exact_score_reproduce_the_mixture(nb, sde, sampler):
    generator = torch.Generator().manual_seed(0)
    score, shape = mixture_score(sde), (4000, 2)
    draw = {"em": lambda: nb.euler_maruyama(score, sde, shape, 500, generator)[0],
            "pc": lambda: nb.predictor_corrector(score, sde, shape, 250, snr=0.16, generator=generator),
            "ode": lambda: nb.probability_flow_heun(score, sde, shape, 250, generator)}[sampler]
    weights, means, variances = mixture_statistics(draw())
    assert torch.allclose(weights, WEIGHTS, atol=0.04)
    assert torch.allclose(means, MEANS, atol=0.1)
    assert torch.allclose(variances, torch.full((2, 2), STD ** 2), rtol=0.25)


def test_euler_maruyama_keeps_the_requested_snapshots(nb, sde):
    x, kept = nb.euler_maruyama(mixture_score(sde), sde, (10, 2), 20, snapshots=(0, 10, 19))
    assert set(kept) == {0, 10, 19} and torch.equal(kept[19], x)
    assert kept[0].std() > 3 * kept[19].std()


def test_dsm_target_is_the_conditional_score(nb, sde):
    """Data at one point x0: p_t = N(x0, s(t)^2 I), whose score -(x - x0)/s^2 is the DSM target: loss 0."""
    x0 = torch.tensor([[1.0, -2.0]]).repeat(256, 1)
    exact = lambda x, t: -(x - x0) / nb.per_sample(sde.marginal_std(t), x) ** 2  # noqa: E731
    for share in (0.0, 0.5, 1.0):
        assert nb.dsm_loss(exact, x0, sde, share).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("share", [0.0, 0.3])
def test_dsm_loss_is_lowest_at_the_exact_score(nb, sde, share):
    x0 = MEANS[torch.multinomial(WEIGHTS, 20000, replacement=True, generator=torch.Generator().manual_seed(1))]
    x0 = x0 + STD * torch.randn(x0.shape, generator=torch.Generator().manual_seed(2))
    exact = mixture_score(sde)

    def loss(score_fn):                                   # common random numbers for a fair comparison
        return nb.dsm_loss(score_fn, x0, sde, share, generator=torch.Generator().manual_seed(3)).item()

    best = loss(exact)
    assert best < loss(lambda x, t: 1.2 * exact(x, t))
    assert best < loss(lambda x, t: 0.8 * exact(x, t))
    assert best < loss(lambda x, t: exact(x, t) + 0.3)


def test_noise_times_mix_uniform_t_and_log_uniform_noise_levels(nb, sde):
    """share 0: t uniform on [t_min, 1]; share 1: log s(t) uniform between s(t_min) and s(1); between: the mixture."""
    generator = torch.Generator().manual_seed(0)
    uniform = nb.sample_times(200000, sde, 0.0, generator)
    assert uniform.min() >= sde.t_min and uniform.max() <= 1.0
    assert uniform.mean().item() == pytest.approx(0.5, abs=0.005)
    log_std = sde.marginal_std(nb.sample_times(200000, sde, 1.0, generator)).log()
    low, high = (math.log(sde.marginal_std(torch.tensor(t)).item()) for t in (sde.t_min, 1.0))
    assert log_std.min() >= low - 1e-3 and log_std.max() <= high + 1e-3
    assert log_std.mean().item() == pytest.approx((low + high) / 2, abs=0.02)
    small = sde.marginal_std(nb.sample_times(200000, sde, 0.25, generator)) < 0.05
    expected = 0.75 * sde.time_of_std(torch.tensor(0.05)).item() + 0.25 * (math.log(0.05) - low) / (high - low)
    assert small.float().mean().item() == pytest.approx(expected, abs=0.005)


def test_time_of_std_inverts_marginal_std(nb, sde):
    t = torch.linspace(sde.t_min, 1.0, 50)
    assert torch.allclose(sde.time_of_std(sde.marginal_std(t)), t, rtol=1e-4, atol=1e-7)


def test_dequantize_stays_within_the_pixel_bin(nb):
    images = torch.randint(0, 256, (64, 1, 28, 28)).float() / 255
    x = nb.dequantize(images)
    k = (images * 255).round()
    assert (x >= k / 256).all() and (x <= (k + 1) / 256).all()             # up to float rounding


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


def test_score_network_shape_time_conditioning_and_scaling(nb, sde):
    torch.manual_seed(0)
    net = nb.ScoreNet(sde.marginal_std, channels=(8, 16, 32), embed_dim=16)
    x = torch.randn(3, 1, 28, 28)
    out = net(x, torch.full((3,), 0.5))
    assert out.shape == x.shape
    assert not torch.allclose(out, net(x, torch.full((3,), 0.9)) * sde.marginal_std(torch.tensor(0.9)) /
                              sde.marginal_std(torch.tensor(0.5))), "time must change the network's output"
    # s_theta(x, t) = F(x / sqrt(s^2 + 1/4), t) / s: undoing both scalings must leave the same F for any s
    t = torch.full((3,), 0.5)
    undone = []
    for s in (1.0, 2.0):
        net.marginal_std = lambda t, s=s: torch.full_like(t, s)
        undone.append(net(x * math.sqrt(s ** 2 + 0.25), t) * s)
    assert torch.allclose(undone[0], undone[1], atol=1e-5)


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
    assert [len(level) for level in net.res] == [0, 1, 2]
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
    config = {"epochs": 1, "batch": 16, "lr": 1e-3, "ema_decay": 0.9, "small_noise_share": 0.1, "dequantize": True}
    net_config = {"channels": [8, 16, 32], "embed_dim": 16, "res_blocks": [1, 1, 1], "space_to_depth": True}
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


def test_foreach_ema_equals_the_loop_with_warm_up(nb):
    """EMA.update (one _foreach_lerp_) equals the per-tensor loop with decay min(d, (1 + n) / (10 + n))."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    ema = nb.EMA(model, decay=0.99)
    expected = [p.detach().clone() for p in model.parameters()]
    for n in range(1, 60):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ema.update(model)
        decay = min(0.99, (1 + n) / (10 + n))
        expected = [e.lerp(p.detach(), 1 - decay) for e, p in zip(expected, model.parameters())]
    assert all(torch.allclose(a, e, atol=1e-6) for a, e in zip(ema.model.parameters(), expected))
    assert not any(p.requires_grad for p in ema.model.parameters())
    restored = nb.EMA(model, decay=0.99)
    restored.load_state_dict(ema.state_dict())
    assert restored.updates == ema.updates == 59


def test_vesde_closed_forms(nb, sde):
    t = torch.tensor([0.3])
    numeric = torch.trapezoid(sde.diffusion(torch.linspace(0, 0.3, 20001)) ** 2, torch.linspace(0, 0.3, 20001))
    assert sde.marginal_std(t).item() ** 2 == pytest.approx(numeric.item(), rel=1e-5)
    x = torch.randn(5, 3)
    var = sde.marginal_std(torch.tensor(1.0)).item() ** 2
    expected = torch.distributions.Normal(0, math.sqrt(var)).log_prob(x).sum(1)
    assert torch.allclose(sde.prior_log_prob(x), expected, atol=1e-4)
