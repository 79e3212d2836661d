"Every bad input gets a clear error naming the value, file or parameter; offline downloads fail fast"
import socket, threading, time
import pytest
import torch
from torchvision.models import efficientnet_b0, efficientnet_b1, EfficientNet_B0_Weights
from efflearn.learner import efficientnet_learner
from efflearn.models.weights import PretrainedWeightsError, torchvision_cache_file

def test_unknown_arch(small_dls):
    with pytest.raises(ValueError, match=r"Unknown EfficientNet architecture 'b9': not an EfficientNet efflearn knows; did you mean b8, b7 or b6\? \(choices: b0, b1"):
        efficientnet_learner(small_dls, 'b9', pretrained=False)

def test_n_out_contradicts_data(small_dls):
    with pytest.raises(ValueError, match=r"n_out=7 contradicts the data: the DataLoaders have 10 classes"):
        efficientnet_learner(small_dls, 'b0', pretrained=False, n_out=7)

def test_missing_weights_file(small_dls, tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path/'nope.pth')):
        efficientnet_learner(small_dls, 'b0', pretrained=tmp_path/'nope.pth')

def test_weights_of_another_arch(small_dls, tmp_path):
    torch.save(efficientnet_b1().state_dict(), tmp_path/'b1.pth')
    with pytest.raises(PretrainedWeightsError) as e: efficientnet_learner(small_dls, 'b0', pretrained=tmp_path/'b1.pth')
    msg = str(e.value)
    assert str(tmp_path/'b1.pth') in msg and 'does not fit EfficientNet b0' in msg
    assert 'unexpected keys: 1.1.block.0.0.weight' in msg and 'another architecture' in msg

def test_shape_mismatch_and_missing_keys(small_dls, tmp_path):
    sd = efficientnet_b0().state_dict()
    sd['features.0.0.weight'] = torch.zeros(16, 3, 3, 3)
    del sd['features.8.1.running_var']
    torch.save(sd, tmp_path/'bad.pth')
    with pytest.raises(PretrainedWeightsError) as e: efficientnet_learner(small_dls, 'b0', pretrained=tmp_path/'bad.pth')
    msg = str(e.value)
    assert '1 missing keys: 8.1.running_var' in msg
    assert '1 shape mismatches (file vs model): 0.0.weight (16, 3, 3, 3) vs (32, 3, 3, 3)' in msg

def test_pickled_model_is_refused(small_dls, tmp_path):
    torch.save(efficientnet_b0(), tmp_path/'model.pth')
    with pytest.raises(PretrainedWeightsError, match='weights_only=True'):
        efficientnet_learner(small_dls, 'b0', pretrained=tmp_path/'model.pth')

def test_corrupt_file(small_dls, tmp_path):
    (tmp_path/'cut.safetensors').write_bytes(b'\x00'*10)
    with pytest.raises(PretrainedWeightsError, match='cut.safetensors: could not read weights'):
        efficientnet_learner(small_dls, 'b0', pretrained=tmp_path/'cut.safetensors')

def test_bad_pretrained_value(small_dls):
    with pytest.raises(TypeError, match='pretrained must be'): efficientnet_learner(small_dls, 'b0', pretrained=3)

def test_bad_options(small_dls):
    with pytest.raises(ValueError, match="FreezeBN\\(when='sometimes'\\)"):
        efficientnet_learner(small_dls, 'b0', pretrained=False, freeze_bn='sometimes')
    with pytest.raises(ValueError, match='needs a CUDA device'):
        efficientnet_learner(small_dls, 'b0', pretrained=False, mixed_precision='bf16')
    with pytest.raises(ValueError, match="head='big'"):
        efficientnet_learner(small_dls, 'b0', pretrained=False, head='big')

@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path/'torch'))
    return tmp_path/'torch'

def test_pretrained_true_offline_fails_fast(small_dls, empty_torch_home, monkeypatch):
    # all HTTPS goes to a closed port on this machine: the same result with or without a network
    monkeypatch.setenv('https_proxy', 'http://127.0.0.1:9')
    start = time.time()
    with pytest.raises(PretrainedWeightsError) as e: efficientnet_learner(small_dls, 'b0')
    assert time.time() - start < 10
    msg = str(e.value)
    assert 'EfficientNet_B0_Weights.IMAGENET1K_V1' in msg and "pretrained='path/to/weights.pth'" in msg
    assert str(empty_torch_home/'hub'/'checkpoints'/'efficientnet_b0_rwightman-7f5810bc.pth') in msg

def test_pretrained_true_never_hangs(small_dls, empty_torch_home, monkeypatch):
    # a server that accepts connections and never answers: the download gives up after `timeout` seconds
    server = socket.socket(); server.bind(('127.0.0.1', 0)); server.listen(8)
    monkeypatch.setenv('https_proxy', f'http://127.0.0.1:{server.getsockname()[1]}')
    try:
        start = time.time()
        with pytest.raises(PretrainedWeightsError, match='Could not download'):
            efficientnet_learner(small_dls, 'b0', timeout=1)
        assert time.time() - start < 10
    finally: server.close()

def test_pretrained_true_reads_torchvision_cache(small_dls, empty_torch_home):
    # a file where torchvision's cache expects it is used with no network at all
    src = efficientnet_b0()
    cached = torchvision_cache_file(EfficientNet_B0_Weights.DEFAULT)
    assert cached.is_relative_to(empty_torch_home)
    cached.parent.mkdir(parents=True)
    torch.save(src.state_dict(), cached)
    learn = efficientnet_learner(small_dls, 'b0')
    assert torch.equal(learn.model[0][3][0].block[1][0].weight, src.features[3][0].block[1][0].weight)
    assert learn.opt.frozen_idx == 9
