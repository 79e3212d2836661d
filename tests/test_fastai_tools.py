"fastai's own tools work unchanged on an efflearn learner"
import math
import pytest
import torch
from fastai.vision.all import (accuracy, ClassificationInterpretation, load_learner, PILImage, get_image_files,
                               valley, slide, minimum, steep)
from efflearn.learner import efficientnet_learner
from efflearn.test_utils import quiet

@pytest.fixture
def learn(small_dls, pretrained_body):
    learn = efficientnet_learner(small_dls, 'b0', pretrained=pretrained_body, metrics=accuracy)
    learn.recorder.train_metrics = False
    return learn


def test_lr_find_with_suggestions(learn):
    before = {k:v.clone() for k,v in learn.model.state_dict().items()}
    with quiet(learn): res = learn.lr_find(suggest_funcs=(valley, slide, minimum, steep), show_plot=False)
    for name in ('valley', 'slide', 'minimum', 'steep'):
        lr = getattr(res, name)
        assert math.isfinite(lr) and 1e-8 < lr < 10, (name, lr)  # `minimum` is lr_at_min/10: it can go below start_lr
    # lr_find restores the weights it started from
    assert all(torch.equal(before[k], v) for k,v in learn.model.state_dict().items())

def test_fit_one_cycle_with_discriminative_lrs(learn):
    learn.unfreeze()
    with quiet(learn): learn.fit_one_cycle(1, slice(1e-5, 1e-3))
    lrs = [h['lr'] for h in learn.opt.hypers]
    assert len(lrs) == 10 and lrs[0] < lrs[-1]
    assert len(learn.recorder.values) == 1

def test_fine_tune(learn):
    with quiet(learn): learn.fine_tune(1, freeze_epochs=1)
    assert learn.opt.frozen_idx == 0 and len(learn.recorder.values) == 1

def test_fit_sgdr(learn):
    with quiet(learn): learn.fit_sgdr(2, 1, lr_max=1e-3)
    assert len(learn.recorder.values) == 3  # cycles of 1 and 2 epochs

def test_tta(learn, small_dls):
    with quiet(learn): preds,targs = learn.tta(n=2)
    assert preds.shape == (len(small_dls.valid_ds), 10)
    assert torch.allclose(preds.sum(1), torch.ones(len(preds)), atol=1e-4)

def test_classification_interpretation(learn, small_dls):
    with quiet(learn): learn.fit_one_cycle(1, 1e-3)
    with quiet(learn): interp = ClassificationInterpretation.from_learner(learn)
    cm = interp.confusion_matrix()
    assert cm.shape == (10, 10) and cm.sum() == len(small_dls.valid_ds)

def test_export_and_load_learner(learn, small_digits, tmp_path):
    with quiet(learn): learn.fit_one_cycle(1, 1e-3)
    learn.export(tmp_path/'export.pkl')
    loaded = load_learner(tmp_path/'export.pkl')
    img = PILImage.create(get_image_files(small_digits/'valid')[0])
    with quiet(learn), quiet(loaded):
        expected,got = learn.predict(img),loaded.predict(img)
    assert expected[0] == got[0]
    assert torch.allclose(expected[2], got[2], atol=1e-5)
    assert loaded.freeze_bn.when == 'always'  # the default with pretrained weights
