"""Which `lr_find` suggestion to train at from scratch: B0 on scikit-learn's digits (32 px, 5 epochs of 1cycle).

`efflearn train` uses `valley` (fastai's default) to fine-tune pretrained weights and `minimum` from scratch; this
measures why. Prints the four suggestions of one `lr_find`, then the validation accuracy of a 5-epoch run at each
chosen suggestion (same seed, same initial weights), and writes them to JSON.

    python bench/lr_suggestion.py [--seed 42] [--epochs 5] [--out bench/lr_suggestion.json]
"""
import argparse, json, time, warnings
warnings.filterwarnings('ignore', category=FutureWarning)
from efflearn.all import *  # fastai.vision.all (lr_find suggestions, Path) and efflearn
from efflearn.data.folder import check_image_folder, folder_dataloaders


def make_learner(seed):
    set_seed(seed)
    dls = folder_dataloaders(check_image_folder(digits_folder()), size=32, bs=64, augment=False, num_workers=0)
    return efficientnet_learner(dls, 'b0', pretrained=False, metrics=accuracy)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--seed', type=int, default=42)
    p.add_argument('--epochs', type=int, default=5)
    p.add_argument('--out', default=None)
    args = p.parse_args()
    learn = make_learner(args.seed)
    with learn.no_bar(): sugg = learn.lr_find(suggest_funcs=(valley, slide, minimum, steep), show_plot=False)
    rows = []
    print(f"{'suggestion':<10} {'lr':>9} {'accuracy':>9} {'seconds':>8}")
    for name,lr in sugg._asdict().items():
        learn = make_learner(args.seed)
        t = time.time()
        with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(args.epochs, lr)
        with learn.no_bar(): acc = float(learn.validate()[1])
        rows.append(dict(suggestion=name, lr=lr, accuracy=acc, seconds=round(time.time()-t, 1)))
        print(f"{name:<10} {lr:9.2e} {acc:9.4f} {rows[-1]['seconds']:8.1f}", flush=True)
    if args.out: Path(args.out).write_text(json.dumps(dict(vars(args), results=rows), indent=1))


if __name__ == '__main__': main()
