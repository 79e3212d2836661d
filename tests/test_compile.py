"CompileModel with real code generation (inductor), with EfficientNet-B0 through `fine_tune` + progressive resizing, and the path for torch without per-call recompile limits"
import pytest
import torch
from torch import nn
from fastai.vision.all import Callback, Learner, accuracy, load_learner, params, set_seed
from efflearn.callback.compile import CompileModel, graph_budget, is_compiled, _limit_hits, _global_limit
import efflearn.callback.compile as compile_mod
from efflearn.learner import efficientnet_learner
from efflearn.callback.resize import ProgressiveResize
from efflearn.test_utils import folder_dls, quiet


def tiny_learner(dls, **kwargs):
    set_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    return Learner(dls, model, metrics=accuracy, splitter=lambda m: [params(m[:3]), params(m[3:])], cbs=CompileModel(**kwargs))

def test_inductor_matches_eager_and_exports(small_dls, tmp_path):
    "Real C++ code from inductor: a training and an evaluation graph, eager's numbers, a plain exported model"
    torch._dynamo.reset()
    learn,hits = tiny_learner(small_dls),_limit_hits()
    learn.path = tmp_path
    with quiet(learn): learn.fit(1, 1e-2)
    cm = learn.compile_model
    assert [(c['size'], c['train']) for c in cm.compiles] == [((32, 32), True), ((32, 32), False)]
    assert cm.compile_times[32] > 0 and _limit_hits() == hits
    with quiet(learn): preds,_ = learn.get_preds()
    learn.model.eval()
    with torch.no_grad():
        eager = torch.cat([learn.model._call_impl(xb) for xb,_ in small_dls.valid]).softmax(-1)
    torch.testing.assert_close(preds, eager, atol=1e-5, rtol=1e-4)  # other kernels, other rounding
    assert cm.n_graphs == 2  # the 13-image last batch used the evaluation graph
    learn.export('tiny.pkl')
    loaded = load_learner(tmp_path/'tiny.pkl')
    assert not is_compiled(loaded.model) and not loaded.compile_model.enabled
    with quiet(loaded): torch.testing.assert_close(loaded.get_preds(dl=small_dls.valid)[0], preds, atol=1e-5, rtol=1e-4)

def test_b0_fine_tune_progressive(small_digits):
    "B0, `fine_tune` (frozen then unfrozen) with two sizes: each (size, mode, frozen or not) compiled once, nothing eager"
    torch._dynamo.reset()
    dls = folder_dls(small_digits, size=32)
    learn = efficientnet_learner(dls, 'b0', pretrained=False, cbs=CompileModel(backend='eager'))
    keys = list(learn.model.state_dict())
    hits = _limit_hits()
    # efflearn's fine_tune is one plan of 3 epochs: 40% at 32px (default `pcts`), 60% at 48, validating at 48. The frozen
    # epoch trains at 32; the first unfrozen epoch starts at 32 and moves to 48 within it, the last trains at 48. The
    # valid set is a batch of 32 and one of 13, which on the CPU is a graph of its own (the convolution backend depends
    # on the batch size, and dynamo guards it). Freezing changes `requires_grad`, so each phase has its own graphs.
    with quiet(learn): learn.fine_tune(2, 1e-3, freeze_epochs=1, cbs=ProgressiveResize((32, 48)))
    got = [(c['size'][0], c['train'], c['bs']) for c in learn.compile_model.compiles]
    frozen = [(32, True, 32), (48, False, 32), (48, False, 13)]
    unfrozen = [(32, True, 32), (48, True, 32), (48, False, 32), (48, False, 13)]
    assert got == frozen + unfrozen, learn.compile_model.summary()
    assert learn.compile_model.n_graphs <= graph_budget(2) and _limit_hits() == hits
    assert list(learn.model.state_dict()) == keys and is_compiled(learn.model)
    with quiet(learn): learn.tta(n=1)
    assert learn.compile_model.n_graphs == 7  # TTA at 48px used the evaluation graphs

def test_global_limit_path(small_dls, monkeypatch):
    "Without torch.compile(recompile_limit=...), the process-wide limit is raised for each fit and restored after"
    monkeypatch.setattr(compile_mod, '_PER_CALL', False)
    torch._dynamo.reset()
    before = _global_limit()
    learn = tiny_learner(small_dls, backend='eager', recompile_limit=before + 5)
    seen = []
    class Probe(Callback):
        def after_batch(self): seen.append(_global_limit())
    with quiet(learn): learn.fit(2, 1e-2, cbs=[ProgressiveResize((32, 48), epochs=[1]), Probe()])
    assert set(seen) == {before + 5} and _global_limit() == before
    assert learn.compile_model.n_graphs == 3

def test_the_private_torch_apis_compile_relies_on():
    "`nn.Module.compile` keeps the compiled call in `_compiled_call_impl` (no public accessor; `is_compiled`/`uncompile` read it),"
    " and dynamo counts graphs in `counters['stats']['unique_graphs']`: fail loudly, naming them, if torch changes either"
    from torch._dynamo.utils import counters
    m = nn.Linear(2, 2)
    assert getattr(m, '_compiled_call_impl', 'gone') is None, "torch renamed nn.Module._compiled_call_impl: update efflearn.callback.compile"
    m.compile(backend='eager')
    assert callable(m._compiled_call_impl), "nn.Module.compile no longer sets _compiled_call_impl: update efflearn.callback.compile"
    assert is_compiled(m)
    before = counters['stats']['unique_graphs']
    m(torch.randn(3, 2))
    assert counters['stats']['unique_graphs'] > before, "dynamo no longer counts graphs in counters['stats']['unique_graphs']"
