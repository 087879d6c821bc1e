"""The yardstick both questions share: FID and its bootstrap spread, precision and recall, and the rule that
picks a setting only when it beats the plain one beyond the noise."""
import json

import numpy as np
import pytest
import torch


def test_frechet_distance_of_gaussians_matches_closed_form(nb):
    rng = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 3, generator=rng).double().numpy()
    b = (torch.randn(20000, 3, generator=rng) * 2 + 1).double().numpy()
    # means differ by 1 in each of 3 dims; covariances I and 4I: 3 + 3 * (1 + 4 - 2 * 2) = 6
    assert nb.frechet_distance(a, b) == pytest.approx(6.0, abs=0.15)
    assert nb.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_the_fid_spread_is_the_noise_of_the_sample_draw(nb):
    """The bootstrap spread matches the standard deviation of the FID over independent draws of the same size
    (within a factor of two), and shrinks as the sample grows."""
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(5000, 4))
    fids = [nb.frechet_distance(rng.normal(0.3, 1.0, size=(300, 4)), reference) for _ in range(60)]
    spread = nb.fid_spread(rng.normal(0.3, 1.0, size=(300, 4)), reference, draws=60)
    assert 0.5 < spread / np.std(fids) < 2.0
    assert nb.fid_spread(rng.normal(0.3, 1.0, size=(3000, 4)), reference) < spread


def test_the_paired_spread_of_a_difference_matches_redraws_and_cancels_shared_noise(nb):
    """fid_difference_spread, for two independent sets, matches the standard deviation of FID(a) - FID(b) over
    independent redraws (within a factor of two); for two sets that share their randomness (b a small perturbation
    of a, as samples of two settings drawn from one seed are) it is well below the two spreads combined."""
    rng = np.random.default_rng(2)
    reference = rng.normal(size=(5000, 4))
    redraws = [nb.frechet_distance(rng.normal(0.3, 1.0, size=(300, 4)), reference)
               - nb.frechet_distance(rng.normal(0.5, 1.0, size=(300, 4)), reference) for _ in range(60)]
    a, b = rng.normal(0.3, 1.0, size=(300, 4)), rng.normal(0.5, 1.0, size=(300, 4))
    assert 0.5 < nb.fid_difference_spread(a, b, reference, draws=60) / np.std(redraws) < 2.0
    shared = a + 0.2 + rng.normal(scale=0.05, size=a.shape)
    combined = np.hypot(nb.fid_spread(a, reference), nb.fid_spread(shared, reference))
    assert nb.fid_difference_spread(a, shared, reference) < 0.5 * combined


def test_beats_pairs_reports_of_equal_size_against_one_reference(nb):
    """beats() uses the paired spread where both reports hold as many features against the same reference, and
    the combined spreads otherwise; reports keep their features in memory and save_metrics leaves them out."""
    rng = np.random.default_rng(3)
    reference = rng.normal(size=(3000, 4))
    a = rng.normal(0.3, 1.0, size=(500, 4))
    b = a + 0.05 + rng.normal(scale=0.02, size=a.shape)                # the same draws, slightly shifted
    report = lambda f, ref: {"fid": nb.frechet_distance(f, ref), "fid_spread": nb.fid_spread(f, ref),
                             "features": f, "reference": ref}
    paired_a, paired_b = report(a, reference), report(b, reference)
    assert nb.difference_spread(paired_a, paired_b) == nb.fid_difference_spread(a, b, reference)
    unpaired_b = report(b, reference.copy())
    assert nb.difference_spread(paired_a, unpaired_b) == np.hypot(paired_a["fid_spread"], unpaired_b["fid_spread"])
    assert nb.beats(paired_a, paired_b) and not nb.beats(paired_a, unpaired_b)
    assert nb.without_arrays({"rows": [paired_a], "n": 3}) == {"rows": [{"fid": paired_a["fid"],
                                                                      "fid_spread": paired_a["fid_spread"]}], "n": 3}


def test_precision_and_recall_separate_fidelity_from_diversity(nb):
    rng = np.random.default_rng(1)
    real = rng.normal(size=(500, 2))
    assert nb.precision_recall(real, real.copy()) == (1.0, 1.0)
    collapsed = rng.normal(scale=0.05, size=(500, 2))                  # every sample near the mode
    precision, recall = nb.precision_recall(real, collapsed)
    assert precision > 0.95 and recall < 0.3
    far = rng.normal(loc=50, size=(500, 2))
    assert nb.precision_recall(real, far) == (0.0, 0.0)


def row(fid: float, spread: float, **setting) -> dict:
    return {"fid": fid, "fid_spread": spread, **setting}


def test_the_plain_setting_is_kept_unless_beaten_beyond_the_spread(nb):
    """beats: the difference must exceed twice the spread of the difference. choose_setting: the plainest row among
    those the lowest-FID row does not beat."""
    plain, close, far = row(10.0, 0.5, w=0.0), row(9.0, 0.5, w=1.0), row(7.0, 0.5, w=2.0)
    assert not nb.beats(close, plain) and nb.beats(far, plain)
    assert nb.choose_setting([plain, close], lambda r: r["w"]) is plain
    assert nb.choose_setting([plain, close, far], lambda r: r["w"]) is far
    tied_with_best = row(7.5, 0.5, w=1.5)
    assert nb.choose_setting([plain, tied_with_best, far], lambda r: r["w"]) is tied_with_best


def test_seed_table_sets_this_run_beside_the_stored_runs_of_its_pipeline(nb, tmp_path, monkeypatch):
    """The committed run's metrics (in memory, before save_metrics adds the seed) beside the metrics files of the
    other seeds: only runs of the same pipeline count, each seed once."""
    monkeypatch.setattr(nb, "ROOT", tmp_path)
    monkeypatch.setattr(nb, "PROFILE", "cpu")
    monkeypatch.setattr(nb, "ARTIFACTS", tmp_path / "artifacts")
    monkeypatch.setitem(nb.CFG, "seed", 0)
    stored = {tmp_path / "artifacts": (0, "p", 10.0), tmp_path / "artifacts/seeds/seed1": (1, "p", 12.0),
              tmp_path / "artifacts/seeds/seed2": (2, "another pipeline", 99.0)}
    for folder, (seed, pipeline, fid) in stored.items():
        folder.mkdir(parents=True)
        (folder / "q2_metrics.json").write_text(json.dumps({"seed": seed, "pipeline": pipeline, "fid": fid}))
    table = nb.seed_table("q2", {"pipeline": "p", "fid": 10.0}, {"FID": lambda m: m["fid"]})
    assert "This run (seed 0) beside the 2 stored runs" in table and "(seeds 0, 1, this one included)" in table
    assert "| FID | 10 | 11 ± 1.4 | 10, 12 |" in table
    alone = nb.seed_table("q2", {"pipeline": "a third pipeline", "fid": 10.0}, {"FID": lambda m: m["fid"]})
    assert "No run of this configuration with another seed" in alone


def test_the_margin_sentence_states_the_gap_and_the_margin_asked_for(nb):
    plain, best = row(10.0, 0.5, w=0.0), row(7.0, 0.5, w=1.0)
    assert nb.margin_sentence([plain, best], lambda r: r["w"]) == (
        "The lowest FID lies 3.0 below the plain setting's, against twice the spread of their difference, 1.4.")
    assert nb.margin_sentence([plain], lambda r: r["w"]) == "The plain setting has the lowest FID itself."
