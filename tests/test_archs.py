"Every architecture in the table builds, runs forward and backward, and splits into whole stages"
import pytest
import torch
from torch import nn
from fastai.vision.all import Learner, norm_bias_params
from efflearn.models.archs import ARCHS
from efflearn.models.efficientnet import create_efficientnet_model
from efflearn.models.split import efficientnet_split, check_split

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

@pytest.mark.parametrize('name', list(ARCHS))
def test_every_table_field_matches_the_built_model(name):
    "timm's `test_model_default_cfgs`: each field of `ARCHS[name]` checked against what its builder makes"
    import importlib.util, dataclasses
    from torchvision.models import get_model_weights
    from torchvision.ops import SqueezeExcitation, StochasticDepth
    from efflearn.models.archs import get_arch, MIN_SIZE, _LITE_STATS
    from efflearn.models.builders import efficientnet_stages
    arch = ARCHS[name]
    checked = set()
    def check(field, ok, msg=''):
        checked.add(field)
        assert ok, f"ARCHS[{name!r}].{field}={getattr(arch, field)!r} {msg}"
    model = arch.builder()
    check('name', get_arch(name) is arch and get_arch(arch.builder) is arch)
    check('builder_path', type(model).__name__ == 'EfficientNet' and arch.builder_path.endswith(f'.efficientnet_{name}'),
          f'builds a {type(model).__name__}')
    lite = not any(isinstance(m, SqueezeExcitation) for m in model.modules())
    if arch.weights is None: check('weights_path', arch.builder_path.startswith('efflearn.'), 'but torchvision builds it')
    else:
        check('weights_path', get_model_weights(arch.builder) is arch.weights, f'is not torchvision\'s {get_model_weights(arch.builder).__name__}')
        tfm = arch.weights.DEFAULT.transforms()
        check('eval_size', tfm.crop_size[0] == arch.eval_size, f'but torchvision evaluates its weights at {tfm.crop_size}')
        check('stats', list(tfm.mean) == list(arch.stats[0]) and list(tfm.std) == list(arch.stats[1]), f'but the weights expect {tfm.mean}, {tfm.std}')
    if arch.weights_package is None: check('weights_package', True)
    else: check('weights_package', importlib.util.find_spec(arch.weights_package.replace('-', '_')) is not None, 'is not installed')
    if lite: check('stats', arch.stats == _LITE_STATS, "is not Lite's (x-127)/128")
    check('train_size', MIN_SIZE <= arch.train_size <= arch.eval_size)
    check('eval_size', arch.eval_size >= arch.train_size)
    check('dropout', model.classifier[0].p == arch.dropout, f'but the classifier drops {model.classifier[0].p}')
    check('bn_eps', {m.eps for m in model.modules() if isinstance(m, nn.BatchNorm2d)} == {arch.bn_eps})
    if arch.width is None: check('width', arch.depth is None and name.startswith('v2_'), 'only V2 has no compound scaling')
    else:
        want = efficientnet_stages(arch.width, arch.depth, lite=lite)
        check('width', [s[-1].block[-1][0].out_channels for s in model.features[1:-1]] == [c.out_channels for c in want])
    if arch.depth is None: check('depth', True)
    else: check('depth', [len(s) for s in model.features[1:-1]] == [c.num_layers for c in want])
    sd = max(m.p for m in model.modules() if isinstance(m, StochasticDepth))
    n = sum(isinstance(m, StochasticDepth) for m in model.modules())
    check('stochastic_depth_prob', arch.stochastic_depth_prob*(n-1)/n - 1e-9 <= sd < arch.stochastic_depth_prob)
    model.eval()
    with torch.no_grad(): side = model.features(torch.randn(1, 3, 2*arch.reduction, 2*arch.reduction)).shape[-1]
    check('reduction', side == 2, f'but a {2*arch.reduction}px image gives a {side}px feature map')
    if arch.weights is None: check('stats', True)
    assert checked == {f.name for f in dataclasses.fields(arch)}, f"fields not checked: {sorted({f.name for f in dataclasses.fields(arch)} - checked)}"
