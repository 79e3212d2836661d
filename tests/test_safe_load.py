"""Safe by default: a model goes out as safetensors + JSON and comes back without unpickling anything; a crafted pickle,
through every path efflearn loads a file by, creates no marker file, and the error names the file (and the flag that
would unpickle it). A fastai `learner.pkl` loads only when trusted, with a warning naming it."""
import json, pickle, re, tomllib, warnings
from pathlib import Path
import pytest
import torch
from fastai.data.block import CategoryBlock
from fastai.data.transforms import get_image_files
from fastai.vision.core import PILImageBW
from fastai.vision.data import ImageBlock
from efflearn.data.datasets import digits_folder
from efflearn.data.folder import check_image_folder, folder_dataloaders
from efflearn.inference import export_efficientnet, load_efficientnet, ModelFileError, EfficientNetLearner
from efflearn.learner import efficientnet_learner, add_normalize
from efflearn.models.weights import PretrainedWeightsError
from efflearn.test_utils import class_subset, digits_dls, quiet

ROOT = Path(__file__).parents[1]


class Payload:
    "Unpickling this creates `marker`: what a crafted model file would do, harmlessly"
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (Path.touch, (self.marker,))


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return class_subset(digits_folder(), tmp_path_factory.mktemp('safe')/'data', '012')


@pytest.fixture(scope='module')
def exported(data, tmp_path_factory):
    "An RGB B0 with fastai's head and ImageNet normalisation, exported: (learner, folder)"
    dls = folder_dataloaders(check_image_folder(data, n_workers=0), size=32, bs=16, num_workers=0)
    learn = efficientnet_learner(dls, 'b0', pretrained=False, path=tmp_path_factory.mktemp('run'))
    add_normalize(learn.dls, ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]))
    return learn,export_efficientnet(learn, 'model')


def preds(learn, files):
    with learn.no_bar(): return learn.get_preds(dl=learn.dls.test_dl(files))[0]


def test_round_trip(exported, data):
    learn,folder = exported
    assert sorted(p.name for p in folder.iterdir()) == ['model.json', 'model.safetensors']
    spec = json.loads((folder/'model.json').read_text())
    assert (spec['arch'], spec['n_out'], spec['n_in'], spec['head'], spec['vocab']) == ('b0', 3, 3, 'fastai', ['0', '1', '2'])
    assert [t['name'] for t in spec['item_tfms']] == ['RandomResizedCrop', 'ToTensor']  # the validation crop; no flips
    assert [t['name'] for t in spec['batch_tfms']] == ['IntToFloatTensor', 'Normalize']   # no lighting
    files = get_image_files(data/'valid')[:12]
    loaded = load_efficientnet(folder, device='cpu')
    assert isinstance(loaded, EfficientNetLearner) and loaded.dls.vocab == ['0', '1', '2']
    torch.testing.assert_close(preds(loaded, files), preds(learn, files), atol=1e-5, rtol=0)
    with quiet(loaded): assert loaded.predict(files[0])[0] in '012'


def test_round_trip_grayscale_efficientnet_head(tmp_path):
    "fastai's own `PILImageBW.create` becomes an ImageDecoder for one channel; EfficientNet's head is recognised"
    dls = digits_dls(blocks=(ImageBlock(PILImageBW), CategoryBlock))
    learn = efficientnet_learner(dls, 'b0', pretrained=False, head='efficientnet', path=tmp_path)
    folder = export_efficientnet(learn)
    spec = json.loads((folder/'model.json').read_text())
    assert (spec['n_in'], spec['head'], spec['image']['cls']) == (1, 'efficientnet', 'PILImageBW')
    files = dls.valid_ds.items[:8]
    torch.testing.assert_close(preds(load_efficientnet(folder, device='cpu'), files), preds(learn, files), atol=1e-5, rtol=0)


@pytest.fixture
def evil(tmp_path):
    "Crafted pickles, as a raw pickle and in torch.save's zip format, and the marker they would create"
    marker = tmp_path/'marker'
    raw,zipped = tmp_path/'raw.bin',tmp_path/'zipped.bin'
    raw.write_bytes(pickle.dumps(Payload(marker)))
    torch.save(Payload(marker), zipped)
    return raw.read_bytes(),zipped.read_bytes(),marker


def test_the_payload_does_run_when_unpickled(evil, tmp_path):
    "The control: without efflearn's refusals, loading it creates the marker"
    raw,zipped,marker = evil
    pickle.loads(raw); assert marker.exists(); marker.unlink()
    (tmp_path/'z.pth').write_bytes(zipped)
    torch.load(tmp_path/'z.pth', weights_only=False); assert marker.exists(); marker.unlink()


def run_cli(capsys, *args):
    from efflearn.cli import main
    try: code = main(list(map(str, args)))
    except SystemExit as e: code = e.code
    return code,capsys.readouterr().err.strip()


