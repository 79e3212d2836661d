"Model EMA: fine_tune's two phases, fastai's callbacks, export (B0 on all the digits with EMA: tests/test_train.py)"
import warnings
import pytest
import torch
from torch import nn
from fastai.vision.all import (Learner, Callback, CancelStepException, GradientAccumulation, MixedPrecision,
                               accuracy, load_learner, set_seed, get_image_files)
from efflearn.learner import efficientnet_learner
from efflearn.callback.ema import EMA
from efflearn.test_utils import folder_dls

def state(model): return [t.detach().clone() for t in model.state_dict().values()]
def same(a, b): return len(a) == len(b) and all(torch.equal(x, y) for x,y in zip(a, b))

def b0(dls, cbs=None, **kwargs):
    set_seed(0)
    learn = efficientnet_learner(dls, 'b0', pretrained=False, metrics=accuracy, cbs=cbs, **kwargs)
    learn.recorder.train_metrics = False
    return learn

def tiny(dls, cbs=None):
    set_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 10))
    return Learner(dls, model, metrics=accuracy, cbs=cbs)

class LastStep(Callback):
    "The live weights and buffers after the last optimizer step"
    def after_step(self): self.state = state(self.model)

class Probe(Callback):
    "At the end of each fit: the EMA's step count, and whether frozen parameters are equal in the average and the model"
    order = EMA.order+1
    def __init__(self, ema): self.ema,self.log = ema,[]
    def after_fit(self):
        pairs = [(p, q) for p,q in zip(self.model.parameters(), self.ema.avg.module.parameters()) if not p.requires_grad]
        self.log.append((self.ema.n_steps, len(pairs), all(torch.equal(p, q) for p,q in pairs)))

def test_fine_tune_keeps_one_average(small_dls):
    ema = EMA()
    learn = b0(small_dls)
    probe = Probe(ema)
    with learn.no_bar(), learn.no_logging(): learn.fine_tune(1, freeze_epochs=1, cbs=[ema, probe])
    n = len(small_dls.train)  # 5 batches of 32 (180 images, drop_last)
    (n1, frozen1, equal1), (n2, frozen2, _) = probe.log
    assert (n1, n2) == (n, 2*n), "the unfrozen phase restarted the average"
    assert frozen1 > 100 and equal1, "frozen parameters differ between the average and the model"
    assert frozen2 == 0
    assert not same(state(learn.model), state(ema.avg.module))

def test_validating_with_average_leaves_training_alone(small_digits):
    # Same seed, same data: one run validates with the average, the other with the live weights. Training must be
    # the same bit for bit, and each run's records must be of the weights they claim.
    runs = {}
    for validate in (True, False):
        dls = folder_dls(small_digits)
        ema = EMA(0.9, validate=validate)
        learn = tiny(dls, cbs=ema)
        with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(4, 1e-2)
        runs[validate] = learn,ema
    (l_avg, e_avg), (l_live, e_live) = runs[True], runs[False]
    assert same(state(l_avg.model), state(l_live.model)), "validating with the average changed training"
    assert same(state(e_avg.avg.module), state(e_live.avg.module))
    # copies: `learn.validate()` below empties `recorder.values` (the Recorder gets `before_fit` there too)
    rec_avg, rec_live = [list(v) for v in l_avg.recorder.values], [list(v) for v in l_live.recorder.values]
    assert len(rec_avg) == len(rec_live) == 4
    assert all(r[0] == s[0] for r,s in zip(rec_avg, rec_live)), "training losses differ"
    assert all(r[1] != s[1] for r,s in zip(rec_avg, rec_live)), "validation losses should be of different weights"
    with l_live.no_bar(): live = l_live.validate()
    with l_live.no_bar(), e_live.averaged(): averaged = l_live.validate()
    assert rec_live[-1][1:] == pytest.approx(list(live), abs=1e-6)
    assert rec_avg[-1][1:] == pytest.approx(list(averaged), abs=1e-6)
    # outside `fit`, `learn.validate()` uses the live weights even with validate=True
    with l_avg.no_bar(): assert list(l_avg.validate()) == pytest.approx(list(live), abs=1e-6)
    assert same(state(l_avg.model), state(l_live.model))

def test_channels_last_and_mixed_precision(small_dls):
    # On the CPU, MixedPrecision's autocast and GradScaler switch themselves off; the callbacks still run.
    ema = EMA(validate=True)
    learn = b0(small_dls, channels_last=True, cbs=[MixedPrecision(), ema])
    last = LastStep()
    with warnings.catch_warnings(), learn.no_bar(), learn.no_logging():
        warnings.simplefilter('ignore')  # "CUDA is not available, disabling"
        learn.fit(1, 1e-3, cbs=last)
    assert same(state(learn.model), last.state), "validation did not give the training weights back exactly"
    convs = [(p, q) for p,q in zip(learn.model.parameters(), ema.avg.module.parameters()) if p.ndim == 4]
    assert convs and all(q.is_contiguous(memory_format=torch.channels_last) for _,q in convs)
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p,_ in convs)
    assert all(q.dtype == torch.float32 for q in ema.avg.module.parameters())

class SkipOdd(Callback):
    "Cancel every other optimizer step, as MixedPrecision does when fp16 gradients overflow"
    order = MixedPrecision.order
    def before_step(self):
        if self.iter % 2: raise CancelStepException()

def test_only_real_steps_count(small_dls):
    ema = EMA()
    learn = tiny(small_dls, cbs=[ema, SkipOdd()])
    with learn.no_bar(), learn.no_logging(): learn.fit(2, 1e-2)
    assert ema.n_steps == 2*3  # iterations 0, 2, 4 of 5
    ema = EMA()
    learn = tiny(small_dls, cbs=[ema, GradientAccumulation(n_acc=64)])
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-2)
    assert ema.n_steps == 2  # one step every 2 batches of 32

def test_export_and_load_learner(small_dls, tmp_path):
    learn = b0(small_dls, cbs=[EMA()], path=tmp_path)
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3)
    assert learn.ema.n_steps == len(small_dls.train)
    learn.ema.apply()  # ship the averaged weights
    assert same(state(learn.model), state(learn.ema.avg.module))
    learn.export('ema.pkl')
    assert learn.ema.n_steps == len(small_dls.train), "export dropped the live callback's average"
    torch.save(learn.model, tmp_path/'model.pth')
    # the average is training state, like the optimizer's: the export holds one copy of the weights, not two
    assert (tmp_path/'ema.pkl').stat().st_size < 1.2*(tmp_path/'model.pth').stat().st_size
    loaded = load_learner(tmp_path/'ema.pkl')
    assert isinstance(loaded.ema, EMA) and loaded.ema.n_steps == 0 and loaded.ema.decay == 0.9998
    assert same(state(loaded.model), state(learn.model))
    with pytest.raises(RuntimeError, match='nothing averaged yet'): loaded.ema.apply()
    with loaded.no_bar(): loaded.get_preds(dl=loaded.dls.test_dl(get_image_files(small_dls.path/'valid')[:4]))
    assert loaded.ema.avg is None, "inference should not copy the model"

@pytest.mark.parametrize('decay', [0, 1, 1.5, -0.1])
def test_bad_decay(decay):
    with pytest.raises(ValueError, match=f'decay={decay}'): EMA(decay=decay)
