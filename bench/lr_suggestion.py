"""Which `lr_find` suggestion to train at: from scratch (B0 on scikit-learn's digits), and after unfreezing a
pretrained body (Lite0 on Fashion-MNIST, the course's second `lr_find`).

`efflearn train` uses `valley` (fastai's default) to fine-tune pretrained weights from the frozen sweep and `minimum`
from scratch; after `unfreeze()`, `learn.lr_find()` suggests `edge` first. This measures why: prints the five
suggestions of one `lr_find` (fastai's four and `edge`), then the validation accuracy of a run at each (same seed,
same starting weights), and writes them to JSON.

- `--case scratch`: B0 from random weights on the digits, 32 px, `fit_one_cycle(--epochs)` at each suggestion.
- `--case unfrozen`: pretrained Lite0 (`efflearn[lite]`) on 10,000 / 2,000 Fashion-MNIST images at 32 px, as in
  the course's-recipe tutorial: the head trained (2 epochs on precomputed activations, 2 with flips), then
  `unfreeze()`, `lr_find()` (swept with `fine_tune`'s spread), and `fit_sgdr(2, 1, slice, cycle_mult=2)` at each
  suggestion, and at `--extra` head LRs (default 1e-3, `fine_tune`'s base LR) for comparison.

    python bench/lr_suggestion.py [--seed 42] [--epochs 5] [--out bench/lr_suggestion.json]
    OMP_NUM_THREADS=2 python bench/lr_suggestion.py --case unfrozen [--extra 1e-3] [--out out.json]
"""
import argparse, json, tempfile, time, warnings
warnings.filterwarnings('ignore', category=FutureWarning)
from efflearn.all import *  # fastai.vision.all (lr_find suggestions, Path) and efflearn (`edge` too)
from efflearn.data.folder import check_image_folder, folder_dataloaders

SUGGESTIONS = (valley, slide, minimum, steep, edge)  # fastai's four and efflearn's `edge`


def scratch_case(args):
    "(suggestions, a function training a fresh learner at one LR)"
    def make_learner():
        set_seed(args.seed)
        dls = folder_dataloaders(check_image_folder(digits_folder()), size=32, bs=64, augment=False, num_workers=0)
        return efficientnet_learner(dls, 'b0', pretrained=False, metrics=accuracy)
    with (learn := make_learner()).no_bar(): sugg = learn.lr_find(suggest_funcs=SUGGESTIONS, show_plot=False)
    def train(lr):
        learn = make_learner()
        with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(args.epochs, lr)
        return learn
    return sugg, train


def unfrozen_case(args):
    "(suggestions after unfreezing, a function training from the same trained head at one slice)"
    x, y, xv, yv = fashion_mnist_tensors(args.n_train, args.n_test, seed=0)
    def dls(): return memory_dataloaders(x, y, xv, yv, vocab=FASHION_MNIST_CLASSES, size=32, bs=64, batch_tfms=[Flip()])
    set_seed(args.seed)
    learn = efficientnet_learner(dls(), 'lite0', metrics=accuracy, precompute=True, path=tempfile.mkdtemp(), model_dir='.')
    with learn.no_bar(), learn.no_logging():
        lr = learn.lr_find(show_plot=False).valley
        learn.fit_one_cycle(2, lr)
        learn.precompute = False
        learn.fit_sgdr(2, 1, lr, cycle_mult=1)
    print(f"head: accuracy {float(learn.recorder.values[-1][-1]):.4f} at lr {lr:.2e}", flush=True)
    learn.save('head')
    learn.unfreeze()
    with learn.no_bar(): sugg = learn.lr_find(suggest_funcs=SUGGESTIONS, show_plot=False)
    def train(lrs):
        learn.load('head'); learn.unfreeze(); learn.dls = dls(); set_seed(args.seed)
        with learn.no_bar(), learn.no_logging(): learn.fit_sgdr(2, 1, lrs, cycle_mult=2)
        return learn
    return sugg, train


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--case', choices=('scratch', 'unfrozen'), default='scratch')
    p.add_argument('--seed', type=int, default=42)
    p.add_argument('--epochs', type=int, default=5, help="scratch: epochs of fit_one_cycle")
    p.add_argument('--n-train', type=int, default=10_000); p.add_argument('--n-test', type=int, default=2_000)
    p.add_argument('--extra', default='1e-3', help="unfrozen: head LRs to train at too, comma-separated ('' for none)")
    p.add_argument('--out', default=None)
    args = p.parse_args()
    sugg, train = (scratch_case if args.case == 'scratch' else unfrozen_case)(args)
    runs = dict(sugg._asdict())
    if args.case == 'unfrozen':
        ratio = runs['valley'].start/runs['valley'].stop  # the spread of the sweep, the stem's LR / the head's
        runs.update({f'lr {lr}': slice(float(lr)*ratio, float(lr)) for lr in args.extra.split(',') if lr})
    rows = []
    print(f"{'suggestion':<10} {'head lr':>9} {'accuracy':>9} {'seconds':>8}")
    for name,lr in runs.items():
        t = time.time()
        learn = train(lr)
        with learn.no_bar(): acc = float(learn.validate()[1])
        top = lr.stop if isinstance(lr, slice) else lr
        rows.append(dict(suggestion=name, lr=top, accuracy=acc, seconds=round(time.time()-t, 1)))
        print(f"{name:<10} {top:9.2e} {acc:9.4f} {rows[-1]['seconds']:8.1f}", flush=True)
    if args.out: Path(args.out).write_text(json.dumps(dict(vars(args), results=rows), indent=1))


if __name__ == '__main__': main()
