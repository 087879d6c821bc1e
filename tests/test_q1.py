"""Question 1 building blocks, loaded from the notebook: quantiser, the transformer prior's causality, sampling."""
import math

import pytest
import torch


def test_nearest_code_is_the_closest_codebook_vector(nb):
    vq = nb.VectorQuantizer(16, 4, mode="plain")
    u = torch.randn(3, 4, 5, 5)
    codes = vq(u)["codes"]                                                    # [3, 5, 5]
    flat = u.permute(0, 2, 3, 1).reshape(-1, 4)
    brute = torch.stack([((vq.codebook - row) ** 2).sum(1).argmin() for row in flat])
    assert torch.equal(codes.flatten(), brute)


def test_straight_through_passes_decoder_gradient_unchanged(nb):
    torch.manual_seed(0)
    vq = nb.VectorQuantizer(8, 4, mode="plain")
    u = torch.randn(2, 4, 3, 3, requires_grad=True)
    upstream = torch.randn(2, 4, 3, 3)
    out = vq(u)
    # forward value is the code vector, up to the rounding of u + (e - u) in fp32
    assert torch.allclose(out["z"], vq.codebook[out["codes"]].permute(0, 3, 1, 2), atol=1e-6)
    (out["z"] * upstream).sum().backward()
    assert torch.equal(u.grad, upstream)


def test_codebook_loss_reaches_only_codebook_and_commitment_only_encoder(nb):
    vq = nb.VectorQuantizer(8, 4, mode="plain")
    u = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = vq(u)
    grad_u, grad_codebook = torch.autograd.grad(out["codebook_loss"], [u, vq.codebook], allow_unused=True)
    assert grad_u is None and grad_codebook.abs().sum() > 0
    out = vq(u)
    grad_u, grad_codebook = torch.autograd.grad(out["commitment_loss"], [u, vq.codebook], allow_unused=True)
    assert grad_codebook is None and grad_u.abs().sum() > 0


def test_ema_update_moves_codes_toward_their_assigned_outputs(nb):
    torch.manual_seed(0)
    vq = nb.VectorQuantizer(4, 2, mode="ema", ema_decay=0.5)
    vq.codebook.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0], [-10.0, 10.0], [10.0, -10.0]]))
    vq.ema_sum.copy_(vq.codebook)
    vq.ema_count.fill_(1.0)
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
    vq = nb.VectorQuantizer(4, 2, mode=mode, ema_decay=0.5, restart_below=0.5)
    vq.codebook.copy_(torch.tensor([[0.0, 0.0], [100.0, 100.0], [-100.0, 100.0], [100.0, -100.0]]))
    vq.ema_sum.copy_(vq.codebook * 0.1)
    vq.ema_count.copy_(torch.tensor([1.0, 0.1, 0.1, 0.1]))
    return vq.train()


def test_dead_codes_restart_onto_encoder_outputs(nb):
    torch.manual_seed(0)
    u = torch.randn(1, 2, 4, 4) * 0.1                      # all nearest to code 0
    flat = u.permute(0, 2, 3, 1).reshape(-1, 2)
    restarting = far_codebook_quantizer(nb, "ema_restart")
    restarting(u)
    for k in (1, 2, 3):                                    # every dead code now sits on an encoder output
        assert (flat - restarting.codebook[k]).norm(dim=1).min() < 1e-6
    assert restarting.ema_count[1:].eq(1.0).all()
    plain_ema = far_codebook_quantizer(nb, "ema")
    plain_ema(u)
    assert plain_ema.codebook[1:].abs().min() > 50, "without restarts, dead codes stay where they were"


def test_perplexity_counts_effective_codes(nb):
    vq = nb.VectorQuantizer(4, 1, mode="plain")
    vq.codebook.data = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    u = torch.tensor([0.0, 1.0, 2.0, 3.0] * 4).view(1, 1, 4, 4)
    assert vq(u)["perplexity"].item() == pytest.approx(4.0, rel=1e-4)
    assert vq(torch.zeros(1, 1, 4, 4))["perplexity"].item() == pytest.approx(1.0, rel=1e-4)


@pytest.mark.parametrize("blocks_14", [0, 1])
def test_vqvae_shapes_and_code_roundtrip(nb, blocks_14):
    config = {"hidden": 16, "res_blocks": 1, "decoder_blocks_14": blocks_14, "codebook_size": 32, "code_dim": 8,
              "beta": 0.25, "ema_decay": 0.99, "restart_below": 0.05}
    model = nb.VQVAE(config, "ema_restart").eval()
    x = torch.rand(2, 1, 28, 28)
    reconstruction, q = model(x)
    assert reconstruction.shape == x.shape and q["codes"].shape == (2, 7, 7)
    codes = model.encode(x)
    assert codes.min() >= 0 and codes.max() < 32
    decoded = model.decode(codes)
    assert torch.allclose(decoded, reconstruction.clamp(0, 1), atol=1e-5)


def tiny_prior(nb, K=6):
    torch.manual_seed(0)
    return nb.TransformerPrior(K, width=16, layers=2, heads=2, mlp_ratio=2).eval()


