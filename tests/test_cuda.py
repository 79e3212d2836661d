"""Every CUDA path of efflearn, run once on the GPU and checked to have worked: bf16 (or fp16) autocast and
channels_last in effect, FusedAdam's NaN skip on the device, the sizes each ProgressiveResize stage trains at,
CompileModel's graphs, memory_dataloaders on the device, FreezeBN with SyncBatchNorm under a process group.
Skipped without CUDA; bench/gpu/run.sh runs it on the GPU machine. Small data: random uint8 images whose labels are
their brightness; each test takes seconds on an H100/H200."""
import math, socket, warnings
import pytest
import torch
import torch.distributed as dist
from torch import nn
from efflearn.all import (Callback, ChannelsLast, CompileModel, FreezeBN, FusedAdam, Learner, MixedPrecision, ProgressiveResize,
                          accuracy, efficientnet_learner, fast_path_settings, memory_dataloaders, set_seed)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

def toy(n, size=64, seed=0):
    "uint8 RGB images whose label (0-3) is their brightness: learnable in a few steps"
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    return (y[:, None, None, None]*60 + torch.randint(0, 40, (n, 3, size, size), generator=g)).to(torch.uint8), y

@pytest.fixture
def dls():
    (xt, yt), (xv, yv) = toy(256), toy(64, seed=1)
    return memory_dataloaders(xt, yt, xv, yv, vocab='abcd', size=64, bs=32, device='cuda')

def b0(dls, **kwargs):
    set_seed(0)
    return efficientnet_learner(dls, 'b0', pretrained=False, metrics=accuracy, **kwargs)

def fit(learn, *args, cbs=None, **kwargs):
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the LR guard's advice is for people
        learn.fit(*args, cbs=cbs, **kwargs)
    return learn

def state(model): return {k: v.detach().clone() for k, v in model.state_dict().items()}

class Watch(Callback):
    "Records, for every training batch, what reached the model: shape, device, and the conv layers' dtypes and layouts"
    order = 100  # after ProgressiveResize and the fast-path callbacks: what the model really gets
    def __init__(self): self.batches,self.convs = [],[]
    def before_fit(self):
        cl = torch.channels_last
        def hook(m, inp, out):
            if self.training: self.convs.append((out.dtype, out.is_contiguous(memory_format=cl), inp[0].is_contiguous(memory_format=cl)))
        self.handles = [m.register_forward_hook(hook) for m in self.learn.model.modules() if isinstance(m, nn.Conv2d)]
    def before_batch(self):
        if self.training: x = self.xb[0]; self.batches.append((tuple(x.shape[-2:]), x.device.type))
    def after_fit(self):
        for h in self.handles: h.remove()

def test_memory_dataloaders_on_the_device(dls):
    assert dls.device.type == 'cuda'
    assert dls.train_ds[0][0].is_cuda, "the images are held in device memory"
    xb, yb = dls.one_batch()
    assert xb.is_cuda and yb.is_cuda and xb.dtype == torch.float32 and xb.shape == (32, 3, 64, 64)

def test_mixed_precision_and_channels_last_in_effect(dls):
    amp_mode, channels_last = fast_path_settings('cuda')
    want = torch.bfloat16 if amp_mode == 'bf16' else torch.float16
    assert amp_mode == ('bf16' if torch.cuda.is_bf16_supported() else 'fp16') and channels_last
    learn,watch = b0(dls),Watch()
    fit(learn, 1, 1e-3, cbs=watch)
    assert watch.convs, "no convolution ran"
    dtypes = {d for d, _, _ in watch.convs}
    assert dtypes == {want}, f"convolutions ran in {dtypes}, not only {want}: autocast is not in effect"
    assert all(out_cl for _, out_cl, _ in watch.convs), "some convolution outputs are not channels_last"
    # the stem's input comes from the loader (NCHW); every later convolution's input is a channels_last activation
    assert sum(not in_cl for _, _, in_cl in watch.convs) <= len(watch.batches), "activations are not channels_last"
    convs = [m.weight for m in learn.model.modules() if isinstance(m, nn.Conv2d)]
    assert all(w.is_cuda and w.is_contiguous(memory_format=torch.channels_last) for w in convs), "weights are not channels_last"
    assert all(p.dtype == torch.float32 for p in learn.model.parameters()), "the weights stay fp32 under autocast"
    assert all(math.isfinite(float(l)) for l in learn.recorder.losses)

class NaNAt(Callback):
    "At training batch `at`: keep the model's weights, buffers and the optimizer's step counts, then feed NaN images"
    order = 50  # before NonFiniteGuard (100) in `after_loss`
    def __init__(self, at): self.at = at
    def before_batch(self):
        if self.training and self.iter == self.at:
            self.before = state(self.model)
            self.steps = [s['step'].clone() for s in self.opt.state.values() if isinstance(s.get('step'), torch.Tensor)]
            self.learn.xb = (torch.full_like(self.xb[0], float('nan')),)

