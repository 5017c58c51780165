"""RS@k surrogate, SiMix and the two-pass large-batch gradient (issue 8)."""

import pytest
import torch

from reid_pipeline.train.recall import (
    exact_recall_at_k,
    mix_pairs,
    rs_at_k,
    rsk_batch_loss,
    simix,
    two_pass_backward,
)


def _batch(n_ids=6, k=4, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n_ids).repeat_interleave(k)
    e = torch.randn(len(labels), d, generator=g)
    return e, labels


def _self_valid(n):
    return ~torch.eye(n, dtype=torch.bool)


@pytest.mark.parametrize("seed", range(5))
def test_small_temperatures_give_exact_recall(seed):
    e, labels = _batch(seed=seed)
    sim = torch.nn.functional.normalize(e, dim=1) @ torch.nn.functional.normalize(e, dim=1).T
    valid = _self_valid(len(labels))
    ks = (1, 2, 4, 8)
    exact = exact_recall_at_k(sim, labels, labels, valid, ks)
    smooth = 1 - rs_at_k(sim, labels, labels, valid, ks, tau1=1e-3, tau2=1e-6)
    assert abs(float(exact) - float(smooth)) < 1e-4
    # larger temperatures are a genuinely smooth (different) quantity
    loose = 1 - rs_at_k(sim, labels, labels, valid, ks, tau1=None, tau2=0.5)
    assert abs(float(loose) - float(exact)) > 1e-3


def test_hand_made_matrix():
    # one query, items: [pos, neg, neg, pos]; order by sim: neg(0.9) pos(0.8) pos(0.3) neg(0.1)
    sim = torch.tensor([[0.8, 0.9, 0.1, 0.3]])
    q = torch.tensor([1])
    g = torch.tensor([1, 0, 0, 1])
    # R@1 = 0; R@2 = min(2,1)/2 = 0.5; R@4 = 2/2 = 1
    for k, want in ((1, 0.0), (2, 0.5), (4, 1.0)):
        got = 1 - rs_at_k(sim, q, g, ks=(k,), tau1=1e-3, tau2=1e-5)
        assert float(got) == pytest.approx(want, abs=1e-4)
        assert float(exact_recall_at_k(sim, q, g, ks=(k,))) == pytest.approx(want)


def test_gradient_pushes_positives_up_and_negatives_down():
    e, labels = _batch(seed=3)
    sim = (e @ e.T / 4).requires_grad_(True)
    valid = _self_valid(len(labels))
    loss = rs_at_k(sim, labels, labels, valid, tau2=0.1)
    loss.backward()
    pos = (labels[:, None] == labels[None, :]) & valid
    neg = labels[:, None] != labels[None, :]
    assert (sim.grad[pos] <= 1e-12).all() and (sim.grad[pos] < 0).any()
    assert (sim.grad[neg] >= -1e-12).all() and (sim.grad[neg] > 0).any()
    # a step along the gradient lowers the loss
    with torch.no_grad():
        stepped = sim - 0.5 * sim.grad
    assert rs_at_k(stepped, labels, labels, valid, tau2=0.1) < loss


def test_queries_without_positive_are_ignored_and_shapes_checked():
    sim = torch.rand(3, 5)
    q = torch.tensor([7, 8, 9])
    g = torch.tensor([7, 1, 2, 3, 4])
    only_first = rs_at_k(sim[:1], q[:1], g)
    assert float(rs_at_k(sim, q, g)) == pytest.approx(float(only_first))
    with pytest.raises(ValueError, match="does not fit"):
        rs_at_k(sim, q[:2], g)


def test_simix_linear_similarities_equal_materialised_mixes():
    e, labels = _batch(n_ids=4, k=3, d=8, seed=1)
    sim = e @ e.T
    valid = _self_valid(len(labels))
    pairs, alpha = mix_pairs(labels, 10, torch.Generator().manual_seed(0))
    assert pairs.shape == (10, 2) and (labels[pairs[:, 0]] == labels[pairs[:, 1]]).all()
    assert (pairs[:, 0] != pairs[:, 1]).all()
    m = simix(sim, labels, labels, valid, pairs, alpha, q_index=torch.arange(len(labels)))
    assert m.sim.shape == (12, 22) and m.valid.shape == (12, 22)
    assert torch.equal(m.g_labels[12:], labels[pairs[:, 0]])
    mixes = alpha[:, None] * e[pairs[:, 0]] + (1 - alpha)[:, None] * e[pairs[:, 1]]
    torch.testing.assert_close(m.sim[:, 12:], e @ mixes.T, rtol=1e-5, atol=1e-5)
    # a query never retrieves a mix that contains itself
    for c, (i, j) in enumerate(pairs.tolist()):
        assert not m.valid[i, 12 + c] and not m.valid[j, 12 + c]
    # each identity's queries gain exactly the mixes of that identity as extra positives
    extra_pos = (labels[:, None] == m.g_labels[None, 12:]).sum(1)
    for q in range(12):
        assert extra_pos[q] == int((labels[pairs[:, 0]] == labels[q]).sum())


