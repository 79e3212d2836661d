"End to end on real images: progressive resizing with SGDR, then a transfer with gradual unfreezing"
import numpy as np
import pytest
import torch
from fastai.vision.all import accuracy, Resize
from efflearn.learner import efficientnet_learner
from efflearn.callback.resize import ProgressiveResize
from efflearn.callback.schedule import *
from efflearn.callback.fine_tune import *
from efflearn.test_utils import folder_dls, class_subset, quiet

def fit_quietly(learn, fit, *args, **kwargs):
    with quiet(learn): fit(*args, **kwargs)
    return learn.recorder.values[-1][-1]  # accuracy of the last epoch

@pytest.fixture(scope='module')
def source_body(digits, tmp_path_factory):
    "B0 trained from scratch on digits 0-4 with SGDR (cycles of 2 and 4 epochs), one image size per cycle"
    tmp = tmp_path_factory.mktemp('source')
    learn = efficientnet_learner(folder_dls(class_subset(digits, tmp/'d04', range(5)), size=32, bs=32), 'b0',
                                 pretrained=False, metrics=accuracy)
    resize = ProgressiveResize((32, 48), epochs='cycles')
    acc = fit_quietly(learn, learn.fit_sgdr, 2, 2, 1e-2, warmup=0.2, cbs=resize)
    n_iter = len(learn.dls.train)
    sizes = learn.recorder.hps['size']
    assert sizes == [32]*2*n_iter + [48]*4*n_iter  # a restart at each size change
    lrs = learn.recorder.hps['lr']
    assert lrs[0] == pytest.approx(1e-2/25) and lrs[2*n_iter] == pytest.approx(1e-2)  # warmup, then the restart at its peak
    assert learn.dls.valid.one_batch()[0].shape[-1] == 48  # predictions after training are at the final size
    torch.save(learn.model[0].state_dict(), tmp/'body.pth')
    return acc, tmp/'body.pth'

def test_sgdr_with_progressive_resizing_learns(source_body):
    acc,_ = source_body
    print(f"source: digits 0-4, SGDR 2+4 epochs at 32 then 48px: accuracy {acc:.3f}")
    assert acc >= 0.9

def test_transfer_with_gradual_unfreezing(source_body, digits, tmp_path):
    _,body = source_body
    dls = folder_dls(class_subset(digits, tmp_path/'d59', range(5, 10)), size=32, bs=32)
    # the body was trained on unnormalised digits: ImageNet's Normalize would hand it inputs it never saw
    learn = efficientnet_learner(dls, 'b0', pretrained=body, normalize=False, metrics=accuracy)
    acc = fit_quietly(learn, learn.fine_tune, 4, 2e-3, unfreeze_every=1, cbs=ProgressiveResize((32, 48)))
    print(f"transfer to digits 5-9, fine_tune(4, unfreeze_every=1) at 32 -> 48px: accuracy {acc:.3f}")
    assert learn.opt.frozen_idx == len(learn.opt.param_lists) - 5  # head + 4 groups unfrozen one by one
    assert learn.recorder.hps['size'][-1] == 48
    assert acc >= 0.45  # chance is 0.2; measured 0.603 (plain fine_tune with all groups unfrozen: 0.737)
