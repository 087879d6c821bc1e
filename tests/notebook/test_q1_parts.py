"""Question 1 building blocks, loaded from the notebook: quantiser, the PixelCNN prior's causality, sampling."""
import math

import pytest
import torch

SMALL_VQVAE = {"hidden": 16, "res_blocks": 1, "decoder_blocks_14": 0, "codebook_size": 32, "code_dim": 8,
               "beta": 0.25, "ema_decay": 0.99, "restart_below": 0.05}   # a VQ-VAE small enough for a test


def test_nearest_code_is_the_closest_codebook_vector(nb):
    vq = nb.VectorQuantizer(16, 4)
    u = torch.randn(3, 4, 5, 5)
    codes = vq(u)["codes"]                                                    # [3, 5, 5]
    flat = u.permute(0, 2, 3, 1).reshape(-1, 4)
    brute = torch.stack([((vq.codebook - row) ** 2).sum(1).argmin() for row in flat])
    assert torch.equal(codes.flatten(), brute)


def test_straight_through_passes_decoder_gradient_unchanged(nb):
    torch.manual_seed(0)
    vq = nb.VectorQuantizer(8, 4)
    u = torch.randn(2, 4, 3, 3, requires_grad=True)
    upstream = torch.randn(2, 4, 3, 3)
    out = vq(u)
    # forward value is the code vector, up to the rounding of u + (e - u) in fp32
    assert torch.allclose(out["z"], vq.codebook[out["codes"]].permute(0, 3, 1, 2), atol=1e-6)
    (out["z"] * upstream).sum().backward()
    assert torch.equal(u.grad, upstream)


def test_codebook_loss_reaches_only_codebook_and_commitment_only_encoder(nb):
    vq = nb.VectorQuantizer(8, 4)
    u = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = vq(u)
    grad_u, grad_codebook = torch.autograd.grad(out["codebook_loss"], [u, vq.codebook], allow_unused=True)
    assert grad_u is None and grad_codebook.abs().sum() > 0
    out = vq(u)
    grad_u, grad_codebook = torch.autograd.grad(out["commitment_loss"], [u, vq.codebook], allow_unused=True)
    assert grad_codebook is None and grad_u.abs().sum() > 0


def test_ema_update_moves_codes_toward_their_assigned_outputs(nb):
    torch.manual_seed(0)
    vq = nb.EMAVectorQuantizer(4, 2, decay=0.5)
    vq.codebook.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0], [-10.0, 10.0], [10.0, -10.0]]))
    vq.total.copy_(vq.codebook)
    vq.count.fill_(1.0)
    target = torch.tensor([1.0, 1.0])
    u = (target + 0.01 * torch.randn(50, 2)).T.reshape(1, 2, 5, 10)         # all near (1, 1): code 0
    before = (vq.codebook[0] - target).norm()
    vq.train()
    for _ in range(5):
        vq(u)
    assert (vq.codebook[0] - target).norm() < 0.1 * before
    assert torch.allclose(vq.codebook[1], torch.tensor([10.0, 10.0]), atol=0.01)  # unused: (almost) unchanged


def far_codebook_quantizer(nb, mode):
    """A 4-code quantiser whose codes 1..3 are far from the data and whose counts are already low (0.1)."""
    vq = nb.make_quantizer(mode, {"codebook_size": 4, "code_dim": 2, "ema_decay": 0.5, "restart_below": 0.5})
    vq.codebook.copy_(torch.tensor([[0.0, 0.0], [100.0, 100.0], [-100.0, 100.0], [100.0, -100.0]]))
    vq.total.copy_(vq.codebook * 0.1)
    vq.count.copy_(torch.tensor([1.0, 0.1, 0.1, 0.1]))
    return vq.train()


