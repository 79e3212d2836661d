"""Which default head: EfficientNet's own (pool, dropout, linear) or fastai's `create_head`? Measured on real data.

Two settings, several seeds each, same budget for both heads:
- transfer: a B0 body trained on digits 0-4 (8 epochs) is fine-tuned on digits 5-9, classes it never saw
  (fastai's `fine_tune(3, freeze_epochs=1)`);
- scratch: B0 from random init on all ten digits, 5 epochs of 1cycle at lr 1e-2.
Prints a markdown table of validation accuracy (mean, min, max), parameters in the head and seconds per run.

    python bench/head_choice.py [--seeds 3] [--size 32]
"""
import argparse, json, shutil, statistics, tempfile, time
from pathlib import Path
from efflearn.all import *
from efflearn.test_utils import class_subset, folder_dls


def dls_for(path, size, seed, bs=32): return folder_dls(path, size, bs, seed)

def quiet_fit(learn, f, *args, **kwargs):
    with learn.no_bar(), learn.no_logging(): f(*args, **kwargs)
    with learn.no_bar(): return learn.validate()[1]

def main():
    p = argparse.ArgumentParser()
    p.add_argument('--seeds', type=int, default=3)
    p.add_argument('--size', type=int, default=32)
    p.add_argument('--json', default=None, help="also write the results to this file")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp())
    digits = digits_folder(tmp/'digits')
    source,target = class_subset(digits, tmp/'d04', range(5)),class_subset(digits, tmp/'d59', range(5, 10))

    # the "pretrained" body: B0 trained from scratch on digits 0-4
    learn = efficientnet_learner(dls_for(source, args.size, 0), 'b0', pretrained=False, metrics=accuracy)
    src_acc = quiet_fit(learn, learn.fit_one_cycle, 8, 1e-2)
    torch.save(learn.model[0].state_dict(), tmp/'body_0to4.pth')
    print(f"source body: B0 on digits 0-4, validation accuracy {src_acc:.3f}", flush=True)

    rows = []
    for setting in ('transfer', 'scratch'):
        for head in ('efficientnet', 'fastai'):
            accs,times = [],[]
            for seed in range(args.seeds):
                if setting == 'transfer':
                    dls = dls_for(target, args.size, seed)
                    learn = efficientnet_learner(dls, 'b0', pretrained=tmp/'body_0to4.pth', head=head, metrics=accuracy)
                    start = time.time()
                    accs.append(quiet_fit(learn, learn.fine_tune, 3, base_lr=2e-3, freeze_epochs=1))
                else:
                    dls = dls_for(digits, args.size, seed, bs=64)
                    learn = efficientnet_learner(dls, 'b0', pretrained=False, head=head, metrics=accuracy)
                    start = time.time()
                    accs.append(quiet_fit(learn, learn.fit_one_cycle, 5, 1e-2))
                times.append(time.time() - start)
            rows.append(dict(setting=setting, head=head, mean=statistics.mean(accs), min=min(accs), max=max(accs),
                             head_params=sum(p.numel() for p in learn.model[1].parameters()), seconds=statistics.mean(times)))
            r = rows[-1]
            print(f"{setting:8} {head:12} acc {r['mean']:.4f} ({r['min']:.4f}-{r['max']:.4f}) {r['seconds']:.0f}s", flush=True)

    print(f"\n| setting | head | validation accuracy, mean of {args.seeds} seeds (min-max) | head parameters | s/run |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['setting']} | {r['head']} | {r['mean']:.4f} ({r['min']:.4f}-{r['max']:.4f}) | {r['head_params']:,} | {r['seconds']:.0f} |")
    if args.json: Path(args.json).write_text(json.dumps(rows, indent=2))

if __name__ == '__main__': main()
