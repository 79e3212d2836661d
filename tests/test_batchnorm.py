"BatchNorm running statistics under fine-tuning, with real statistics loaded from a weights file"
import torch
from fastai.vision.all import accuracy
from fastai.callback.training import bn_types
from efflearn.learner import efficientnet_learner

def bn_stats(model):
    return [(m.running_mean.clone(), m.running_var.clone()) for m in model[0].modules() if isinstance(m, bn_types)]

def moved(before, after):
    return [not (torch.equal(m0, m1) and torch.equal(v0, v1)) for (m0,v0),(m1,v1) in zip(before, after)]

def train(dls, body, freeze_bn, unfreeze:bool):
    "One frozen epoch, then (if `unfreeze`) one unfrozen epoch, via fastai's own `fine_tune`"
    learn = efficientnet_learner(dls, 'b0', pretrained=body, freeze_bn=freeze_bn, metrics=accuracy)
    before,conv = bn_stats(learn.model),learn.model[0][-1][0].weight.clone()
    with learn.no_bar(), learn.no_logging():
        if unfreeze: learn.fine_tune(1, base_lr=1e-3, freeze_epochs=1)
        else: learn.fit_one_cycle(1, 1e-3)
    return learn,before,bn_stats(learn.model),conv

def test_statistics_are_real(pretrained_body):
    sd = torch.load(pretrained_body, weights_only=True)
    assert sd['0.0.1.running_mean'].abs().sum() > 0 and not torch.allclose(sd['0.0.1.running_var'], torch.ones(32))

def test_frozen_phase_keeps_statistics(small_dls, pretrained_body):
    learn,before,after,_ = train(small_dls, pretrained_body, 'frozen_groups', unfreeze=False)
    assert learn.opt.frozen_idx == 9
    assert not any(moved(before, after)), "a frozen BatchNorm layer's statistics moved"

def test_fastai_behaviour_moves_frozen_statistics(small_dls, pretrained_body):
    _,before,after,_ = train(small_dls, pretrained_body, 'never', unfreeze=False)
    assert all(moved(before, after))

def test_frozen_groups_trains_statistics_once_unfrozen(small_dls, pretrained_body):
    _,before,after,_ = train(small_dls, pretrained_body, 'frozen_groups', unfreeze=True)
    assert all(moved(before, after))

def test_default_keeps_pretrained_statistics_and_trains_from_scratch_ones(small_dls, pretrained_body):
    # freeze_bn=None: 'always' with pretrained weights (measured best in nbs/13_transfer), 'frozen_groups' without
    learn,before,after,_ = train(small_dls, pretrained_body, None, unfreeze=True)
    assert learn.freeze_bn.when == 'always' and not any(moved(before, after))
    assert efficientnet_learner(small_dls, 'b0', pretrained=False).freeze_bn.when == 'frozen_groups'

def test_always_keeps_statistics_through_fine_tune(small_dls, pretrained_body):
    learn,before,after,conv = train(small_dls, pretrained_body, 'always', unfreeze=True)
    assert not any(moved(before, after))
    assert not torch.equal(conv, learn.model[0][-1][0].weight), "the unfrozen body did not train"
