"""A folder of every odd image kind, made with Pillow, through efflearn's one decode path: the check before training,
the DataLoaders (also in worker processes), and the command line. What fastai's `load_image` gets wrong is noted at
each test: a 16-bit ramp saturates, a transparent image shows its hidden colour, a bad file goes unnamed."""
import re, shutil, struct, warnings, zlib
from pathlib import Path
import numpy as np
import pytest
import torch
from PIL import Image
from efflearn.data.decode import decode_image, ImageDecodeError, MAX_PIXELS
from efflearn.data.folder import check_image_folder, folder_dataloaders, ImageFolderError, SEED_MAX


def png_of_size(path:Path, w:int, h:int):
    "A valid PNG header claiming w x h pixels, with a few bytes of pixels: Pillow counts the pixels before decoding any"
    chunk = lambda kind,data: struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff)
    path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 0, 0, 0, 0)) +
                     chunk(b'IDAT', zlib.compress(b'\0'*64)) + chunk(b'IEND', b''))

RAMP = np.linspace(0, 65535, 64*64).reshape(64, 64).astype(np.uint16)  # mean: half the range

def write_kind(kind:str, path:Path):
    "One image of `kind`, 64x64; each kind's pixels are uniform (but the ramp), so any crop shows the same colour"
    if kind == 'ramp16': Image.fromarray(RAMP).save(path)                                   # PNG mode I;16
    elif kind == 'rgba':                                                                     # invisible red
        a = np.zeros((64, 64, 4), np.uint8); a[..., 0] = 255; Image.fromarray(a, 'RGBA').save(path)
    elif kind == 'palette':                                                                  # red, the transparent colour
        p = Image.new('P', (64, 64), 0); p.putpalette([255, 0, 0, 0, 0, 255]); p.save(path, transparency=0)
    elif kind == 'cmyk': Image.new('CMYK', (64, 64), (0, 255, 255, 0)).save(path, quality=95)  # red, in print colours
    elif kind == 'la': Image.new('LA', (64, 64), (0, 0)).save(path)                          # black, fully transparent
    elif kind == 'gray': Image.new('L', (64, 64), 64).save(path)
    else: raise ValueError(kind)

KINDS = {'ramp16': '.png', 'rgba': '.png', 'palette': '.png', 'cmyk': '.jpg', 'la': '.png', 'gray': '.png'}
# the colour each kind must arrive with, in [0, 1] (the ramp: its mean)
EXPECTED = {'ramp16': 0.5, 'rgba': (1, 1, 1), 'palette': (1, 1, 1), 'cmyk': (1, 0, 0), 'la': (1, 1, 1), 'gray': (64/255,)*3}


def good_folder(root:Path, n:int=4)->Path:
    for kind,ext in KINDS.items():
        (root/kind).mkdir(parents=True)
        for i in range(n): write_kind(kind, root/kind/f'{i}{ext}')
    return root

