"The plots `efflearn train` writes, read back through matplotlib's objects: titles, axes, labels, the chosen LR, the changes named"
import shutil
import numpy as np
import pytest
import matplotlib
matplotlib.use('Agg')
import efflearn.cli as cli
from efflearn.data.datasets import digits_folder


@pytest.fixture(scope='module')
def figures(tmp_path_factory):
    "A fine-tuning run as the command makes it (Lite0's ImageNet weights, lr_find, 32 then 48 px), its figures kept open"
    digits = digits_folder(tmp_path_factory.mktemp('digits'))
    data = tmp_path_factory.mktemp('data')
    for c in '012':
        (data/c).mkdir()
        for f in sorted((digits/'train'/c).iterdir())[:40]: shutil.copy(f, data/c)
    figs,savefig = {},cli._savefig
    def keep(fig, fname):
        figs[fname.name] = fig
        fig.savefig(fname, dpi=100, bbox_inches='tight')  # on disk too, to look at
    out = tmp_path_factory.mktemp('run')
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli, '_savefig', keep)
        learn = cli.train(data, arch='lite0', epochs=2, sizes=(32, 48), bs=16, device='cpu', workers=0, out=out)
    yield figs,learn,out
    import matplotlib.pyplot as plt
    plt.close('all')


def texts(ax): return [t.get_text() for t in ax.texts]
def legend(ax): return [t.get_text() for t in ax.get_legend().get_texts()]


def test_lr_find_names_the_lr_used(figures):
    figs,_,out = figures
    import json
    lr = json.loads((out/'metrics.json').read_text())['lr']
    assert lr['source'] == 'lr_find (valley)'
    ax = figs['lr_find.png'].axes[0]
    assert ax.get_title() == f"lr_find: training loss as the LR grows; training at valley = {lr['value']:.1e}"
    assert (ax.get_xscale(), ax.get_xlabel(), ax.get_ylabel()) == ('log', 'learning rate (log scale)', 'loss')
    assert f"valley {lr['value']:.1e}: used" in legend(ax) and {'slide', 'minimum', 'steep'} <= {l.split()[0] for l in legend(ax)}
    assert texts(ax) == [f"used: valley = {lr['value']:.1e}"]
    lo,hi = ax.get_ylim()
    star = next(l for l in ax.lines if l.get_label().endswith(': used'))
    assert lo <= star.get_ydata()[0] <= hi  # the marker is inside the plot


def test_loss_plot_labels_phases_and_sizes(figures):
    figs,_,_ = figures
    ax = figs['loss.png'].axes[0]
    assert (ax.get_title(), ax.get_xlabel()) == ('Loss over the run', 'training iteration (batch)')
    assert legend(ax) == ['train (smoothed, per iteration)', 'valid (end of each epoch, at 48 px)']
    assert 'unfrozen' in texts(ax) and 'size 32→48 px' in texts(ax), texts(ax)
    assert all(t.startswith(('unfrozen', 'size 32→48 px', 'jump: the new size (32→48 px)')) for t in texts(ax)), texts(ax)
    top = ax.child_axes[0]
    assert top.get_xlabel() == 'end of epoch' and [t.get_text() for t in top.get_xticklabels()] == ['1', '2', '3']


def test_lr_size_plot_log_scale_frozen_groups(figures):
    figs,learn,_ = figures
    ax_lr,ax_size = figs['lr_size.png'].axes[:2]
    assert ax_lr.get_title() == 'Learning rate per parameter group, and image size'
    assert (ax_lr.get_yscale(), ax_lr.get_ylabel()) == ('log', 'learning rate (log scale)')
    assert legend(ax_lr) == ['groups in between', 'first group (lowest layers)', 'last group (head)', 'frozen: lower groups not trained, no LR']
    assert {'unfrozen', 'size 32→48 px'} <= set(texts(ax_lr))
    first = next(l for l in ax_lr.lines if l.get_label() == 'first group (lowest layers)').get_ydata()
    n_frozen = len(learn.dls.train)  # one frozen epoch
    assert np.isnan(first[:n_frozen]).all() and np.isfinite(first[n_frozen:]).all()  # no LR drawn while frozen, one after
    assert (ax_size.get_ylabel(), ax_size.get_xlabel()) == ('image size (px)', 'training iteration (batch)')
    assert legend(ax_size) == ['training', 'validation (end of epoch)']
    assert sorted(ax_size.get_yticks()) == [32, 48]


def test_confusion_matrix(figures):
    figs,_,_ = figures
    ax = figs['confusion_matrix.png'].axes[0]
    assert ax.get_title() == 'Confusion matrix (validation set)'
    assert [t.get_text() for t in ax.get_xticklabels()] == ['0', '1', '2']
