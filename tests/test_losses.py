"""Losses against plain numpy formulas."""

import numpy as np
import pytest
import scipy.stats
import torch

from dmf2mel.losses import PaperLoss, info_nce, info_nce_windows, l1_loss, pearson_loss, pearson_r


def _random(batch=4, time=50, n_mels=10, seed=0):
    rng = np.random.default_rng(seed)
    pred = rng.standard_normal((batch, time, n_mels))
    target = 0.5 * pred + rng.standard_normal((batch, time, n_mels))
    return pred, target


def _numpy_info_nce(pred, target, temperature):
    def flat(x):
        x = (x - x.mean(axis=1, keepdims=True)) / x.std(axis=1, keepdims=True)
        x = x.reshape(len(x), -1)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    logits = flat(pred) @ flat(target).T / temperature

    def xent(lg):
        lse = np.log(np.exp(lg - lg.max(axis=1, keepdims=True)).sum(axis=1)) + lg.max(axis=1)
        return np.mean(lse - np.diag(lg))

    return 0.5 * (xent(logits) + xent(logits.T))


def test_pearson_r_matches_scipy_per_sample_and_band():
    pred, target = _random()
    r = pearson_r(torch.tensor(pred), torch.tensor(target)).numpy()
    assert r.shape == (4, 10)
    for b in range(4):
        for m in range(10):
            assert r[b, m] == pytest.approx(scipy.stats.pearsonr(pred[b, :, m], target[b, :, m])[0], abs=1e-7)
    assert pearson_loss(torch.tensor(pred), torch.tensor(target)).item() == pytest.approx(-r.mean())


def test_pearson_r_constant_signal_is_zero_not_nan():
    pred = torch.ones(1, 20, 10)
    target = torch.randn(1, 20, 10)
    assert torch.all(pearson_r(pred, target) == 0)