@pytest.mark.parametrize('fmt', ['raw', 'zipped'])
def test_crafted_pickle_never_runs(fmt, evil, exported, data, tmp_path, capsys):
    raw,zipped,marker = evil
    payload = raw if fmt == 'raw' else zipped
    img = get_image_files(data/'valid')[0]
    def refused(exc, call, *fragments):
        with pytest.raises(exc) as e: call()
        for f in fragments: assert f in str(e.value), (f, str(e.value))
        assert not marker.exists()

    # load_efficientnet: a .pkl, or a run folder holding only learner.pkl
    pkl = tmp_path/'learner.pkl'; pkl.write_bytes(payload)
    refused(ModelFileError, lambda: load_efficientnet(pkl), f"{pkl}: a pickled learner", 'trust_pickle=True')
    refused(ModelFileError, lambda: load_efficientnet(tmp_path), f"{pkl}: a pickled learner", 'trust_pickle=True')
    # efflearn predict, the same two ways: one line, exit 2, naming the file and the flag
    for model in (pkl, tmp_path):
        code,err = run_cli(capsys, 'predict', model, img, '--no-csv', '--device', 'cpu')
        assert code == 2 and len(err.splitlines()) == 1 and f"{pkl}: a pickled learner" in err and '--trust-pickle' in err, err
        assert not marker.exists()
    # the pickle in place of the exported files (an attacker who controls the JSON too gives the right hash)
    _,folder = exported
    swapped = tmp_path/'swapped'; swapped.mkdir()
    spec = json.loads((folder/'model.json').read_text())
    (swapped/'model.safetensors').write_bytes(payload)
    (swapped/'model.json').write_text(json.dumps(spec))
    refused(ModelFileError, lambda: load_efficientnet(swapped), f"{swapped/'model.safetensors'}: truncated or corrupt")
    import hashlib
    spec['weights'].update(bytes=len(payload), sha256=hashlib.sha256(payload).hexdigest())
    (swapped/'model.json').write_text(json.dumps(spec))
    refused(ModelFileError, lambda: load_efficientnet(swapped), f"{swapped/'model.safetensors'}: truncated or corrupt")
    (swapped/'model.json').write_bytes(payload)
    refused(ModelFileError, lambda: load_efficientnet(swapped), f"{swapped/'model.json'}: not JSON")
    # pretrained weights, from Python and from the command line (read with weights_only=True)
    pth = tmp_path/'weights.pth'; pth.write_bytes(payload)
    dls = folder_dataloaders(check_image_folder(data, verify=False), size=32, bs=16, num_workers=0)
    refused(PretrainedWeightsError, lambda: efficientnet_learner(dls, 'b0', pretrained=pth), f"{pth}: could not read weights", 'weights_only=True')
    code,err = run_cli(capsys, 'train', data, f'--pretrained={pth}', '--lr', '1e-3', '--out', tmp_path/'out', '--device', 'cpu')
    assert code == 2 and str(pth) in err and not marker.exists(), err
    # efflearn's checkpoints (`read_checkpoint`, as `load_checkpoint` and `--resume` read them)
    from efflearn.callback.checkpoint import read_checkpoint
    refused(Exception, lambda: read_checkpoint(pth), str(pth))
    # fastai's `learn.load` on an efflearn learner (torch >= 2.6 reads with weights_only=True)
    learn = efficientnet_learner(dls, 'b0', pretrained=False, path=tmp_path, model_dir='.')
    refused(Exception, lambda: learn.load('weights'))


def test_trusted_pickle_loads_with_a_warning(exported, data, capsys):
    learn,folder = exported
    pkl = Path(learn.path)/'learner.pkl'
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # fastai's own, on export
        learn.export(pkl)
    with pytest.warns(UserWarning, match=re.escape(f"{pkl}: unpickling a learner (trust_pickle=True)")):
        loaded = load_efficientnet(pkl, device='cpu', trust_pickle=True)
    files = get_image_files(data/'valid')[:4]
    torch.testing.assert_close(preds(loaded, files), preds(learn, files), atol=1e-5, rtol=0)
    code,_ = run_cli(capsys, 'predict', pkl, *files, '--no-csv', '--device', 'cpu', '--trust-pickle')
    assert code == 0


def test_damaged_or_mismatched_files_are_named(exported, tmp_path):
    _,folder = exported
    def copy(name):
        dest = tmp_path/name; dest.mkdir()
        for f in folder.iterdir(): (dest/f.name).write_bytes(f.read_bytes())
        return dest
    cut = copy('cut'); w = cut/'model.safetensors'; w.write_bytes(w.read_bytes()[:len(w.read_bytes())//2])
    with pytest.raises(ModelFileError, match=re.escape(f"{w}: truncated or corrupt")): load_efficientnet(cut)
    w.write_bytes(b'')
    with pytest.raises(ModelFileError, match=re.escape(f"{w}: truncated or corrupt")): load_efficientnet(cut)
    w.unlink()
    with pytest.raises(ModelFileError, match=re.escape(f"{w}: no such file")): load_efficientnet(cut)
    for field,value,fragment in (('n_out', 4, 'vocab has 3 classes, n_out is 4'), ('format', 'other', "not an efflearn model description"),
                                 ('head', 'custom', "head 'custom'"), ('item_tfms', [{'name': 'os.system', 'command': 'true'}],
                                 "item_tfms: transform 'os.system' is not one efflearn rebuilds")):
        d = copy(f'bad_{field}'); spec = json.loads((d/'model.json').read_text()); spec[field] = value
        (d/'model.json').write_text(json.dumps(spec))
        with pytest.raises(ModelFileError, match=re.escape(f"{d/'model.json'}: {fragment}")): load_efficientnet(d)
    with pytest.raises(ModelFileError, match='no model.json'): load_efficientnet(tmp_path/'bad_n_out'/'..')


def test_torch_floor_has_no_loader_cve():
    "CVE-2025-32434: torch.load(weights_only=True) could run code before torch 2.6"
    deps = tomllib.loads((ROOT/'pyproject.toml').read_text())['project']['dependencies']
    assert 'torch>=2.6' in deps, deps
    assert tuple(int(p) for p in torch.__version__.split('+')[0].split('.')[:2]) >= (2, 6)
