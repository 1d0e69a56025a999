"""The heads' torch modules, their datasets and the PaperSchedule callback, in isolation."""

import numpy as np
import pytest
import torch
from skorch.history import History
from torch import nn

from sklearn_mlsp.heads import (
    FC3,
    Multi3FC,
    PaperSchedule,
    Pool3FC,
    Single1FC,
    Single3FC,
)
from sklearn_mlsp.heads.data import AllViewsDataset, Features, RandomViewDataset


def test_fc3_layers_and_he_initialisation():
    torch.manual_seed(0)
    fc = FC3(400, hidden=(300, None, 20), dropout=(0.25, 0.25, 0.5))
    kinds = [type(m) for m in fc.hidden]
    assert kinds == [nn.Linear, nn.ReLU, nn.BatchNorm1d, nn.Dropout] * 3
    linears = [m for m in fc.hidden if isinstance(m, nn.Linear)]
    # None: the input width
    assert [(m.in_features, m.out_features) for m in linears] == [(400, 300), (300, 400), (400, 20)]
    assert [m.p for m in fc.hidden if isinstance(m, nn.Dropout)] == [0.25, 0.25, 0.5]
    assert linears[0].weight.std().item() == pytest.approx(np.sqrt(2 / 400), rel=0.05)
    assert torch.all(linears[0].bias == 0)
    assert fc.output.out_features == 1 and fc(torch.randn(8, 400)).shape == (8, 1)


def test_dropout_aligns_with_fewer_hidden_layers():
    fc = FC3(10, hidden=(8, 4))
    assert [m.p for m in fc.hidden if isinstance(m, nn.Dropout)] == [0.25, 0.5]
    fc = FC3(10, hidden=(8, 4, 4, 2), dropout=0.1)
    assert [m.p for m in fc.hidden if isinstance(m, nn.Dropout)] == [0.1] * 4


def test_paper_sizes():
    assert [m.out_features for m in Single3FC(16928).fc.hidden if isinstance(m, nn.Linear)] == [2048, 1024, 256]
    pool = Pool3FC(64)  # width 1024 -> 3072 pooled channels, X = 3072
    assert pool.out_channels == 3072
    assert [m.out_features for m in pool.fc.hidden if isinstance(m, nn.Linear)] == [3072, 1024, 256]
    multi = Multi3FC((320, 128))
    assert [m.out_features for m in multi.taps[0].hidden if isinstance(m, nn.Linear)] == [320, 1024, 256]
    assert Single1FC(7)(torch.randn(3, 7)).shape == (3, 1)


def test_multi3fc_scores_each_tap_on_its_own_channels():
    torch.manual_seed(0)
    net = Multi3FC((3, 5), hidden=(4,), dropout=0.0).eval()
    x = torch.randn(6, 8)
    per_tap = torch.cat([net.taps[0](x[:, :3]), net.taps[1](x[:, 3:])], dim=1)
    torch.testing.assert_close(net(x), net.combine(per_tap))
    torch.testing.assert_close(net.combine.weight, torch.full((1, 2), 0.5))  # starts as the mean
    x2 = x.clone()
    x2[:, 3:] += 1.0  # only the second tap changes
    torch.testing.assert_close(net.taps[0](x2[:, :3]), net.taps[0](x[:, :3]))
    with pytest.raises(ValueError, match="sum to 8 but the features have 9"):
        Multi3FC((3, 5), in_features=9)


def test_pool3fc_inception_columns_keep_the_grid():
    torch.manual_seed(0)
    net = Pool3FC(6, width=8, hidden=(4,)).eval()
    x = torch.randn(2, 6, 5, 5)
    reduced = net.col2_reduce(x)
    assert net.col1(x).shape == (2, 8, 5, 5)
    assert net.col2_1x3(reduced).shape == (2, 4, 5, 5) and net.col2_3x1(reduced).shape == (2, 4, 5, 5)
    assert net.col3(x).shape == (2, 8, 5, 5)
    conv = net.col2_1x3[0]
    assert conv.kernel_size == (1, 3) and conv.bias is None
    assert isinstance(net.col2_1x3[1], nn.BatchNorm2d) and isinstance(net.col2_1x3[2], nn.ReLU)
    pool = net.col3[0]
    assert pool.kernel_size == 3 and pool.stride == 1 and not pool.count_include_pad
    assert net.out_channels == 24 and net(x).shape == (2, 1)


