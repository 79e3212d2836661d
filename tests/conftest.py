import os, shutil
if os.environ.get('PYTEST_XDIST_WORKER'):  # `pytest -n 2`: one thread per worker and per process it starts; two workers
    os.environ['OMP_NUM_THREADS'] = '1'    # of two threads each on two cores spin-wait and run several times slower
import pytest
import torch
from fastai.vision.all import get_image_files
from efflearn.data.datasets import digits_folder
from efflearn.models.efficientnet import create_efficientnet_model
from efflearn.test_utils import folder_dls

torch.set_num_threads(1 if os.environ.get('PYTEST_XDIST_WORKER') else max(1, torch.get_num_threads()))

@pytest.fixture(scope='session')
def digits(tmp_path_factory):
    "All of scikit-learn's digits as an image folder (1,438 train / 359 valid)"
    return digits_folder(tmp_path_factory.mktemp('data')/'digits')

@pytest.fixture(scope='session')
def small_digits(digits, tmp_path_factory):
    "Every 8th digit image (180 train / 45 valid), same folder layout: seconds per epoch on a CPU"
    dest = tmp_path_factory.mktemp('data')/'small_digits'
    for f in get_image_files(digits)[::8]:
        out = dest/f.relative_to(digits)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, out)
    return dest

@pytest.fixture
def small_dls(small_digits): return folder_dls(small_digits)

@pytest.fixture(scope='session')
def pretrained_body(small_digits, tmp_path_factory):
    "A B0 state dict whose BatchNorm layers hold real running statistics of the digits (3 channels)"
    model = create_efficientnet_model('b0', n_out=10)
    dls = folder_dls(small_digits)
    model.train()
    with torch.no_grad():
        for xb,_ in dls.train: model(xb)
    path = tmp_path_factory.mktemp('weights')/'b0_digits.pth'
    torch.save(model.state_dict(), path)
    return path
