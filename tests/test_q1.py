"""Question 1 building blocks, loaded from the notebook: quantiser, PixelCNN causality, sampling."""
import math

import pytest
import torch
import torch.nn.functional as F


def test_nearest_code_is_the_closest_codebook_vector(nb):
    vq = nb.VectorQuantizer(16, 4, mode="plain")
    u = torch.randn(3, 4, 5, 5)
    codes = vq(u)["codes"]                                                    # [3, 5, 5]
    flat = u.permute(0, 2, 3, 1).reshape(-1, 4)
    brute = torch.stack([((vq.codebook - row) ** 2).sum(1).argmin() for row in flat])
    assert torch.equal(codes.flatten(), brute)


def test_straight_through_passes_decoder_gradient_unchanged(nb):
    vq = nb.VectorQuantizer(8, 4, mode="plain")
    u = torch.randn(2, 4, 3, 3, requires_grad=True)
    upstream = torch.randn(2, 4, 3, 3)
    out = vq(u)
    assert torch.allclose(out["z"], vq.codebook[out["codes"]].permute(0, 3, 1, 2))   # forward value is z
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


@pytest.mark.parametrize("grid", [7, 14])
def test_vqvae_shapes_and_code_roundtrip(nb, grid):
    config = {"grid": grid, "hidden": 16, "res_blocks": 1, "codebook_size": 32, "code_dim": 8, "beta": 0.25,
              "ema_decay": 0.99, "restart_below": 0.05}
    model = nb.VQVAE(config, "ema_restart").eval()
    x = torch.rand(2, 1, 28, 28)
    reconstruction, q = model(x)
    assert reconstruction.shape == x.shape and q["codes"].shape == (2, grid, grid)
    codes = model.encode(x)
    assert codes.min() >= 0 and codes.max() < 32
    decoded = model.decode(codes)
    assert torch.allclose(decoded, reconstruction.clamp(0, 1), atol=1e-5)


def gradient_dependency(prior, grid, K, labels, i, j):
    """Which positions of the input one-hot codes the logits at (i, j) depend on: bool [grid, grid]."""
    codes = torch.randint(K, (len(labels), grid, grid))
    one_hot = F.one_hot(codes, K).float().requires_grad_(True)
    embedded = one_hot @ prior.embed.weight                                     # same as embed(codes)
    h = prior.input(embedded.permute(0, 3, 1, 2))
    for block in prior.blocks:
        h = block(h, labels)
    logits = prior.head(h)
    logits[:, :, i, j].sum().backward()
    return one_hot.grad.abs().sum((0, 3)) > 0


@pytest.mark.parametrize("position", [(0, 0), (3, 3), (6, 0), (2, 6), (6, 6)])
def test_pixelcnn_logits_depend_only_on_earlier_positions(nb, position):
    torch.manual_seed(0)
    grid, K = 7, 6
    prior = nb.PixelCNNPrior(K, channels=8, blocks=3)
    labels = torch.tensor([3, 7])
    depends = gradient_dependency(prior, grid, K, labels, *position)
    i, j = position
    raster = torch.arange(grid * grid).view(grid, grid)
    later_or_same = raster >= i * grid + j
    assert not depends[later_or_same].any(), "the logits see their own position or a later one"
    if (i, j) != (0, 0):
        assert depends.any()


def test_pixelcnn_conditioning_changes_the_logits(nb):
    torch.manual_seed(0)
    prior = nb.PixelCNNPrior(6, channels=8, blocks=2)
    codes = torch.randint(6, (1, 7, 7))
    assert not torch.allclose(prior(codes, torch.tensor([0])), prior(codes, torch.tensor([5])))


def test_masks_a_and_b(nb):
    a = nb.MaskedConv2d("A", 1, 1, 3).mask[0, 0]
    b = nb.MaskedConv2d("B", 1, 1, 3).mask[0, 0]
    assert a.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert b.tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]
    with pytest.raises(ValueError):
        nb.MaskedConv2d("C", 1, 1, 3)


def test_sampled_codes_have_right_shape_and_range(nb):
    torch.manual_seed(0)
    prior = nb.PixelCNNPrior(6, channels=8, blocks=2).eval()
    codes = nb.sample_codes(prior, torch.arange(4), grid=5, generator=torch.Generator().manual_seed(0))
    assert codes.shape == (4, 5, 5) and codes.dtype == torch.long
    assert codes.min() >= 0 and codes.max() < 6


def test_prior_on_the_first_rows_gives_the_whole_grids_logits_there(nb):
    """sample_codes runs the prior on rows 0..i only; that must not change the logits of those rows."""
    torch.manual_seed(0)
    prior = nb.PixelCNNPrior(6, channels=8, blocks=3).eval()
    codes, labels = torch.randint(6, (2, 7, 7)), torch.tensor([1, 7])
    whole = prior(codes, labels)
    for rows in range(1, 7):
        assert torch.allclose(prior(codes[:, :rows], labels), whole[:, :, :rows], atol=1e-6)


def test_prior_with_all_mass_on_one_code_samples_it_everywhere(nb):
    K, chosen = 6, 4

    def point_mass(codes, labels):
        logits = torch.full((len(codes), K, *codes.shape[1:]), -1e9)
        logits[:, chosen] = 0.0
        return logits

    codes = nb.sample_codes(point_mass, torch.arange(3), grid=7)
    assert (codes == chosen).all()


def test_sampling_follows_the_conditionals(nb):
    """A prior that copies the previous code in raster order (2 before the first): every code must be 2."""
    K = 3

    def copy_previous(codes, labels):
        flat = codes.flatten(1)                                      # [B, g*g]
        previous = torch.cat([torch.full_like(flat[:, :1], 2), flat[:, :-1]], 1)
        return (F.one_hot(previous, K).float() * 1e9 - 1e9).permute(0, 2, 1).view(len(codes), K, *codes.shape[1:])

    codes = nb.sample_codes(copy_previous, torch.arange(2), grid=4)
    assert (codes == 2).all()


def test_prior_nll_of_uniform_logits_is_log_k(nb):
    K = 8

    class Uniform(torch.nn.Module):
        def forward(self, codes, labels):
            return torch.zeros(len(codes), K, *codes.shape[1:])

    codes = torch.randint(K, (10, 7, 7))
    assert nb.prior_nll(Uniform(), codes, torch.zeros(10, dtype=torch.long)) == pytest.approx(math.log(K))
