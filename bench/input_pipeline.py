"""Input pipelines at 224 px: images/s a folder of JPEGs delivers to the device (decode + augment), against what B0 consumes.

Builds (once, in efflearn's cache) an image folder of N JPEGs: random crops of scikit-image's colour photos rescaled to
a short side of 300-500 px (ImageNet-like sizes), quality 90, 10 classes. Then measures the images/s each pipeline
delivers to the device, batches moved there and augmented, with `torch.cuda.synchronize()` before every clock read on
CUDA and the first batches left out (warm-up, plus one batch per worker: the workers' first batches arrive together):

1. fastai, as efflearn uses it: `check_image_folder` + `folder_dataloaders(size=224)` (PIL decode and
   RandomResizedCrop in the workers, `aug_transforms()` on the device), for each worker count in --workers;
2. torchvision: the workers read the file bytes; `decode_jpeg` decodes them in the workers (CPU) or, on CUDA, also in
   batches on the GPU (nvjpeg); random-resized-crop + flip on the device, then the same `aug_transforms()`;
3. in memory: the training images decoded once to 256x256 uint8 (short side 256, centre crop) in one tensor on the
   device; each batch is a random 224 crop + flip gathered from it, then the same `aug_transforms()`.
   The one-time decode and the memory it takes are reported.

"What the model consumes" is the train-step img/s of EfficientNet-B0 at 224 on the same device with the data already
there (CUDA: bf16 autocast, or fp16 + GradScaler without bf16, channels_last, fused AdamW; CPU: fp32). Each pipeline
is printed as a multiple of it, "keeps up" at 1x or more. Pipeline and model are measured apart: in a real fit they
share the main process (and, on a CPU, the cores), so a ratio near 1 is not enough. Also prints decode-only img/s
(PIL, torchvision on the CPU, nvjpeg on CUDA). Prints markdown tables and writes JSON with --json.

    OMP_NUM_THREADS=1 python bench/input_pipeline.py [--json out.json]
    python bench/input_pipeline.py --device cuda --n-images 20000 --bs 256 --workers 0,4,8,16 --batches 20 --steps 20 --json out.json
"""
import argparse, io, json, math, os, platform, random, time, warnings
warnings.filterwarnings('ignore', category=FutureWarning)  # torch's `jit.script` deprecation, from a dependency
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
import numpy as np
import PIL
from PIL import Image
import torch, torchvision
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision.io import ImageReadMode, decode_jpeg, read_file
from fastai.vision.all import Path, Pipeline, TensorImage, aug_transforms, get_image_files, parent_label
from efflearn.data.datasets import efflearn_cache
from efflearn.data.folder import check_image_folder, folder_dataloaders
from efflearn.models.efficientnet import create_efficientnet_model
from efflearn.test_utils import sync

PHOTOS = ('astronaut', 'coffee', 'chelsea', 'rocket', 'hubble_deep_field', 'immunohistochemistry', 'retina')
N_CLASSES = 10
MIN_SCALE, RATIO = 0.35, (3/4, 4/3)  # `folder_dataloaders`' RandomResizedCrop(min_scale=0.35) and fastai's ratios


# ---------------------------------------------------------------------------------------------------------- the data
@lru_cache(None)
def _photos()->list:
    "scikit-image's colour photos that ship with it (RGB uint8 arrays); cached once per process"
    import skimage.data
    out = []
    for name in PHOTOS:
        try: out.append(np.ascontiguousarray(getattr(skimage.data, name)()[..., :3]))
        except Exception: pass  # some versions fetch some images with pooch: do without them
    if not out: raise RuntimeError(f"none of scikit-image's photos {PHOTOS} could be loaded")
    return out

