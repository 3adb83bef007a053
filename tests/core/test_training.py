"""Training of the spiking MLP: hand-computed 2-2-2 samples, integer mode, learning."""
import numpy as np
import pytest

from distspike.config import ModelConfig, NetConfig, TrainingConfig
from distspike.core.oracle import OracleNet
from distspike.runtime.local import local_net

W1 = np.array([[0.75, -0.5], [0.5, 0.25]])
W2 = np.array([[1.0, 0.25], [-0.5, 0.75]])
X, LABEL = np.array([1.0, 0.5]), 1


def _tiny(rule, routing="bfs", column_read="before_update"):
    # T = 2, eta = 0.4 -> lr = eta / T^2 = 0.1
    cfg = NetConfig(ModelConfig((2, 2, 2), 0.0), TrainingConfig(rule=rule, steps=2, eta=0.4, column_read=column_read),
                    routing=routing)
    net = local_net(cfg, weights=[W1.copy(), W2.copy()])
    net.scheduler.trace = []
    net.train_sample(X, LABEL)
    return net


def _fwd_per_step(trace):
    return [[sum(n for s, k, l, n in trace if s == t and k in ("input", "fwd") and l == layer) for layer in range(3)]
            for t in range(2)]


@pytest.mark.parametrize("routing", ["bfs", "dfs"])
def test_sgd_sample_by_hand(routing):
    # t0: input (0,+) -> l1 (0,+) -> l2 (0,+); target (1,-); launch (0,+): passes, column [1,-.5]
    #     -> phi_b [1,-.5] fires (0,+) -> [0,-.5], passes gate1; launch (1,-): column -[.25,.75]
    #     -> phi_b [-.25,-1.25] fires (1,-) -> [-.25,-.25], blocked by S1[1] = -.5.
    # t1: input (0,+),(1,+) -> l1 (0,+) -> l2 (0,+); launch (0,+): phi_b [.75,-.75] fires (0,+)
    #     then (1,-) (tie: lower index first) -> [-.25,.25]; (0,+) passes gate1, (1,-) blocked;
    #     launch (1,-): phi_b [-.5,-.5], silent.
    # end: c1=[2,1], e1=[2,0], c2=[2,0], e2=[2,-2]; W -= 0.1 * outer(relu(c), e)
    net = _tiny("sgd", routing)
    w1, w2 = net.weights()
    np.testing.assert_allclose(w1, [[0.35, -0.5], [0.3, 0.25]], atol=1e-15)
    np.testing.assert_allclose(w2, [[0.6, 0.65], [-0.5, 0.75]], atol=1e-15)
    np.testing.assert_allclose(net.backend.bq[2][0].module.phi, [-0.5, -0.5], atol=1e-15)
    assert _fwd_per_step(net.scheduler.trace) == [[1, 1, 1], [2, 1, 1]]
    assert net.stats.err_passed.tolist() == [0, 2, 4]


@pytest.mark.parametrize("routing", ["bfs", "dfs"])
def test_fsgd_sample_by_hand_column_read_after_update(routing):
    # t0: launch (0,+): W2[:,0] -= .1*[1,0] -> [.9,-.5]; phi_b [.9,-.5] fires (0,+) -> [-.1,-.5],
    #     passes gate1: W1[:,0] -= .1*[1,0] -> [.65,.5]; launch (1,-): W2[:,1] += .1*[1,0] ->
    #     [.35,.75]; phi_b [-.45,-1.25] fires (1,-) -> [-.45,-.25], blocked.
    # t1: l1 rows [.65,-.5], [.5,.25]: phi1 [.4,-1] then [.9,-.75] fires (0,+); l2 row [.9,.35]:
    #     phi2 [.9,.6] fires (0,+),(1,+); counter [1,1] + target (1,-) -> launch (0,+):
    #     W2[:,0] -= .1*[2,0] -> [.7,-.5]; phi_b [.25,-.75] fires (1,-) -> [.25,.25], blocked.
    net = _tiny("fsgd", routing, "after_update")
    w1, w2 = net.weights()
    np.testing.assert_allclose(w1, [[0.65, -0.5], [0.5, 0.25]], atol=1e-15)
    np.testing.assert_allclose(w2, [[0.7, 0.35], [-0.5, 0.75]], atol=1e-15)
    np.testing.assert_allclose(net.backend.bq[2][0].module.phi, [0.25, 0.25], atol=1e-15)
    assert _fwd_per_step(net.scheduler.trace) == [[1, 1, 1], [2, 1, 2]]
    assert net.stats.err_passed.tolist() == [0, 1, 3]