def test_dead_codes_restart_onto_encoder_outputs(nb):
    torch.manual_seed(0)
    u = torch.randn(1, 2, 4, 4) * 0.1                      # all nearest to code 0
    flat = u.permute(0, 2, 3, 1).reshape(-1, 2)
    restarting = far_codebook_quantizer(nb, "ema_restart")
    restarting(u)
    for k in (1, 2, 3):                                    # every dead code now sits on an encoder output
        assert (flat - restarting.codebook[k]).norm(dim=1).min() < 1e-6
    assert restarting.count[1:].eq(1.0).all()
    plain_ema = far_codebook_quantizer(nb, "ema")
    plain_ema(u)
    assert plain_ema.codebook[1:].abs().min() > 50, "without restarts, dead codes stay where they were"


def test_perplexity_counts_effective_codes(nb):
    vq = nb.VectorQuantizer(4, 1)
    vq.codebook.data = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    u = torch.tensor([0.0, 1.0, 2.0, 3.0] * 4).view(1, 1, 4, 4)
    assert vq(u)["perplexity"].item() == pytest.approx(4.0, rel=1e-4)
    assert vq(torch.zeros(1, 1, 4, 4))["perplexity"].item() == pytest.approx(1.0, rel=1e-4)


@pytest.mark.parametrize("blocks_14", [0, 1])
def test_vqvae_shapes_and_code_roundtrip(nb, blocks_14):
    model = nb.VQVAE({**SMALL_VQVAE, "decoder_blocks_14": blocks_14}, "ema_restart").eval()
    x = torch.rand(2, 1, 28, 28)
    reconstruction, q = model(x)
    assert reconstruction.shape == x.shape and q["codes"].shape == (2, 7, 7)
    codes = model.encode(x)
    assert codes.min() >= 0 and codes.max() < 32
    decoded = model.decode(codes)
    assert torch.allclose(decoded, reconstruction.clamp(0, 1), atol=1e-5)


def test_the_values_logged_each_step_own_their_storage(nb):
    """VQVAE.loss returns per-step values that train_epochs keeps for a whole epoch. Each must own its few bytes:
    on the CPU the 0-d result of mse_loss is a view of its [B, ...] elementwise buffer, and an epoch of such views
    held gigabytes and slowed the VQ-VAE's steps by a third."""
    _, parts = nb.VQVAE(SMALL_VQVAE, "ema_restart").loss(torch.rand(16, 1, 28, 28))
    assert {name: value.untyped_storage().nbytes() for name, value in parts.items()} == \
        {name: value.element_size() for name, value in parts.items()}


def test_quantizer_modes_are_the_three_variants_and_a_typo_is_refused(nb):
    config = {"codebook_size": 8, "code_dim": 2, "ema_decay": 0.9, "restart_below": 0.5}
    plain, ema, restart = (nb.make_quantizer(mode, config) for mode in nb.QUANTIZERS)
    assert plain.learns_by_gradient and isinstance(plain.codebook, torch.nn.Parameter)
    assert not ema.learns_by_gradient and "codebook" in dict(ema.named_buffers()) and ema.restart_below is None
    assert restart.restart_below == 0.5
    with pytest.raises(ValueError, match="quantizer mode must be one of"):
        nb.make_quantizer("ema-restart", config)


def tiny_prior(nb, K=6, layers=3, kernel=5):
    torch.manual_seed(0)
    return nb.GatedPixelCNN(K, channels=16, layers=layers, kernel=kernel).eval()


def influence(prior, K=6):
    """[49, 49] bool: entry (i, j) is True when changing the code at raster position j changes the logits at i
    (for some class, including "no class"), measured by perturbing one position at a time. In float64, where the
    weak influence of a far position (about 1e-9 here) stands well above rounding (about 1e-16)."""
    prior = prior.double()
    torch.manual_seed(1)
    codes, labels = torch.randint(K, (4, 7, 7)), torch.tensor([0, 3, 9, prior.null_label])
    with torch.no_grad():
        base = prior(codes, labels).flatten(2)                                            # [4, K, 49]
        reach = torch.zeros(49, 49, dtype=torch.bool)
        for j in range(49):
            other = codes.clone().view(4, -1)
            other[:, j] = (other[:, j] + 1 + torch.arange(4)) % K
            changed = (prior(other.view(4, 7, 7), labels).flatten(2) - base).abs().amax((0, 1)) > 1e-12   # [49]
            reach[:, j] = changed
    return reach