def _write_jpeg(job):
    "One photo-like JPEG: a random crop of a sample photo (random aspect ratio), short side rescaled to 300-500 px"
    i,dest,seed = job
    rng = np.random.default_rng([seed, i])
    photos = _photos()
    src = photos[rng.integers(len(photos))]
    h,w = src.shape[:2]
    area,ratio = rng.uniform(0.2, 1)*h*w,math.exp(rng.uniform(math.log(3/4), math.log(3/2)))  # ratio: width/height
    ch,cw = min(h, round(math.sqrt(area/ratio))),min(w, round(math.sqrt(area*ratio)))
    top,left = rng.integers(h-ch+1),rng.integers(w-cw+1)
    img = Image.fromarray(src[top:top+ch, left:left+cw])
    if rng.random() < 0.5: img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    scale = int(rng.integers(300, 501))/min(ch, cw)
    img = img.resize((round(cw*scale), round(ch*scale)), Image.Resampling.BICUBIC)
    dest.parent.mkdir(parents=True, exist_ok=True)
    img.save(dest, quality=90)

def split(i:int)->str:
    "Image `i`'s folder: every tenth round of the classes goes to valid/, so both splits are balanced"
    return 'valid' if (i//N_CLASSES) % 10 == 0 else 'train'

def jpeg_folder(n_images:int, seed:int=42)->Path:
    "`efflearn_cache('jpeg_bench_<n>')/{train,valid}/<class>/*.jpg`, written once (a tenth of each class in valid/)"
    path = efflearn_cache(f'jpeg_bench_{n_images}')
    done,stamp = path/'.complete',f'{n_images} {seed} {N_CLASSES}'
    if done.exists() and done.read_text() == stamp: return path
    jobs = [(i, path/split(i)/f'c{i % N_CLASSES}'/f'{i:06d}.jpg', seed) for i in range(n_images)]
    t = time.perf_counter()
    with ProcessPoolExecutor(os.cpu_count()) as ex: list(ex.map(_write_jpeg, jobs, chunksize=64))
    done.write_text(stamp)
    print(f"wrote {n_images} JPEGs to {path} in {time.perf_counter()-t:.0f} s", flush=True)
    return path


# ---------------------------------------------------------------------------------------------------------- helpers

def time_batches(batches, n_warmup:int, n_timed:int, device)->float:
    "Images/s of `n_timed` batches `(x, y)` of `batches`, after leaving out the first `n_warmup`"
    it = iter(batches)
    try:
        for _ in range(n_warmup): next(it)
        sync(device)
        start,n = time.perf_counter(),0
        for _ in range(n_timed): n += len(next(it)[0])
        sync(device)
        return n/(time.perf_counter()-start)
    finally:
        if hasattr(it, 'close'): it.close()  # stops the DataLoader's workers now, not when garbage-collected

def batch_augment():
    "The batch transforms `folder_dataloaders` puts on the device, for the pipelines that are not fastai's own"
    return Pipeline(aug_transforms(), split_idx=0)  # split_idx=0: the training set's random transforms

def rrc_box(h:int, w:int, rng:random.Random)->tuple:
    "(top, left, height, width) of a RandomResizedCrop box as fastai draws it; centre square when none fits in 10 tries"
    for _ in range(10):
        area = rng.uniform(MIN_SCALE, 1)*h*w
        ratio = math.exp(rng.uniform(math.log(RATIO[0]), math.log(RATIO[1])))
        ch,cw = round(math.sqrt(area/ratio)),round(math.sqrt(area*ratio))
        if ch <= h and cw <= w: return rng.randint(0, h-ch),rng.randint(0, w-cw),ch,cw
    s = min(h, w)
    return (h-s)//2,(w-s)//2,s,s

def resize_crop(img, box, size:int):
    "The `box` of a uint8 CHW image resized to `size`x`size`, float 0-255 (antialiased like PIL's resize)"
    top,left,h,w = box
    crop = img[None, :, top:top+h, left:left+w].float()
    return F.interpolate(crop, size=(size, size), mode='bilinear', antialias=True, align_corners=False)[0]

def random_flip(x):
    "Mirror a random half of the batch in one op (`aug_transforms` flips too; this keeps the pipeline complete without it)"
    flip = torch.rand(len(x), device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


# ------------------------------------------------------------------------------------------- pipeline 1: fastai
def fastai_batches(folder, args, device, workers:int):
    "efflearn's training loader: yields (x, y) on `device`, RandomResizedCrop in the workers, `aug_transforms` applied"
    dls = folder_dataloaders(folder, size=args.size, bs=args.bs, num_workers=workers, device=device)
    return dls.train


# -------------------------------------------------------------------------------------- pipeline 2: torchvision
class JpegFiles(Dataset):
    "(file bytes, label), or with `decode` (decoding in the workers) the RGB uint8 CHW image instead of the bytes"
    def __init__(self, files, labels, decode:bool): self.files,self.labels,self.decode = files,labels,decode
    def __len__(self): return len(self.files)
    def __getitem__(self, i):
        data = read_file(str(self.files[i]))
        return (decode_jpeg(data, mode=ImageReadMode.RGB) if self.decode else data),self.labels[i]

def collate_packed(items):
    "Images (or byte strings) of different sizes as one flat uint8 tensor and their shapes, and the labels as a tensor"
    # one tensor: one shared-memory transfer from a worker and one copy to the GPU, not one per image. It is also a new
    # tensor: `read_file`'s own (torchvision 0.29) is file-backed and hung the main process when a worker returned it
    xs,ys = zip(*items)
    return torch.cat([x.reshape(-1) for x in xs]),[tuple(x.shape) for x in xs],torch.tensor(ys)

def unpack(flat, shapes)->list:
    "The tensors `collate_packed` put in `flat`, as views of it (on whatever device it is now)"
    return [t.view(s) for t,s in zip(flat.split([math.prod(s) for s in shapes]), shapes)]

def byte_loader(files, labels, bs:int, device, workers:int, decode:bool, train:bool=True):
    return DataLoader(JpegFiles(files, labels, decode), batch_size=bs, shuffle=train, drop_last=train,
                      num_workers=workers, collate_fn=collate_packed, pin_memory=device.type == 'cuda')

def torchvision_batches(files, labels, args, device, workers:int, nvjpeg:bool):
    "Yields (x, y) on `device`: decoded by nvjpeg in batches or in the workers, cropped, flipped and augmented on `device`"
    rng,augment = random.Random(args.seed),batch_augment()
    for flat,shapes,y in byte_loader(files, labels, args.bs, device, workers, decode=not nvjpeg):
        # nvjpeg: one batched call, output already on the GPU. Reported (pytorch/vision PR #9606) to decode on a stream
        # that does not wait for ours, so it may overwrite memory freed while our kernels still read it: wrong pixels,
        # same timings; a training loop would sync first. Else: CHW uint8 images, moved to the device in one copy
        imgs = (decode_jpeg(unpack(flat, shapes), mode=ImageReadMode.RGB, device=device) if nvjpeg
                else unpack(flat.to(device, non_blocking=True), shapes))
        x = torch.stack([resize_crop(img, rrc_box(*img.shape[1:], rng), args.size) for img in imgs])
        yield augment(TensorImage(random_flip(x).div_(255))),y.to(device, non_blocking=True)


# ---------------------------------------------------------------------------------------- pipeline 3: in memory
def decode_all(files, size:int, device, workers:int, bs:int):
    "Every file decoded once, centre square resized to `size`, in one (n, size, size, 3) uint8 tensor on `device`"
    # NHWC: a batch gathered from it, permuted to NCHW, is channels_last, the layout the model runs in on CUDA
    store = torch.empty(len(files), size, size, 3, dtype=torch.uint8, device=device)
    cuda,i = device.type == 'cuda',0
    for flat,shapes,_ in byte_loader(files, [0]*len(files), bs, device, workers, decode=not cuda, train=False):
        if cuda: torch.cuda.current_stream(device).synchronize()  # these pixels are kept: see `torchvision_batches`
        imgs = decode_jpeg(unpack(flat, shapes), mode=ImageReadMode.RGB, device=device) if cuda else unpack(flat, shapes)
        for img in imgs:
            h,w = img.shape[1:]
            s = min(h, w)
            out = resize_crop(img, ((h-s)//2, (w-s)//2, s, s), size)
            store[i] = out.round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0)
            i += 1
    return store

def memory_batches(store, labels, args):
    "Yields (x, y) forever: random `size` crops + flips of random images of `store`, in one gather, then `aug_transforms`"
    device,augment = store.device,batch_augment()
    n,s = store.shape[:2]
    ar = torch.arange(args.size, device=device)
    while True:
        for idx in torch.randperm(n, device=device).split(args.bs):
            b = len(idx)
            if b < args.bs: continue  # drop_last, as the other loaders
            top = torch.randint(0, s-args.size+1, (b, 1, 1), device=device)
            left = torch.randint(0, s-args.size+1, (b, 1, 1), device=device)
            flip = torch.rand(b, 1, 1, device=device) < 0.5
            rows = top + ar.view(1, -1, 1)
            cols = left + torch.where(flip, ar.flip(0).view(1, 1, -1), ar.view(1, 1, -1))  # flipped: right to left
            x = store[idx.view(-1, 1, 1), rows, cols].permute(0, 3, 1, 2)  # (b, 3, size, size), channels_last
            yield augment(TensorImage(x.float().div_(255))),labels[idx]


# ---------------------------------------------------------------------------------------------- decode only
def decode_rates(files, device, bs:int)->list:
    "Decode-only img/s of each decoder, from bytes already in memory (CPU ones: one image at a time, one process)"
    blobs = [Path(f).read_bytes() for f in files]
    tensors = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
    def timed(fn):
        fn(); sync(device)  # warm-up: library set-up, nvjpeg's handles and buffers
        start = time.perf_counter(); fn(); sync(device)
        return len(blobs)/(time.perf_counter()-start)
    rows = [('PIL (`Image.open(...).convert("RGB")`)', timed(lambda: [Image.open(io.BytesIO(b)).convert('RGB') for b in blobs])),
            ('torchvision `decode_jpeg`, CPU', timed(lambda: [decode_jpeg(t, mode=ImageReadMode.RGB) for t in tensors]))]
    if device.type == 'cuda':
        nv = lambda: [decode_jpeg(tensors[i:i+bs], mode=ImageReadMode.RGB, device=device) for i in range(0, len(tensors), bs)]
        rows.append((f'torchvision `decode_jpeg`, nvjpeg (batches of {bs})', timed(nv)))
    return [dict(decoder=name, images=len(blobs), img_per_s=r, ms_per_img=1000/r) for name,r in rows]


# ---------------------------------------------------------------------------------------------- the model
def model_rate(n_classes:int, args, device)->tuple:
    "Train-step img/s of B0 at `size` on data already on `device`, and the precision it ran in"
    cuda = device.type == 'cuda'
    model = create_efficientnet_model('b0', n_classes, pretrained=False).to(device)
    amp = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cuda else None
    x = torch.randn(args.bs, 3, args.size, args.size, device=device)
    if cuda: model,x = model.to(memory_format=torch.channels_last),x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(n_classes, (args.bs,), device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True if cuda else None)
    scaler = torch.amp.GradScaler(device.type, enabled=amp is torch.float16)  # fp16 gradients underflow without it
    def step():
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    for _ in range(args.warmup): step()  # cuDNN autotuning, allocator growth
    sync(device)
    start = time.perf_counter()
    for _ in range(args.steps): step()
    sync(device)
    return args.steps*args.bs/(time.perf_counter()-start),{None: 'fp32', torch.bfloat16: 'bf16', torch.float16: 'fp16'}[amp]


# ---------------------------------------------------------------------------------------------- main
def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--n-images', type=int, default=1000, help="JPEGs in the folder (a tenth in valid/)")
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--store-size', type=int, default=256, help="side of the in-memory images the crops come from")
    p.add_argument('--bs', type=int, default=32)
    p.add_argument('--workers', default=None, help="comma-separated DataLoader worker counts (default: 0,2 on the CPU, 0,4,8,16 on CUDA)")
    p.add_argument('--batches', type=int, default=20, help="timed batches per pipeline")
    p.add_argument('--warmup', type=int, default=2, help="batches (and model steps) left out first; pipelines also leave out one per worker")
    p.add_argument('--steps', type=int, default=3, help="timed model train steps")
    p.add_argument('--decode-images', type=int, default=100, help="images in the decode-only measurement")
    p.add_argument('--device', default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument('--seed', type=int, default=42)
    p.add_argument('--json', default=None)
    args = p.parse_args()
    if args.device is None: args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        p.error(f"--device {args.device}: torch sees no CUDA GPU (torch.cuda.is_available() is False; torch "
                f"{torch.__version__}, built for CUDA {torch.version.cuda}); run it on a GPU machine or use --device cpu")
    if args.store_size < args.size: p.error(f"--store-size {args.store_size} is smaller than --size {args.size}")
    default_workers = '0,2' if args.device == 'cpu' else ','.join(str(w) for w in (0, 4, 8, 16) if w <= (os.cpu_count() or 1))
    args.workers = [int(w) for w in (args.workers or default_workers).split(',')]
    # each pipeline reads one epoch at most (workers restarting would be timed): it must hold warm-up and timed batches
    n_train,need = sum(split(i) == 'train' for i in range(args.n_images)),(args.warmup + max(args.workers) + args.batches)*args.bs
    if n_train < need:
        p.error(f"--n-images {args.n_images} gives {n_train} training images, too few for {args.warmup}+{max(args.workers)} "
                f"warm-up and {args.batches} timed batches of {args.bs}: give --n-images {math.ceil(need/0.9)} or more, "
                "or lower --batches, --bs or --workers")
    return args

def pipeline_rows(folder, files, labels, args, device)->tuple:
    "img/s of every pipeline and worker count, and the in-memory store's one-time cost"
    rows = []
    def add(pipeline, decode, workers, batches):
        rate = time_batches(batches, args.warmup + (workers or 0), args.batches, device)
        rows.append(dict(pipeline=pipeline, decode=decode, workers=workers, img_per_s=rate))
        print(f"  {pipeline}, {decode}{'' if workers is None else f', workers {workers}'}: {rate:.1f} img/s", flush=True)
    for w in args.workers:
        add('fastai `folder_dataloaders`', 'PIL, in the workers', w, fastai_batches(folder, args, device, w))
    for w in args.workers:
        add('torchvision', '`decode_jpeg` CPU, in the workers', w, torchvision_batches(files, labels, args, device, w, nvjpeg=False))
    if device.type == 'cuda':
        for w in args.workers:
            add('torchvision', '`decode_jpeg` nvjpeg, batched', w, torchvision_batches(files, labels, args, device, w, nvjpeg=True))
    start = time.perf_counter()
    store = decode_all(files, args.store_size, device, max(args.workers), args.bs)
    sync(device)
    memory = dict(decode_s=time.perf_counter()-start, bytes=store.numel()*store.element_size(), images=len(store))
    add('in-memory uint8 tensor', f"once ({memory['decode_s']:.1f} s), {memory['bytes']/2**20:.0f} MiB", None,
        memory_batches(store, torch.tensor(labels, device=device), args))
    del store
    return rows,memory

def device_name(device)->str:
    if device.type == 'cuda': return torch.cuda.get_device_name(device)
    return f"CPU, {torch.get_num_threads()} threads, {os.cpu_count()} cores"

def report(args, device, n_train, mean_hw, model, precision, rows, memory, decodes):
    print(f"\nInput pipelines at {args.size} px on {device} ({device_name(device)}), bs {args.bs}, {n_train} training "
          f"JPEGs of {mean_hw[0]:.0f}x{mean_hw[1]:.0f} px on average; torch {torch.__version__}, torchvision "
          f"{torchvision.__version__}, Pillow {PIL.__version__}\n")
    print(f"What the model consumes: B0 train step at {args.size} px ({precision}), data already on the device: {model:.1f} img/s\n")
    print("| pipeline | decode | workers | img/s delivered | x model | verdict |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['pipeline']} | {r['decode']} | {'-' if r['workers'] is None else r['workers']} | {r['img_per_s']:.1f} "
              f"| {r['x_model']:.2f}x | {r['verdict']} |")
    print(f"\nIn-memory store: {memory['images']} images of {args.store_size}x{args.store_size} decoded in {memory['decode_s']:.1f} s "
          f"({1000*memory['decode_s']/memory['images']:.1f} ms/image), {memory['bytes']/2**20:.0f} MiB on {device} "
          f"({memory['bytes']/memory['images']/1024:.0f} KiB/image: ImageNet's 1.28M would take {memory['bytes']/memory['images']*1.28e6/2**30:.0f} GiB)")
    print(f"\nDecode only ({decodes[0]['images']} images, bytes already in memory):\n\n| decoder | img/s | ms/image |\n|---|---|---|")
    for d in decodes: print(f"| {d['decoder']} | {d['img_per_s']:.0f} | {d['ms_per_img']:.2f} |")
    print()
    print(nvjpeg_verdict(rows, device))
    best = max(rows, key=lambda r: r['img_per_s'])
    how = best['decode'] if best['workers'] is None else f"{best['decode']}, workers {best['workers']}"
    print(f"Fastest: {best['pipeline']} ({how}), {best['x_model']:.2f}x the model: {best['verdict']}.")

def nvjpeg_verdict(rows, device)->str:
    "Whether decoding on the GPU beats decoding in the workers, best worker count against best"
    best = lambda decode: max((r for r in rows if r['pipeline'] == 'torchvision' and decode in r['decode']), key=lambda r: r['img_per_s'])
    cpu = best('CPU')
    if device.type != 'cuda': return f"nvjpeg: only on CUDA; torchvision with CPU decoding delivers {cpu['img_per_s']:.1f} img/s at best (workers {cpu['workers']})."
    nv = best('nvjpeg')
    pays = 'pays' if nv['img_per_s'] > cpu['img_per_s'] else 'does not pay'
    return (f"nvjpeg {pays}: {nv['img_per_s']:.1f} img/s (workers {nv['workers']}) against {cpu['img_per_s']:.1f} decoding in "
            f"the workers (workers {cpu['workers']}), {nv['img_per_s']/cpu['img_per_s']:.2f}x.")

def main():
    args = parse_args()
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    folder = check_image_folder(jpeg_folder(args.n_images, args.seed))
    files = get_image_files(folder.train_path)
    labels = [folder.classes.index(parent_label(f)) for f in files]
    sample = files[:args.decode_images]
    sizes = [Image.open(f).size for f in sample]  # (w, h): header only
    mean_hw = (np.mean([h for _,h in sizes]), np.mean([w for w,_ in sizes]))
    print(f"{len(files)} training JPEGs in {folder.path}; measuring on {device}", flush=True)
    model,precision = model_rate(len(folder.classes), args, device)
    print(f"  B0 train step ({precision}): {model:.1f} img/s", flush=True)
    rows,memory = pipeline_rows(folder, files, labels, args, device)
    for r in rows: r.update(x_model=r['img_per_s']/model, verdict='keeps up' if r['img_per_s'] >= model else 'bottleneck')
    decodes = decode_rates(sample, device, args.bs)
    report(args, device, len(files), mean_hw, model, precision, rows, memory, decodes)
    if args.json:
        out = dict(args=vars(args), device=str(device), device_name=device_name(device),
                   torch=torch.__version__, torchvision=torchvision.__version__, pillow=PIL.__version__, python=platform.python_version(),
                   n_train=len(files), mean_hw=mean_hw, model=dict(img_per_s=model, precision=precision),
                   pipelines=rows, in_memory=memory, decode=decodes)
        Path(args.json).write_text(json.dumps(out, indent=1, default=float))

if __name__ == '__main__': main()