def test_datasets_read_one_batch_per_call_sorted():
    data = np.arange(5 * 3 * 2 * 2 * 2, dtype=np.float32).reshape(5, 3, 2, 2, 2)
    feats = Features(data, reduce_grid=True, check_finite=True)
    train = RandomViewDataset(feats, rows=[0, 2, 4], y=[1.0, 2.0, 3.0], seed=0)
    X, y = train.__getitems__([2, 0])
    np.testing.assert_allclose(X[:, 0].numpy(), data[[0, 4], train.views[[0, 2]]].mean(axis=(-2, -1)))
    np.testing.assert_allclose(y.numpy().ravel(), [1.0, 3.0])
    X, y = AllViewsDataset(Features(data, False, False), rows=[1, 3]).__getitems__([1, 0])
    assert X.shape == (2, 3, 2, 2, 2) and torch.equal(X, torch.from_numpy(data[[1, 3]]))


class FakeNet:
    """What PaperSchedule touches: history, optimizer_, module_, verbose."""

    def __init__(self, lr=1e-4):
        self.history = History()
        self.module_ = nn.Linear(1, 1, bias=False)
        self.optimizer_ = torch.optim.Adam(self.module_.parameters(), lr=lr)
        self.verbose = 0

    def epoch(self, schedule, valid_loss):
        # The "training" of this epoch: weights become the epoch number.
        with torch.no_grad():
            self.module_.weight.fill_(len(self.history) + 1)
        self.history.new_epoch()
        self.history.record("epoch", len(self.history))
        self.history.record("valid_loss", valid_loss)
        schedule.on_epoch_end(self)

    @property
    def weight(self):
        return self.module_.weight.item()


def test_schedule_drops_on_plateau_and_reloads_best():
    net, sched = FakeNet(), PaperSchedule(patience=2).initialize()
    sched.on_train_begin(net)
    for loss in [1.0, 0.5, 0.6, 0.7]:  # best at epoch 2, no improvement for 2 epochs
        net.epoch(sched, loss)
    assert sched.drops_ == [4] and net.history[-1, "lr_drop"]
    assert net.optimizer_.param_groups[0]["lr"] == pytest.approx(1e-5)
    assert net.weight == 2  # the best epoch's weights are back
    assert net.history[:, "lr"] == [1e-4] * 4


def test_schedule_steps_every_step_epochs_then_stops_at_the_floor():
    net, sched = FakeNet(), PaperSchedule(step_epochs=3, patience=None).initialize()
    sched.on_train_begin(net)
    losses = iter(np.linspace(1, 0.1, 20))  # always improving: only the steps drop
    for _ in range(6):
        net.epoch(sched, next(losses))
    assert sched.drops_ == [3, 6]
    assert net.optimizer_.param_groups[0]["lr"] == pytest.approx(1e-6)
    net.epoch(sched, next(losses))
    net.epoch(sched, next(losses))
    with pytest.raises(KeyboardInterrupt):  # a drop below min_lr=1e-6 ends training
        net.epoch(sched, next(losses))
    assert net.history[:, "lr"] == pytest.approx([1e-4] * 3 + [1e-5] * 3 + [1e-6] * 3)


def test_schedule_loads_best_weights_at_train_end_and_frees_them():
    net, sched = FakeNet(), PaperSchedule().initialize()
    sched.on_train_begin(net)
    for loss in [0.9, 0.3, 0.5]:
        net.epoch(sched, loss)
    assert net.weight == 3
    sched.on_train_end(net)
    assert net.weight == 2 and sched.best_epoch_ == 2 and sched.best_score_ == 0.3
    assert sched.best_state_ is None
    assert "best_state_" not in sched.get_params()


def test_schedule_without_reload_keeps_last_weights():
    net, sched = FakeNet(), PaperSchedule(patience=1, reload_best=False).initialize()
    sched.on_train_begin(net)
    for loss in [0.3, 0.5]:
        net.epoch(sched, loss)
    sched.on_train_end(net)
    assert sched.drops_ == [2] and net.weight == 2


def test_every_module_owns_its_output_initialisation():
    from sklearn_mlsp.heads import FC3, Multi3FC, Pool3FC, Single1FC, Single3FC

    modules = [
        (Single1FC(6), torch.zeros(5, 6)),
        (Single3FC(6, hidden=(8, 4)), torch.randn(5, 6)),
        (Multi3FC((2, 4), hidden=(8, 4)), torch.randn(5, 6)),
        (Pool3FC(6, width=4, hidden=(8, 4)), torch.randn(5, 6, 3, 3)),
        (FC3(6, hidden=(8,)), torch.randn(5, 6)),
    ]
    for module, x in modules:
        module.init_output(0.37)
        module.eval()
        torch.testing.assert_close(module(x), torch.full((5, 1), 0.37))
