"""Precomputed activations (`PrecomputeActivations`) in every state of a learner: lr_find, validate, get_preds, tta, export,
predict; with ProgressiveResize; after a crash; from the command line. Lite0 from random weights on the digits at 32 px."""
import contextlib, io, pickle
import pytest, torch
from fastai.callback.core import Callback
from fastai.learner import load_learner
from fastai.losses import CrossEntropyLossFlat
from fastai.metrics import accuracy
from fastcore.test import test_close as close_enough
from efflearn.test_utils import digits_dls, quiet
from efflearn.learner import efficientnet_learner
from efflearn.callback.precompute import PrecomputeActivations
from efflearn.callback.resize import ProgressiveResize
from efflearn.cli import main


def frozen_learner(tmp_path, dls=None, **kwargs):
    learn = efficientnet_learner(dls or digits_dls(every=10), 'lite0', pretrained=False, precompute=True, metrics=accuracy,
                                 path=tmp_path, **kwargs)
    learn.freeze()
    return learn


def body_calls(learn):
    calls = []
    learn.model[0].register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape)))
    return calls


class silent:
    "No bars, no tables, no printed notes"
    def __init__(self, learn): self.cms = [quiet(learn), contextlib.redirect_stdout(io.StringIO())]
    def __enter__(self): [cm.__enter__() for cm in self.cms]; return self
    def __exit__(self, *exc): [cm.__exit__(*exc) for cm in reversed(self.cms)]


def test_every_call_in_both_states(tmp_path):
    learn = frozen_learner(tmp_path)
    for state in ('activations', 'unfrozen'):
        with silent(learn):
            sugg = learn.lr_find(num_it=10, show_plot=False)
            learn.fit(1, 1e-2)
            loss, acc = learn.validate()
            preds, targs = learn.get_preds()
            tta, _ = learn.tta(n=1)
        close_enough(loss, CrossEntropyLossFlat()(torch.log(preds), targs), eps=1e-4)  # the model of get_preds, on images
        assert preds.shape == tta.shape == (len(learn.dls.valid_ds), 10)
        assert isinstance(sugg.valley, float)  # from scratch, unfrozen too: fastai's sweep
        learn.export(f'{state}.pkl')
        loaded = load_learner(tmp_path/f'{state}.pkl')
        cls, idx, probs = loaded.predict(learn.dls.valid_ds.items[0])
        close_enough(probs, preds[0], eps=1e-4)
        assert loaded.precompute and not loaded.precompute_activations.caches  # the switch travels, the activations do not
        learn.unfreeze()


def test_export_leaves_activations_out(tmp_path):
    learn = frozen_learner(tmp_path)
    with silent(learn): learn.fit(1, 1e-2)
    assert learn.precompute_activations.caches
    learn.export('with.pkl')
    learn.precompute_activations.caches.clear(); learn.export('without.pkl')
    assert abs((tmp_path/'with.pkl').stat().st_size - (tmp_path/'without.pkl').stat().st_size) < 1000


def test_progressive_resize(tmp_path):
    "One size per epoch: activations at each; validation at the final size; sizes logged as trained"
    learn = frozen_learner(tmp_path, dls=digits_dls(every=10, size=48))
    calls = body_calls(learn)
    with silent(learn): learn.fit(2, 1e-2, cbs=ProgressiveResize((32, 48), epochs=(1,)))
    n = len(learn.dls.train)
    assert learn.recorder.sizes == [32]*n + [48]*n
    shapes = {s[-1] for s in calls}
    assert shapes == {32, 48}
    assert sum(s[0] for s in calls) == 2*len(learn.dls.train_ds) + len(learn.dls.valid_ds)  # train at 32 and 48, valid at 48 once


def test_size_change_within_an_epoch_runs_full_passes(tmp_path):
    learn = frozen_learner(tmp_path, dls=digits_dls(every=10, size=48))
    calls = body_calls(learn)
    out = io.StringIO()
    with quiet(learn), contextlib.redirect_stdout(out): learn.fit(1, 1e-2, cbs=ProgressiveResize((32, 48), pcts=(0.5, 0.5)))
    assert 'changes within epoch 0' in out.getvalue()
    assert len(calls) >= len(learn.dls.train)  # every training batch went through the body


def test_crash_in_a_precomputed_epoch(tmp_path):
    "An exception that skips `after_fit` leaves the learner usable: predictions on images, and the next fit"
    class Boom(Callback):
        def after_batch(self):
            if self.training and self.iter == 1: raise RuntimeError('boom')
    learn = frozen_learner(tmp_path)
    with silent(learn), pytest.raises(RuntimeError, match='boom'): learn.fit(1, 1e-2, cbs=Boom())
    with silent(learn):
        preds, _ = learn.get_preds()
        loss, acc = learn.validate()
        learn.fit(1, 1e-2)
    assert torch.isfinite(preds).all() and 'forward' not in learn.model.__dict__


def test_keras_bn_allows_precompute_with_train_bn(tmp_path):
    learn = frozen_learner(tmp_path, train_bn=True, freeze_bn_affine=True)
    calls = body_calls(learn)
    with silent(learn): learn.fit(2, 1e-2)
    assert sum(s[0] for s in calls) == len(learn.dls.train_ds) + len(learn.dls.valid_ds)


def test_cli_refuses_precompute_without_frozen_epochs(capsys):
    assert main(['train', '--precompute']) == 2  # the digits train from scratch: no head-only epochs
    assert '--precompute' in capsys.readouterr().err


def test_lr_find_after_unfreezing_sweeps_and_plots_the_slice(tmp_path):
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    learn = frozen_learner(tmp_path)
    learn.pretrained = True  # what a learner with ImageNet weights says; the digits run needs no download
    with silent(learn): frozen = learn.lr_find(num_it=10)
    assert isinstance(frozen.valley, float)  # frozen: fastai's sweep
    learn.unfreeze()
    with silent(learn): res = learn.lr_find(num_it=10)
    assert isinstance(res.valley, slice) and abs(res.valley.stop/res.valley.start - 100) < 1e-6
    assert 'Learning rate of the head' in plt.gca().get_xlabel()
    plt.close('all')