@pytest.mark.parametrize("constant", ["pred", "target", "both"])
def test_paper_loss_has_a_finite_gradient_where_a_band_is_constant(constant):
    """A flat EEG file makes a flat prediction; a silent stretch makes a flat band. The loss and its gradient stay
    finite (sqrt of a zero sum of squares used to give a NaN gradient), and the other bands' gradients are those of
    the same loss without the constant band."""
    torch.manual_seed(0)
    pred = torch.randn(2, 40, 10, dtype=torch.float64)
    target = torch.randn(2, 40, 10, dtype=torch.float64)
    if constant in ("pred", "both"):
        pred[0, :, 3] = 0.25
    if constant in ("target", "both"):
        target[0, :, 3] = -1.0
    pred.requires_grad_(True)
    loss = pearson_loss(pred, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()
    assert pearson_r(pred, target)[0, 3].item() == 0.0
    others = [m for m in range(10) if m != 3]
    kept = pred.detach()[..., others].clone().requires_grad_(True)
    (pearson_loss(kept, target[..., others]) * len(others) / 10).backward()
    torch.testing.assert_close(pred.grad[..., others], kept.grad)


def test_training_on_a_constant_band_keeps_every_weight_finite():
    """A few Adam steps of a linear map whose target has a constant band (the CNN baseline's failure, made small)."""
    torch.manual_seed(1)
    eeg = torch.randn(4, 64, 8)
    mel = torch.randn(4, 64, 10)
    mel[:, :, 0] = 2.0
    model = torch.nn.Linear(8, 10)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(5):
        optimizer.zero_grad()
        PaperLoss()(model(eeg), mel).backward()
        optimizer.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_l1_matches_numpy():
    pred, target = _random(seed=1)
    assert l1_loss(torch.tensor(pred), torch.tensor(target)).item() == pytest.approx(np.abs(pred - target).mean())


@pytest.mark.parametrize("temperature", [0.1, 1.0])
def test_info_nce_windows_matches_numpy(temperature):
    pred, target = _random(batch=6, seed=2)
    got = info_nce_windows(torch.tensor(pred), torch.tensor(target), temperature).item()
    assert got == pytest.approx(_numpy_info_nce(pred, target, temperature), rel=1e-6)


@pytest.mark.parametrize("loss", [info_nce, info_nce_windows])
def test_info_nce_is_symmetric_and_rewards_matching_windows(loss):
    pred, target = _random(batch=5, seed=3)
    p, t = torch.tensor(pred), torch.tensor(target)
    info_nce = loss
    assert info_nce(p, t).item() == pytest.approx(info_nce(t, p).item(), rel=1e-9)
    # perfect predictions beat shuffled ones; a batch of one carries no contrast
    assert info_nce(t, t).item() < info_nce(t[torch.randperm(5)], t).item()
    assert info_nce(p[:1], t[:1]).item() == pytest.approx(0.0, abs=1e-9)


def _official_info_nce_loop(anchor, other, tau):
    """The official ``info_nce_loss`` of ``util/cal_pearson.py``, as a plain loop (float64 torch)."""
    cos = torch.nn.functional.cosine_similarity
    positive = torch.exp(cos(anchor, other, dim=-1) / tau).sum()
    losses = []
    for i in range(len(anchor)):
        negative = torch.exp(cos(anchor[i], other[torch.arange(len(anchor)) != i], dim=-1) / tau).sum()
        losses.append(-torch.log(positive / (positive + negative)))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_info_nce_is_the_official_formula(temperature):
    pred, target = _random(batch=6, seed=5)
    p, t = torch.tensor(pred), torch.tensor(target)
    expected = 0.5 * (_official_info_nce_loop(p, t, temperature) + _official_info_nce_loop(t, p, temperature))
    assert info_nce(p, t, temperature).item() == pytest.approx(expected.item(), rel=1e-9)


def test_official_info_nce_is_inert_for_a_broadcast_single_channel():
    """The official one-channel head: cosine similarity over bands of a constant vector ignores its size."""
    torch.manual_seed(1)
    pred = torch.randn(4, 30, 1, dtype=torch.float64, requires_grad=True)
    target = torch.randn(4, 30, 10, dtype=torch.float64)
    info_nce(pred.expand(-1, -1, 10), target).backward()
    assert pred.grad.abs().max() < 1e-9
    pred.grad = None
    info_nce_windows(pred.expand(-1, -1, 10), target).backward()
    assert pred.grad.abs().max() > 1e-4


def test_paper_loss_contrastive_option():
    pred, target = _random(seed=6)
    p, t = torch.tensor(pred), torch.tensor(target)
    assert PaperLoss().terms(p, t)["infonce"].item() == pytest.approx(info_nce(p, t).item())
    windows = PaperLoss(contrastive="windows").terms(p, t)["infonce"].item()
    assert windows == pytest.approx(info_nce_windows(p, t).item())
    with pytest.raises(ValueError, match="contrastive"):
        PaperLoss(contrastive="frames")


def test_paper_loss_is_the_weighted_sum_and_has_gradient_on_every_band():
    pred, target = _random(seed=4)
    p = torch.tensor(pred, requires_grad=True)
    t = torch.tensor(target)
    loss = PaperLoss()(p, t)
    expected = -pearson_r(p, t).mean() + 0.5 * l1_loss(p, t) + 0.1 * info_nce(p, t, temperature=0.1)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-9)
    loss.backward()
    assert torch.all(p.grad.abs().sum(dim=(0, 1)) > 0)


def test_single_channel_prediction_is_broadcast_over_the_bands():
    torch.manual_seed(0)
    pred = torch.randn(3, 50, 1, requires_grad=True)
    target = torch.randn(3, 50, 10)
    loss_fn = PaperLoss()
    loss = loss_fn(pred, target)
    assert torch.allclose(loss, loss_fn(pred.expand(3, 50, 10), target))
    loss.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()