def test_prior_is_causal_and_sees_the_whole_past_at_the_notebooks_depth(nb):
    """At the depth of the cpu and gpu profiles, the logits at raster position i depend on exactly the codes at
    positions j < i: never on j >= i (the first, middle and last positions included), and on every earlier one
    (no blind spot)."""
    for profile in ("cpu", "gpu"):
        prior = nb.merged(nb.BASE, nb.OVERRIDES[profile])["q1"]["prior"]
        assert torch.equal(influence(tiny_prior(nb, layers=prior["layers"], kernel=prior["kernel"])),
                           torch.ones(49, 49, dtype=torch.bool).tril(-1)), profile


def test_a_shallow_prior_is_causal_but_does_not_see_far(nb):
    """Each layer of kernel 3 reaches one row up and one column further: two layers see only a neighbourhood."""
    reach = influence(tiny_prior(nb, layers=2, kernel=3))
    assert not (reach & torch.ones(49, 49, dtype=torch.bool).triu()).any(), "never the present or the future"
    assert reach[48, 47] and reach[48, 40] and not reach[48, 0]


@pytest.mark.parametrize("kernel", [3, 5])
def test_a_naive_masked_stack_has_a_blind_spot(nb, kernel):
    """The check above is not vacuous: a single stack of masked kernels moves at most k//2 columns right per row
    up, so it misses the positions just above and far to the right of the centre however deep it is (the figure
    of 1.6, with the prior's own kernel). It never sees the centre or anything after it."""
    torch.manual_seed(0)
    field = nb.receptive_field(nb.NaiveMaskedStack(8, 8, kernel).eval(), 8)
    assert field[2, 3 + kernel // 2 + 1] == 0, "one row up, beyond k//2 columns to the right"
    assert field[2, 3 + kernel // 2] > 0 and field[3, 2] > 0 and field[0, 6] > 0
    assert field[3:].sum() == field[3, :3].sum(), "nothing at or after the centre"
    blind = nb.raster_past() & (field == 0)
    assert blind.any() and not (~nb.raster_past() & (field > 0)).any()


def test_the_class_reaches_both_gates_of_both_stacks(nb):
    """v' = gate(W_v * v + V_v h) and x' uses gate(... + V_h h): the label embedding must enter the filter (tanh)
    and the gate (sigmoid) halves of the vertical and of the horizontal stack. The gradient of a layer's outputs
    with respect to the embedding row of the label is non-zero in each of its four quarters."""
    torch.manual_seed(0)
    layer = nb.GatedLayer("B", channels=4, kernel=3, n_labels=11, dropout=0.0).eval()
    v, x, labels = torch.randn(2, 4, 3, 7), torch.randn(2, 4, 3, 7), torch.tensor([3, 3])
    new_v, new_x = layer(v, x, labels)
    (new_v.pow(2).sum() + new_x.pow(2).sum()).backward()
    quarters = layer.label_embed.weight.grad[3].abs().view(4, 4).sum(1)      # [v filter, v gate, h filter, h gate]
    assert (quarters > 0).all(), quarters
    layer.zero_grad()
    new_v, _ = layer(v, x, labels)
    new_v.pow(2).sum().backward()
    assert (layer.label_embed.weight.grad[3].view(4, 4).abs().sum(1)[:2] > 0).all(), "the vertical stack sees h"


def test_the_horizontal_stack_is_residual_after_the_first_layer(nb):
    """With the output convolution W_o set to zero, a mask-B layer passes x through unchanged (x' = x + 0) and the
    mask-A layer outputs zeros (no residual: its input at (i, j) is the code to be predicted)."""
    torch.manual_seed(0)
    v, x, labels = torch.randn(2, 4, 3, 7), torch.randn(2, 4, 3, 7), torch.tensor([1, 10])
    for mask, expected in (("B", x), ("A", torch.zeros_like(x))):
        layer = nb.GatedLayer(mask, channels=4, kernel=3, n_labels=11, dropout=0.0).eval()
        torch.nn.init.zeros_(layer.out[1].weight)
        torch.nn.init.zeros_(layer.out[1].bias)
        assert torch.equal(layer(v, x, labels)[1], expected), mask


def test_guidance_pairs_each_class_with_the_no_class_label(nb):
    """With w > 0 the prior runs on a doubled batch: the first half with the classes asked for, the second half
    with the "no class" label (not the classes again), and the logits combine as l_y + w (l_y - l_null)."""
    seen = []

    class Recording(StubPrior):
        def forward(self, codes, labels):
            seen.append(labels.clone())
            return super().forward(codes, labels)

    prior = Recording(lambda batch, position: torch.zeros(batch, 6))
    nb.sample_codes(prior, torch.tensor([2, 7]), seed=0, w=1.5)
    assert all(torch.equal(labels, torch.tensor([2, 7, 10, 10])) for labels in seen)
    seen.clear()
    nb.sample_codes(prior, torch.tensor([2, 7]), seed=0)
    assert all(torch.equal(labels, torch.tensor([2, 7])) for labels in seen), "no guidance: one pass, the classes"


def test_the_prior_trains_with_label_dropout(nb, tmp_path, monkeypatch):
    """train_prior replaces each label by "no class" with probability label_dropout: that is how the same network
    learns p(c) for guidance. The labels code_nll sees are recorded; about that share is the null label."""
    monkeypatch.setattr(nb, "CHECKPOINTS", tmp_path)
    seen, code_nll = [], nb.code_nll
    monkeypatch.setattr(nb, "code_nll", lambda prior, codes, labels, *rest: seen.append(labels) or
                        code_nll(prior, codes, labels, *rest))
    config = {"channels": 8, "layers": 2, "kernel": 3, "dropout": 0.0, "label_dropout": 0.3,
              "epochs": 1, "batch": 500, "lr": 1e-3, "warmup": 1}
    codes, labels = torch.randint(6, (2000, 7, 7)), torch.randint(10, (2000,))
    nb.train_prior(config, codes, labels, 6)
    null_share = (torch.cat(seen) == 10).float().mean().item()
    assert null_share == pytest.approx(0.3, abs=0.04)


def test_prior_conditioning_changes_every_position(nb):
    prior = tiny_prior(nb)
    codes = torch.randint(6, (1, 7, 7))
    first, second = prior(codes, torch.tensor([0])), prior(codes, torch.tensor([5]))
    assert not torch.isclose(first, second).all(dim=1).any(), "the class must reach every position"


class StubPrior(torch.nn.Module):
    """A prior whose logits at every position come from logits_of(batch size, position) -> [B, K]."""

    null_label = 10

    def __init__(self, logits_of):
        super().__init__()
        self.logits_of, self.calls = logits_of, []

    def forward(self, codes, labels):
        self.calls.append(codes.clone())
        rows = codes.shape[1]
        return torch.stack([self.logits_of(len(codes), p) for p in range(7 * rows)], -1).unflatten(-1, (rows, 7))

    def sequence_logits(self, codes, labels):
        return self(codes, labels).flatten(2).transpose(1, 2)


def test_sampled_codes_have_right_shape_and_range(nb):
    codes = nb.sample_codes(tiny_prior(nb), torch.arange(4), seed=0)
    assert codes.shape == (4, 7, 7) and codes.dtype == torch.long
    assert codes.min() >= 0 and codes.max() < 6


def test_prior_with_all_mass_on_one_code_samples_it_everywhere(nb):
    def point_mass(batch, position):
        logits = torch.full((batch, 6), -1e9)
        logits[:, 4] = 0.0
        return logits

    assert (nb.sample_codes(StubPrior(point_mass), torch.arange(3), seed=0) == 4).all()


def test_sampling_visits_positions_in_raster_order_and_feeds_back_the_draws(nb):
    """Logits that put all mass on code (position mod 6) must give the grid 0, 1, ..., 5, 0, ... in raster order,
    and the network must see every earlier draw in the grid when it is asked for a position."""
    def by_position(batch, position):
        logits = torch.full((batch, 6), -1e9)
        logits[:, position % 6] = 0.0
        return logits

    prior = StubPrior(by_position)
    codes = nb.sample_codes(prior, torch.arange(2), seed=0)
    assert torch.equal(codes[0].flatten(), torch.arange(49) % 6)
    assert len(prior.calls) == 49
    for position, seen in enumerate(prior.calls):
        assert torch.equal(seen[0].flatten()[:position], torch.arange(position) % 6)


def test_completion_keeps_the_given_rows_and_draws_only_the_rest(nb):
    def by_position(batch, position):
        logits = torch.full((batch, 6), -1e9)
        logits[:, position % 6] = 0.0
        return logits

    prior = StubPrior(by_position)
    given = torch.full((2, 3, 7), 5)
    codes = nb.sample_codes(prior, torch.arange(2), seed=0, given=given)
    assert (codes[:, :3] == 5).all() and torch.equal(codes[0, 3:].flatten(), torch.arange(21, 49) % 6)
    assert len(prior.calls) == 28, "one network pass per drawn position"


def test_guidance_moves_the_samples_away_from_the_unconditional_favourite(nb):
    """Conditional logits prefer code 1 a little, unconditional ones a lot: w = 0 mostly draws 1, while guidance
    (cond + w (cond - uncond)) must avoid it. A guided batch is [conditional half; unconditional half]."""
    def two_priors(batch, position, guided):
        logits = torch.zeros(batch, 3)
        logits[:, 1] = 2.0
        if guided:
            logits[batch // 2:, 1] = 4.0
        return logits

    labels = torch.zeros(200, dtype=torch.long)
    plain = nb.sample_codes(StubPrior(lambda b, p: two_priors(b, p, False)), labels, seed=0)
    guided = nb.sample_codes(StubPrior(lambda b, p: two_priors(b, p, True)), labels, seed=0, w=5.0)
    assert (plain == 1).float().mean() > 0.6 and (guided == 1).float().mean() < 0.01


def test_temperature_sharpens_the_conditionals(nb):
    def fixed(batch, position):
        return torch.tensor([[1.0, 0.0, 0.0, 0.0]]).expand(batch, 4)

    labels = torch.zeros(400, dtype=torch.long)
    share = {t: (nb.sample_codes(StubPrior(fixed), labels, seed=0, temperature=t) == 0).float().mean()
             for t in (1.0, 0.3)}
    expected = math.e / (math.e + 3)                                   # softmax of the logits at T = 1
    assert share[1.0].item() == pytest.approx(expected, abs=0.02) and share[0.3] > 0.9


def test_prior_nll_of_uniform_logits_is_log_k(nb):
    K = 8
    prior = StubPrior(lambda batch, position: torch.zeros(batch, K))
    codes = torch.randint(K, (10, 7, 7))
    assert nb.prior_nll(prior, codes, torch.zeros(10, dtype=torch.long)) == pytest.approx(math.log(K))


def test_code_nll_is_the_cross_entropy_of_the_grid_logits(nb):
    """The loss read from [B * 49, K] logits equals cross-entropy on the [B, K, 7, 7] logits of forward()."""
    prior = tiny_prior(nb)
    codes, labels = torch.randint(6, (3, 7, 7)), torch.tensor([2, 7, prior.null_label])
    expected = torch.nn.functional.cross_entropy(prior(codes, labels), codes, reduction="sum")
    assert torch.allclose(nb.code_nll(prior, codes, labels, "sum"), expected, rtol=1e-5)


def test_perplexity_of_code_counts(nb):
    assert nb.perplexity_of(torch.tensor([5.0, 5.0, 5.0, 5.0, 0.0])) == pytest.approx(4.0)
    assert nb.perplexity_of(torch.tensor([0.0, 7.0, 0.0])) == pytest.approx(1.0)


def test_completions_start_from_images_with_ink_in_their_kept_rows(nb):
    images, labels = torch.zeros(20, 1, 28, 28), torch.arange(20) % 10
    images[10:, :, :8] = 1.0                            # only the second image of each class is inked at the top
    assert torch.equal(nb.first_with_ink(images, labels, 8), torch.arange(10, 20))
