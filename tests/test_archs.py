"Every architecture in the table builds, runs forward and backward, and splits into whole stages"
import pytest
import torch
from torch import nn
from fastai.vision.all import Learner, norm_bias_params
from efflearn.archs import ARCHS
from efflearn.model import create_efficientnet_model
from efflearn.split import efficientnet_split, check_split

N_STAGES = {'v2_s': 6}  # every other architecture has 7 MBConv stages

@pytest.mark.parametrize('name', list(ARCHS))
def test_build_forward_backward(name):
    arch = ARCHS[name]
    model = create_efficientnet_model(name, n_out=3, head='efficientnet')  # the paper's head, with the table's dropout
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 3) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters()), "a parameter got no gradient"
    assert {m.eps for m in model.modules() if isinstance(m, nn.BatchNorm2d)} == {arch.bn_eps}
    assert model[1][2].p == arch.dropout
    assert model[0][-1][0].kernel_size == (1, 1)

@pytest.mark.parametrize('name', list(ARCHS))
def test_split_whole_stages(name, small_dls):
    model = create_efficientnet_model(name, n_out=10)
    groups = efficientnet_split(model)
    n_stages = N_STAGES.get(name, 7)
    assert len(groups) == n_stages + 3  # stem, stages, final conv, head
    check_split(model, groups)
    learn = Learner(small_dls, model, splitter=efficientnet_split)
    learn.create_opt()
    bn = {id(p) for p in norm_bias_params(model, with_bias=False)}
    for k in range(1, len(groups)+1):
        learn.freeze_to(-k)
        for stage_idx,stage in enumerate(model[0]):
            for block in (stage if stage_idx not in (0, len(model[0])-1) else [stage]):
                flags = {p.requires_grad for p in block.parameters() if id(p) not in bn}
                assert len(flags) == 1, f"freeze_to(-{k}) left block {stage_idx} of {name} half frozen"
        trainable = [all(p.requires_grad for p in g if id(p) not in bn) for g in learn.opt.param_lists]
        assert trainable == [False]*(len(groups)-k) + [True]*k