def test_simix_nonlinear_similarity_callback():
    e, labels = _batch(n_ids=3, k=2, d=5, seed=2)
    w = torch.rand(5)

    def score(a, b):
        return -((a[:, None] - b[None]).abs() * w).sum(-1)

    sim = score(e, e)
    pairs, alpha = mix_pairs(labels, 4, torch.Generator().manual_seed(1))

    def mixed(p, a):
        x = a[:, None] * e[p[:, 0]] + (1 - a)[:, None] * e[p[:, 1]]
        return score(e, x)

    m = simix(sim, labels, labels, _self_valid(6), pairs, alpha, mixed_sim=mixed)
    x = alpha[:, None] * e[pairs[:, 0]] + (1 - alpha)[:, None] * e[pairs[:, 1]]
    torch.testing.assert_close(m.sim[:, 6:], score(e, x))


def test_two_pass_gradient_equals_one_pass():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(12, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    w = torch.nn.Parameter(torch.rand(8))
    x = torch.randn(24, 12)
    labels = torch.arange(6).repeat_interleave(4)
    valid = _self_valid(24)

    def loss_fn(e):
        s = -((e[:, None] - e[None]).abs() * w).sum(-1)
        return rs_at_k(s, labels, labels, valid, tau2=0.5)

    loss1 = loss_fn(net(x))
    loss1.backward()
    ref = [p.grad.clone() for p in net.parameters()] + [w.grad.clone()]
    net.zero_grad()
    w.grad = None
    loss2, e = two_pass_backward(net, x, loss_fn, chunk=7)
    got = [p.grad for p in net.parameters()] + [w.grad]
    assert float(loss2) == pytest.approx(float(loss1.detach()), rel=1e-6)
    assert e.shape == (24, 8)
    for a, b in zip(ref, got):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_two_pass_replays_dropout():
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Dropout(0.5), torch.nn.Linear(16, 4))
    x = torch.randn(10, 6)
    labels = torch.arange(5).repeat_interleave(2)

    def loss_fn(e):
        return rs_at_k(e @ e.T, labels, labels, _self_valid(10), tau2=0.5)

    # one pass over the same chunks draws the same dropout masks as pass 1
    torch.manual_seed(5)
    loss_fn(torch.cat([net(x[s : s + 3]) for s in range(0, 10, 3)])).backward()
    ref = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    torch.manual_seed(5)
    two_pass_backward(net, x, loss_fn, chunk=3)
    # pass 2 must replay those masks; fresh masks would give a different gradient
    for a, p in zip(ref, net.parameters()):
        torch.testing.assert_close(a, p.grad, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError):
        two_pass_backward(net, x, loss_fn, chunk=0)


@pytest.mark.parametrize("similarity", ["cosine", "dissimilarity"])
def test_batch_loss_trains_embeddings_towards_recall(similarity):
    torch.manual_seed(0)
    e0, labels = _batch(n_ids=5, k=4, d=8, seed=4)
    e = e0.clone().requires_grad_(True)
    w = torch.full((8,), 0.3, requires_grad=True)
    b = torch.tensor(1.0, requires_grad=True)
    opt = torch.optim.SGD([e, w, b], lr=0.5)
    first = None
    for _ in range(40):
        opt.zero_grad()
        loss = rsk_batch_loss(e, labels, similarity, w=w, b=b, tau2=0.05, n_mix=8)
        loss.backward()
        opt.step()
        first = float(loss) if first is None else first
    assert float(loss) < first

    def r1(x):
        u = torch.nn.functional.normalize(x.detach(), dim=1)
        return float(exact_recall_at_k(u @ u.T, labels, labels, _self_valid(len(labels)), (1,)))

    assert r1(e) > r1(e0)
    with pytest.raises(ValueError):
        rsk_batch_loss(e, labels, "dissimilarity")
    with pytest.raises(ValueError):
        rsk_batch_loss(e, labels, "manhattan")