@pytest.mark.parametrize("changed", [0, 10, 24, 47, 48])
def test_prior_logits_depend_only_on_earlier_codes(nb, changed):
    """Changing the code at one position may change the logits of later positions only (and does change some)."""
    prior, K = tiny_prior(nb), 6
    codes, labels = torch.randint(K, (2, 7, 7)), torch.tensor([3, prior.null_label])
    other = codes.clone().view(2, -1)
    other[:, changed] = (other[:, changed] + 1) % K
    before, after = (prior(c.view(2, 7, 7), labels).flatten(2) for c in (codes, other))   # [2, K, 49]
    assert torch.allclose(before[:, :, :changed + 1], after[:, :, :changed + 1], atol=1e-6)
    if changed < 48:
        assert not torch.allclose(before[:, :, changed + 1:], after[:, :, changed + 1:])


def test_prior_conditioning_changes_every_position(nb):
    prior = tiny_prior(nb)
    codes = torch.randint(6, (1, 7, 7))
    first, second = prior(codes, torch.tensor([0])), prior(codes, torch.tensor([5]))
    assert not torch.isclose(first, second).all(dim=1).any(), "the class must reach every position"


def test_incremental_decoding_gives_the_full_forward_logits(nb):
    """next_logits with caches, fed the codes one by one, equals one causal forward pass over the grid."""
    prior = tiny_prior(nb)
    codes, labels = torch.randint(6, (3, 7, 7)), torch.tensor([1, 4, prior.null_label])
    full = prior(codes, labels).flatten(2)                                          # [3, K, 49]
    caches, token = [{} for _ in prior.blocks], prior.class_embed(labels)
    with torch.no_grad():
        for position in range(49):
            assert torch.allclose(prior.next_logits(token, position, caches), full[:, :, position], atol=1e-5)
            token = prior.code_embed(codes.view(3, -1)[:, position])


def test_prior_on_the_first_rows_gives_the_whole_grids_logits_there(nb):
    prior = tiny_prior(nb)
    codes, labels = torch.randint(6, (2, 7, 7)), torch.tensor([1, 7])
    whole = prior(codes, labels)
    for rows in range(1, 7):
        assert torch.allclose(prior(codes[:, :rows], labels), whole[:, :, :rows], atol=1e-5)


def stub_logits(prior, logits_of):
    """Replace the prior's next_logits by logits_of(batch size, position) -> [B, K] (the network is bypassed)."""
    prior.next_logits = lambda token, position, caches: logits_of(len(token), position)
    return prior


def test_sampled_codes_have_right_shape_and_range(nb):
    codes = nb.sample_codes(tiny_prior(nb), torch.arange(4), generator=torch.Generator().manual_seed(0))
    assert codes.shape == (4, 7, 7) and codes.dtype == torch.long
    assert codes.min() >= 0 and codes.max() < 6


def test_prior_with_all_mass_on_one_code_samples_it_everywhere(nb):
    def point_mass(batch, position):
        logits = torch.full((batch, 6), -1e9)
        logits[:, 4] = 0.0
        return logits

    codes = nb.sample_codes(stub_logits(tiny_prior(nb), point_mass), torch.arange(3))
    assert (codes == 4).all()


def test_sampling_visits_positions_in_raster_order(nb):
    """Logits that put all mass on code (position mod 6) must give the grid 0, 1, ..., 5, 0, ... in raster order."""
    def by_position(batch, position):
        logits = torch.full((batch, 6), -1e9)
        logits[:, position % 6] = 0.0
        return logits

    codes = nb.sample_codes(stub_logits(tiny_prior(nb), by_position), torch.arange(2))
    assert torch.equal(codes[0].flatten(), torch.arange(49) % 6)


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
    plain = nb.sample_codes(stub_logits(tiny_prior(nb), lambda b, p: two_priors(b, p, False)), labels,
                            torch.Generator().manual_seed(0))
    guided = nb.sample_codes(stub_logits(tiny_prior(nb), lambda b, p: two_priors(b, p, True)), labels,
                             torch.Generator().manual_seed(0), w=5.0)
    assert (plain == 1).float().mean() > 0.6 and (guided == 1).float().mean() < 0.01


def test_temperature_sharpens_the_conditionals(nb):
    def fixed(batch, position):
        return torch.tensor([[1.0, 0.0, 0.0, 0.0]]).expand(batch, 4)

    labels = torch.zeros(400, dtype=torch.long)
    share = {t: (nb.sample_codes(stub_logits(tiny_prior(nb), fixed), labels, torch.Generator().manual_seed(0), t)
                 == 0).float().mean() for t in (1.0, 0.3)}
    expected = math.e / (math.e + 3)                                   # softmax of the logits at T = 1
    assert share[1.0].item() == pytest.approx(expected, abs=0.02) and share[0.3] > 0.9


def test_prior_nll_of_uniform_logits_is_log_k(nb):
    K = 8

    class Uniform(torch.nn.Module):
        def sequence_logits(self, codes, labels):
            return torch.zeros(len(codes), codes[0].numel(), K)

    codes = torch.randint(K, (10, 7, 7))
    assert nb.prior_nll(Uniform(), codes, torch.zeros(10, dtype=torch.long)) == pytest.approx(math.log(K))


def test_code_nll_is_the_cross_entropy_of_the_grid_logits(nb):
    """The loss read from [B * 49, K] logits equals cross-entropy on the [B, K, 7, 7] logits of forward()."""
    prior = tiny_prior(nb)
    codes, labels = torch.randint(6, (3, 7, 7)), torch.tensor([2, 7, prior.null_label])
    expected = torch.nn.functional.cross_entropy(prior(codes, labels), codes, reduction="sum")
    assert torch.allclose(nb.code_nll(prior, codes, labels, "sum"), expected, rtol=1e-5)