def test_fused_adam_skips_a_nan_batch_on_the_device(dls):
    learn = b0(dls)
    assert learn.opt_func is FusedAdam
    nan = NaNAt(3)
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('always')
        with learn.no_bar(), learn.no_logging(): learn.fit(2, 1e-3, cbs=nan)
    guard = learn.non_finite_guard
    assert guard.on_device, "NonFiniteGuard did not hand the check to FusedAdam: the skip was not decided on the device"
    assert any('training stopped' in str(w.message) for w in ws), "no warning that training stopped"
    assert guard.report is not None and (guard.report['epoch'], guard.report['batch']) == (0, 3)
    assert len(learn.recorder.losses) == 3, "training stopped at the NaN batch"
    after = state(learn.model)
    changed = [k for k in after if not torch.equal(after[k], nan.before[k])]
    assert not changed, f"the NaN batch changed {changed[:5]}: the fused step (or BatchNorm) was not skipped"
    steps = [s['step'] for s in learn.opt.state.values() if isinstance(s.get('step'), torch.Tensor)]
    assert steps and all(torch.equal(a, b) for a, b in zip(steps, nan.steps)), "the optimizer counted the skipped step"
    assert learn.opt.found_inf is None, "the guard handed the flag back after the fit"

def test_progressive_resize_stages_on_the_device(dls):
    learn,watch = b0(dls),Watch()
    fit(learn, 2, 1e-3, cbs=[ProgressiveResize((32, 64), epochs=[1]), watch])
    n = len(dls.train)
    assert learn.recorder.sizes == [32]*n + [64]*n
    assert watch.batches == [((32, 32), 'cuda')]*n + [((64, 64), 'cuda')]*n, "the model did not get each stage's size on the device"

def test_compile_model_graphs(dls):
    "Inductor on CUDA, one graph per (size, train or eval): train at 32 and 64, validate at 64; bf16 and channels_last on"
    torch._dynamo.reset()
    set_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2), nn.BatchNorm2d(16), nn.ReLU(),
                          nn.Conv2d(16, 32, 3, stride=2), nn.BatchNorm2d(32), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 4))
    amp_mode,_ = fast_path_settings('cuda')
    learn = Learner(dls, model, metrics=accuracy, cbs=[CompileModel(), ChannelsLast(), MixedPrecision(amp_mode=amp_mode)])
    fit(learn, 2, 1e-2, cbs=ProgressiveResize((32, 64), epochs=[1]))
    cm = learn.compile_model
    got = sorted({(c['size'][0], c['train']) for c in cm.compiles})
    assert got == [(32, True), (64, False), (64, True)], cm.summary()
    assert cm.n_graphs == 3, f"expected 3 graphs, got {cm.n_graphs}: {cm.summary()}"
    assert cm.compile_times[32] > 0 and cm.compile_times[64] > 0
    losses = [float(l) for l in learn.recorder.losses]
    assert all(map(math.isfinite, losses)) and losses[-1] < losses[0], "the compiled model did not train"

@pytest.fixture(scope='module')
def process_group():
    "A 1-process NCCL group, as DDP with sync_bn makes one"
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
    dist.init_process_group('nccl', init_method=f'tcp://127.0.0.1:{port}', rank=0, world_size=1, device_id=torch.device('cuda', 0))
    yield
    dist.destroy_process_group()

def test_freeze_bn_with_sync_batchnorm(dls, process_group):
    "fastai's distrib_ctx(sync_bn=True) converts BatchNorm to SyncBatchNorm: FreezeBN('always') must still keep its statistics"
    learn = b0(dls, freeze_bn='never')
    learn.remove_cbs([cb for cb in learn.cbs if isinstance(cb, FreezeBN)])
    learn.model = nn.SyncBatchNorm.convert_sync_batchnorm(learn.model).cuda()
    sync_bns = [m for m in learn.model.modules() if isinstance(m, nn.SyncBatchNorm)]
    assert sync_bns, "convert_sync_batchnorm made no SyncBatchNorm"
    before = [m.running_mean.clone() for m in sync_bns]
    modes = []
    class Modes(Callback):
        def before_batch(self):
            if self.training: modes.append(sum(m.training for m in sync_bns))
    fit(learn, 1, 1e-3, cbs=[FreezeBN('always'), Modes()])
    moved = sum(not torch.equal(a, m.running_mean) for a, m in zip(before, sync_bns))
    assert moved == 0 and set(modes) == {0}, (
        f"FreezeBN('always') does not recognise SyncBatchNorm: {max(modes)} of {len(sync_bns)} SyncBatchNorm layers stayed "
        f"in training mode and {moved} changed their running statistics. FreezeBN checks fastai's bn_types "
        "(BatchNorm1d/2d/3d), and nn.SyncBatchNorm (what DDP with sync_bn=True, e.g. fastai's distrib_ctx, converts to) "
        "is not one of them, so pretrained statistics are not kept under DDP")
