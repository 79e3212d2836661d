"""EMA decay, warmup and BatchNorm buffers for efflearn's `EMA`, measured on real data (scikit-learn's digits, B0 at 32px).

One training run per seed and setting carries all the EMA variants at once (they only read the weights, and
validate=False, so the run is the one without them); at the end each average is validated with `ema.averaged()`.
- scratch: B0 from random init on all ten digits, 5 epochs of 1cycle at 1e-2, bs 64 (110 steps)
- transfer: a body trained on digits 0-4 (8 epochs), then `fine_tune(3, freeze_epochs=1)` on digits 5-9 (bs 32, 88 steps)

    python bench/ema_choice.py [--seeds 2]
"""
import argparse, shutil, statistics, tempfile, time
from pathlib import Path
import torch
from torch.optim.swa_utils import AveragedModel, update_bn
from efflearn.all import *
from efflearn.callback.ema import EMA
from efflearn.test_utils import class_subset, folder_dls


def dls_for(path, seed, bs): return folder_dls(path, 32, bs, seed)

class PowerWarmupEMA(EMA):
    "timm ModelEmaV3's optional warmup instead of the (1+n)/(10+n) cap: decay = min(decay, 1-(1+n)**-2/3)"
    @torch.no_grad()
    def after_step(self):
        if self._live is not self.model:
            self._live,self.avg = self.model,AveragedModel(self.model, multi_avg_fn=self._lerp, use_buffers=self.average_buffers)
        self._decay = min(self.decay, 1-(1+self.n_steps)**(-2/3))
        self.avg.update_parameters(self.model)

VARIANTS = {
    'EMA() (default: 0.9998, warmup, buffers copied)': (EMA, {}),
    'EMA(warmup=False)': (EMA, dict(warmup=False)),
    'EMA(0.99, warmup=False)': (EMA, dict(decay=0.99, warmup=False)),
    'timm V3 power warmup instead': (PowerWarmupEMA, {}),
    'EMA(0.99)': (EMA, dict(decay=0.99)),
    'EMA(0.9)': (EMA, dict(decay=0.9)),
    'EMA(average_buffers=True)': (EMA, dict(average_buffers=True)),
}
BN = 'EMA(), then update_bn on the training set'

def run(learn, f, *args, **kwargs):
    emas = {name: type(f'EMA{i}', (cls,), {})(**kw) for i,(name,(cls,kw)) in enumerate(VARIANTS.items())}
    start = time.time()
    with learn.no_bar(), learn.no_logging(): f(*args, cbs=list(emas.values()), **kwargs)
    secs = time.time() - start
    res = {}
    with learn.no_bar(): res['live weights (no EMA)'] = learn.validate()[1]
    for name,e in emas.items():
        with learn.no_bar(), e.averaged(): res[name] = learn.validate()[1]
    e = next(iter(emas.values()))
    with e.averaged() as model: update_bn(learn.dls.train, model)
    with learn.no_bar(), e.averaged(): res[BN] = learn.validate()[1]
    return res, secs, e.n_steps

def main():
    p = argparse.ArgumentParser()
    p.add_argument('--seeds', type=int, default=2)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp())
    digits = digits_folder(tmp/'digits')
    source,target = class_subset(digits, tmp/'d04', range(5)),class_subset(digits, tmp/'d59', range(5, 10))
    learn = efficientnet_learner(dls_for(source, 0, 32), 'b0', pretrained=False, metrics=accuracy)
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(8, 1e-2)
    torch.save(learn.model[0].state_dict(), tmp/'body.pth')
    results = {}
    for setting in ('scratch', 'transfer'):
        for seed in range(args.seeds):
            if setting == 'scratch':
                learn = efficientnet_learner(dls_for(digits, seed, 64), 'b0', pretrained=False, metrics=accuracy)
                res,secs,n = run(learn, learn.fit_one_cycle, 5, 1e-2)
            else:
                learn = efficientnet_learner(dls_for(target, seed, 32), 'b0', pretrained=tmp/'body.pth', metrics=accuracy)
                res,secs,n = run(learn, learn.fine_tune, 3, base_lr=2e-3, freeze_epochs=1)
            print(setting, seed, f"{n} steps {secs:.0f}s", {k: round(v, 4) for k,v in res.items()}, flush=True)
            for k,v in res.items(): results.setdefault(k, {}).setdefault(setting, []).append(v)
    print(f"\n| weights validated | scratch | transfer |\n|---|---|---|")
    for name,r in results.items():
        cells = [f"{statistics.mean(a):.3f} ({min(a):.3f}-{max(a):.3f})" for a in (r['scratch'], r['transfer'])]
        print(f"| {name} | {' | '.join(cells)} |")

if __name__ == '__main__': main()