def add_bad_images(root:Path)->dict:
    "Two truncated images, an empty file, a text file named .jpg, and a header over twice Pillow's pixel limit"
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    noise.save(root/'gray'/'cut_source.png'); data = (root/'gray'/'cut_source.png').read_bytes()
    (root/'gray'/'cut_source.png').unlink()
    (root/'rgba'/'cut1.png').write_bytes(data[:len(data)//2])
    noise.save(root/'cmyk'/'cut_source.jpg', quality=95); data = (root/'cmyk'/'cut_source.jpg').read_bytes()
    (root/'cmyk'/'cut_source.jpg').unlink()
    (root/'cmyk'/'cut2.jpg').write_bytes(data[:len(data)//2])
    (root/'la'/'zero.png').write_bytes(b'')
    (root/'palette'/'notes.jpg').write_text('not an image')
    png_of_size(root/'gray'/'huge.png', 20_000, 20_000)
    return {'cut1.png': 'truncated or corrupt', 'cut2.jpg': 'truncated or corrupt', 'zero.png': 'empty file (0 bytes)',
            'notes.jpg': 'not an image Pillow can read', 'huge.png': '400,000,000 pixels (20000x20000), more than twice max_pixels=89,478,485'}


@pytest.fixture(scope='module')
def odd(tmp_path_factory):
    "Every odd kind, plus every bad file: (folder, {bad file name: reason})"
    root = good_folder(tmp_path_factory.mktemp('odd')/'data')
    return root,add_bad_images(root)


def all_batches(dls):
    xs,ys = zip(*[b for dl in (dls.train.new(shuffle=False, drop_last=False), dls.valid) for b in dl])
    return torch.cat(xs),torch.cat(ys)


def test_each_kind_arrives_as_it_looks(tmp_path):
    "fastai's load_image: ramp mean 0.998, hidden red in rgba and palette; here each kind has the colour it shows"
    folder = check_image_folder(good_folder(tmp_path/'good'), n_workers=0)
    dls = folder_dataloaders(folder, size=32, bs=8, augment=False, seed=0, num_workers=0)
    x,y = all_batches(dls)
    assert len(y) == 6*4
    for kind,want in EXPECTED.items():
        xs = x[y == dls.vocab.o2i[kind]]
        assert len(xs), kind
        if kind == 'ramp16': assert abs(xs.mean().item() - 0.5) < 0.01, xs.mean()
        else: torch.testing.assert_close(xs.mean((0, 2, 3)), torch.tensor(want, dtype=xs.dtype), atol=0.03, rtol=0, msg=kind)


def test_unreadable_images_all_listed_at_once(odd):
    "Before: of two truncated images the error listed one. Now every bad file, each with why"
    root,bad = odd
    with pytest.raises(ImageFolderError) as e: check_image_folder(root, n_workers=0)
    msg = str(e.value)
    assert msg.startswith(f"{root}: {len(bad)} unreadable image(s): ") and "bad_images='skip'" in msg, msg
    for name,why in bad.items(): assert re.search(re.escape(name) + r' \(' + re.escape(why), msg), (name, msg)
    assert len(msg.splitlines()) == 1  # the command line prints it as its one line


def test_skip_names_each_and_has_a_cap(odd):
    root,bad = odd
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        folder = check_image_folder(root, bad_images='skip', max_skipped=0.25, n_workers=0)
    msgs = [str(o.message) for o in w if 'leaving out' in str(o.message)]
    assert len(msgs) == 1 and all(name in msgs[0] for name in bad), msgs
    assert sorted(f.name for f in folder.skipped) == sorted(bad)
    assert folder.n_images == 6*4 and not set(folder.files) & set(folder.skipped)
    dls = folder_dataloaders(folder, size=32, bs=8, augment=False, num_workers=0)
    assert len(dls.train_ds) + len(dls.valid_ds) == 6*4
    with pytest.raises(ImageFolderError, match=r'5 of 29 images are unreadable, more than max_skipped=0.1 of them'):
        check_image_folder(root, bad_images='skip', max_skipped=0.1, n_workers=0)
    with pytest.raises(ValueError, match="bad_images='ignore': use 'error' or 'skip'"): check_image_folder(root, bad_images='ignore')


def test_check_in_worker_processes(odd):
    "The check runs in processes too: the same list, and warnings (over the pixel limit) reach the parent"
    root,bad = odd
    with pytest.raises(ImageFolderError) as e: check_image_folder(root, n_workers=2)
    assert all(name in str(e.value) for name in bad)


def test_empty_class_folder_is_named(tmp_path):
    "Before: dropped without a word (the model had one class fewer than the folder)"
    root = good_folder(tmp_path/'data', n=1)
    (root/'owl').mkdir(); (root/'owl'/'notes.txt').write_text('no images yet')
    with pytest.raises(ImageFolderError, match=r"class folder\(s\) 'owl' have no images"): check_image_folder(root, verify=False)
    imagenet = tmp_path/'imagenet'
    good_folder(imagenet/'train', n=1); good_folder(imagenet/'valid', n=1); (imagenet/'valid'/'gray'/'0.png').unlink()
    with pytest.raises(ImageFolderError, match=re.escape(f"{imagenet/'valid'}: class folder(s) 'gray' have no images")):
        check_image_folder(imagenet, verify=False)


def test_pixel_limit(tmp_path):
    "A parameter, Pillow's two zones, the file and the count named; Pillow's own global left as it was"
    huge = tmp_path/'huge.png'; png_of_size(huge, 20_000, 20_000)
    with pytest.raises(ImageDecodeError, match=re.escape(f"{huge}: 400,000,000 pixels (20000x20000), more than twice max_pixels=89,478,485")):
        decode_image(huge)
    with pytest.raises(ImageDecodeError, match=re.escape(f"{huge}: truncated or corrupt")):  # the limit lifted: Pillow decodes, and finds no pixels
        decode_image(huge, max_pixels=500_000_000)
    with pytest.raises(ImageDecodeError, match='truncated or corrupt'): decode_image(huge, max_pixels=None)
    assert Image.MAX_IMAGE_PIXELS == MAX_PIXELS
    img = tmp_path/'img.png'; write_kind('gray', img)  # 4,096 pixels
    with pytest.warns(Image.DecompressionBombWarning, match=re.escape(f"{img}: 4,096 pixels (64x64), more than max_pixels=3,000")):
        decode_image(img, max_pixels=3000)
    with pytest.raises(ImageDecodeError, match=re.escape(f"{img}: 4,096 pixels (64x64), more than twice max_pixels=2,000")):
        decode_image(img, max_pixels=2000)
    root = good_folder(tmp_path/'data', n=1)  # the folder's limit reaches the DataLoaders' decoder
    with pytest.warns(Image.DecompressionBombWarning, match='more than max_pixels=3,000'):
        folder = check_image_folder(root, max_pixels=3000, n_workers=0)
        assert folder_dataloaders(folder, size=32, bs=2, num_workers=0).train_ds.tls[0].tfms.fs[-1].max_pixels == 3000


@pytest.mark.parametrize('num_workers', [0, 2])
def test_training_without_the_check_names_the_file(tmp_path, num_workers):
    "Before, with --no-verify: a traceback naming no file. The error names it, from worker processes too"
    root = tmp_path/'data'
    good_folder(root/'train', n=2); good_folder(root/'valid', n=1)
    cut = root/'train'/'gray'/'cut.png'
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(cut)
    cut.write_bytes(cut.read_bytes()[:2000])  # the header and part of the pixels: Pillow finds out only when decoding
    folder = check_image_folder(root, verify=False)
    dls = folder_dataloaders(folder, size=32, bs=13, augment=False, num_workers=num_workers)
    with pytest.raises(Exception, match=re.escape(f"{cut}: truncated or corrupt")):
        for _ in dls.train: pass


def test_seeds_outside_numpys_range():
    from efflearn.data.folder import check_seed
    assert check_seed(0) == 0 and check_seed(SEED_MAX) == 2**32 - 1
    for bad in (-1, 2**32, 1.5, True, '3'):
        with pytest.raises(ValueError, match=r"not a seed numpy accepts; use a whole number from 0 to 2\*\*32-1 \(4294967295\)"): check_seed(bad)


def run_cli(capsys, *args):
    from efflearn.cli import main
    try: code = main(list(map(str, args)))
    except SystemExit as e: code = e.code
    out,err = capsys.readouterr()
    return code,err.strip()


def test_cli_bad_images(odd, tmp_path, capsys):
    root,bad = odd
    code,err = run_cli(capsys, 'train', root, '--no-pretrained', '--lr', '1e-2', '--out', tmp_path/'out', '--device', 'cpu')
    assert code == 2 and len(err.splitlines()) == 1 and all(name in err for name in bad) and '--bad-images skip' in err, err
    code,err = run_cli(capsys, 'train', root, '--no-pretrained', '--lr', '1e-2', '--bad-images', 'skip', '--max-skipped', '0.1', '--out', tmp_path/'out')
    assert code == 2 and '--max-skipped 0.1 of them allows leaving out' in err, err
    code,err = run_cli(capsys, 'train', root, '--bad-images', 'ignore')
    assert code == 2 and "--bad-images ignore: invalid choice" in err, err
    for seed in ('-1', str(2**32)):
        code,err = run_cli(capsys, 'train', root, '--seed', seed)
        assert code == 2 and f"--seed {seed}: not a seed numpy accepts; use a whole number from 0 to 2**32-1 (4294967295)" in err, err
    from efflearn.cli import train, UsageError
    with pytest.raises(UsageError, match=r"--seed -1: not a seed numpy accepts"): train(root, seed=-1)


def test_cli_no_verify_names_the_file(tmp_path, capsys):
    "Before: `--no-verify` and a truncated image ended the run with a traceback naming no file"
    root = good_folder(tmp_path/'data', n=3)
    cut = root/'gray'/'cut.png'
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(cut)
    cut.write_bytes(cut.read_bytes()[:2000])
    from efflearn.cli import main
    args = ['train', root, '--no-verify', '--no-pretrained', '--lr', '1e-2', '--epochs', '1', '--sizes', '32', '--bs', '4',
            '--workers', '0', '--device', 'cpu', '--out', tmp_path/'out']
    try: code,msg = main(list(map(str, args))),capsys.readouterr().err
    except Exception as e: code,msg = None,str(e)
    assert code != 0 and f"{cut}: truncated or corrupt" in msg, (code, msg)