@pytest.mark.parametrize("routing", ["bfs", "dfs"])
def test_fsgd_sample_by_hand_column_read_before_update(routing):
    # t0: launch (0,+): phi_b reads [1,-.5], fires (0,+) -> [0,-.5]; then W2[:,0] -> [.9,-.5];
    #     (0,+) passes gate1 (S1[0] = .75): W1[:,0] -= .1*[1,0] -> [.65,.5]; launch (1,-): phi_b
    #     reads -[.25,.75] -> [-.25,-1.25], fires (1,-) -> [-.25,-.25]; then W2[:,1] -> [.35,.75];
    #     (1,-) blocked by S1[1] = -.5.
    # t1: forward as in the other order (same W1, W2); launch (0,+): phi_b reads [.9,-.5] ->
    #     [.65,-.75], fires (1,-) then (0,+) -> [-.35,.25]; then W2[:,0] -= .1*[2,0] -> [.7,-.5].
    #     S1 = [1.9,-.75]: (1,-) blocked, (0,+) passes: W1[:,0] -= .1*[2,1] -> [.45,.4].
    net = _tiny("fsgd", routing)
    w1, w2 = net.weights()
    np.testing.assert_allclose(w1, [[0.45, -0.5], [0.4, 0.25]], atol=1e-15)
    np.testing.assert_allclose(w2, [[0.7, 0.35], [-0.5, 0.75]], atol=1e-15)
    np.testing.assert_allclose(net.backend.bq[2][0].module.phi, [-0.35, 0.25], atol=1e-15)
    assert _fwd_per_step(net.scheduler.trace) == [[1, 1, 1], [2, 1, 2]]
    assert net.stats.err_passed.tolist() == [0, 2, 3]


@pytest.mark.parametrize("column_read,w1", [("before_update", [[0.45, -0.5], [0.4, 0.25]]),
                                            ("after_update", [[0.65, -0.5], [0.5, 0.25]])])
def test_oracle_matches_the_hand_computation_too(column_read, w1):
    cfg = NetConfig(ModelConfig((2, 2, 2), 0.0), TrainingConfig(rule="fsgd", steps=2, eta=0.4, column_read=column_read))
    oracle = OracleNet(cfg, weights=[W1.copy(), W2.copy()])
    oracle.train_sample(X, LABEL)
    np.testing.assert_allclose(oracle.W[0], w1, atol=1e-15)
    np.testing.assert_allclose(oracle.W[1], [[0.7, 0.35], [-0.5, 0.75]], atol=1e-15)


def _digits():
    from sklearn.datasets import load_digits
    d = load_digits()
    X, y = d.data / 16.0, d.target
    return X[:1347], y[:1347], X[1347:], y[1347:]


def _state_arrays(net):
    b, s = net.backend, net.scheduler
    mods = [m.module for shards in (*b.fq.values(), *b.bq.values()) for m in shards]
    arrays = [a for m in mods for a in vars(m).values() if isinstance(a, np.ndarray)]
    return arrays + [s.inp.phi, s.inp.total, s.tgt.phi, s.counter.counts]


def test_integer_mode_uses_integers_only_and_learns_like_float():
    Xtr, ytr, Xte, yte = _digits()
    errs = {}
    for dtype in ("int", "float64"):
        cfg = NetConfig(ModelConfig((64, 50, 10), 0.01, dtype), TrainingConfig(rule="sgd"))
        net = local_net(cfg, shards=2)
        before = [w.copy() for w in net.raw_weights()]
        for _ in range(2):
            net.train_epoch(Xtr, ytr)
        errs[dtype] = net.error(Xte, yte)
        if dtype == "int":
            arrays = _state_arrays(net)
            assert arrays and all(a.dtype.kind in "iub" for a in arrays), {a.dtype for a in arrays}
            assert all(w.dtype.kind == "i" for w in net.raw_weights())
            assert any((a != b).any() for a, b in zip(before, net.raw_weights()))
    assert errs["int"] < 30.0 and abs(errs["int"] - errs["float64"]) < 5.0, errs


def test_learns_digits_close_to_relu_mlp():
    from distspike.relu import ReluMLP
    Xtr, ytr, Xte, yte = _digits()
    net = local_net(NetConfig(ModelConfig((64, 50, 10), 0.01), TrainingConfig(rule="sgd")))
    relu = ReluMLP((64, 50, 10), w_init=0.01, eta=0.01, seed=1234)
    for _ in range(3):
        net.train_epoch(Xtr, ytr)
        relu.train_epoch(Xtr, ytr)
    err, relu_err = net.error(Xte, yte), relu.error(Xte, yte)
    assert err < 20.0 and abs(err - relu_err) < 5.0, (err, relu_err)


def test_zero_reset_with_small_weights_does_not_learn():
    """Paper Table 3: zero-reset backward quantizers never reach threshold at w_init 0.01."""
    Xtr, ytr, Xte, yte = _digits()
    errs, nets = {}, {}
    for reset in ("none", "zero"):
        cfg = NetConfig(ModelConfig((64, 100, 100, 10), 0.01), TrainingConfig(backward_reset=reset))
        nets[reset] = net = local_net(cfg)
        for _ in range(6):
            net.train_epoch(Xtr, ytr)
        errs[reset] = net.error(Xte, yte)
    assert nets["zero"].stats.bwd_out.sum() == 0 and nets["none"].stats.bwd_out.sum() > 0
    assert errs["zero"] > 85.0 and errs["none"] < 70.0, errs
