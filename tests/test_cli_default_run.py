"""`efflearn train` with no arguments, as the README promises it (the slowest test: its own file, so that
`pytest -n auto --dist loadfile` runs it beside the rest of test_cli.py)"""
import re, time
import pytest
from test_cli import run, metrics


def test_default_run_on_embedded_digits(tmp_path, capsys):
    "`efflearn train` with no PATH: scikit-learn's digits written to the cache on first use, B0 from scratch growing 32 -> 48 px, lr_find"
    t = time.perf_counter()
    r = run('train', cwd=tmp_path, env={'EFFLEARN_HOME': str(tmp_path/'cache')}, module=False)
    with capsys.disabled(): print(f'\n`efflearn train` (the embedded default) took {time.perf_counter() - t:.0f}s of wall time here')
    assert r.returncode == 0, r.stderr
    assert (tmp_path/'cache'/'digits'/'train'/'7').is_dir()
    runs = list((tmp_path/'efflearn-runs').iterdir())
    assert len(runs) == 1 and runs[0].name.endswith('-b0')
    m = metrics(runs[0])
    assert m['sizes'] == [32, 48] and len({e['train_size'] for e in m['rows']}) == 2  # progressive: the library's idea, shown
    assert m['final']['accuracy'] > 0.9, m['final']
    acc = re.search(r'Validation accuracy (0\.\d{4})', r.stdout)
    assert acc and float(acc.group(1)) == pytest.approx(m['final']['accuracy'], abs=1e-4)
