"""results.md from the JSON a suite run left in its output folder (whatever is there: a cut-short run gives a shorter
report), with the issue's goals met or missed. suite.py calls it after every step; by hand:

    python bench/gpu/report.py OUT_DIR
"""
import json, sys
import xml.etree.ElementTree as ET
from pathlib import Path

def load(out:Path, name):
    try: return json.loads((out/f'{name}.json').read_text())
    except (OSError, ValueError): return None

def table(head, rows):
    return '\n'.join([f"| {' | '.join(head)} |", '|' + '---|'*len(head)] + [f"| {' | '.join(map(str, r))} |" for r in rows])

def f1(x, fmt='.1f', none='-'): return none if x is None else format(x, fmt)

def verdict(value, ok):
    return 'not measured' if value is None else ('**met**' if ok else '**missed**')

def train_step_rows(ts):
    "{(size, way): row} for B0 from train_step.json"
    return {(r['size'], r['way']): r for r in ts['results'] if r['arch'] == 'b0'} if ts else {}

def goals(out, dry):
    ts = train_step_rows(load(out, 'train_step'))
    img = lambda size, way: ts.get((size, way), {}).get('img_s')
    ratio = lambda a, b: a/b if a and b else None
    rows = []
    hand = ratio(img(224, 'efflearn'), img(224, 'hand'))
    rows.append(("efflearn >= 0.95x the hand-written loop's img/s, B0 224", f1(hand, '.3f') + ('x' if hand else ''), verdict(hand, hand and hand >= 0.95)))
    fa = ratio(img(224, 'efflearn'), img(224, 'fastai'))
    rows.append(("efflearn >= 1.5x fastai vision_learner defaults' img/s, B0 224", f1(fa, '.2f') + ('x' if fa else ''), verdict(fa, fa and fa >= 1.5)))
    st = ratio(img(64, 'efflearn'), img(224, 'efflearn'))
    rows.append(("efflearn at 64 px >= 6x its img/s at 224 px", f1(st, '.2f') + ('x' if st else ''), verdict(st, st and st >= 6)))
    ip = load(out, 'input_pipeline')
    fast = [p for p in ip['pipelines'] if p['pipeline'].startswith('fastai')] if ip else []
    best = max(fast, key=lambda p: p['img_per_s'], default=None)
    x = best and best['x_model']
    rows.append(("input pipeline (fastai `folder_dataloaders`, best worker count) > the model's img/s at 224",
                 f"{x:.2f}x ({best['img_per_s']:.0f} vs {ip['model']['img_per_s']:.0f} img/s, {best['workers']} workers)" if best else '-',
                 verdict(x, x and x > 1)))
    fm = load(out, 'fashion_mnist')
    s = fm and fm['results'].get('efflearn', {}).get('summary')
    t94 = s and s['time_to_94']
    rows.append(("Fashion-MNIST >= 94% test accuracy in <= 60 s",
                 (f"{t94:.1f} s to 94%" if t94 else "94% not reached") + f"; best {f1(s['best_accuracy'], '.4f')}" if s else '-',
                 verdict(s or None, bool(t94 is not None and t94 <= 60))))
    note = "\n\nDRY RUN on the CPU with tiny sizes: these figures check the suite, they measure nothing." if dry else ''
    return "## Goals (issue 17)\n\n" + table(['goal', 'measured', 'verdict'], rows) + note

def train_step_section(out):
    ts = load(out, 'train_step')
    if not ts: return None
    by = {(r['size'], r['way']): r for r in ts['results']}
    rows = [(r['arch'], r['size'], r['bs'], r['way'], f1(r['img_s']), f1(r['ms_step']), f1(r['peak_gib'], '.2f'),
             f"{r['img_s']/by[r['size'], 'hand']['img_s']:.3f}x" if (r['size'], 'hand') in by else '-') for r in ts['results']]
    return (f"## Train step (bench/train_step.py)\n\nRandom batches already on the device; {ts['env'].get('amp_mode') or 'fp32'}, "
            f"channels_last {ts['env'].get('channels_last')} for the hand loop and efflearn; fastai: its defaults (fp32). "
            f"Median of {ts['args']['repeats']} run(s) of {ts['args']['steps']} timed steps.\n\n"
            + table(['arch', 'size', 'bs', 'way', 'img/s', 'ms/step', 'peak GiB', 'vs hand'], rows))

def compile_section(out):
    c = load(out, 'compile')
    if not c: return None
    rows = [(r['size'], f1(r['compile_s']), f1(r['eager_img_s']), f1(r['compiled_img_s']), f"{r['speedup']:.2f}x") for r in c['rows']]
    be = c.get('break_even_steps_per_size')
    return ("## torch.compile (bench/compile_sizes.py)\n\n" + table(['size', 'compile s', 'eager img/s', 'compiled img/s', 'speedup'], rows)
            + f"\n\nGraphs in the fit: {c['graphs_in_fit']}; fit seconds eager {c['fit_s']['eager']:.1f}, compiled "
            f"{c['fit_s']['compiled']:.1f}; compiling pays after {'never' if be is None else f'{be:.0f} steps per size'}.")

def overhead_section(out):
    o = load(out, 'callback_overhead')
    if not o: return None
    rows = [(n, f1(r['median_ms'], '.2f'), f"{r['vs_bare']:+.1%}", f1(r['ours_ms'], '.3f'), f"{r['ours_share']:.2%}") for n,r in o['results'].items()]
    a = o['args']
    return (f"## Callback overhead (bench/callback_overhead.py), B0 {a['size']} px, bs {a['bs']}\n\n"
            + table(['learner', 'median ms/step', 'vs bare', "in efflearn's callbacks, ms/batch", 'share'], rows))

def input_section(out):
    ip = load(out, 'input_pipeline')
    if not ip: return None
    rows = [(p['pipeline'], p['decode'], '-' if p['workers'] is None else p['workers'], f1(p['img_per_s']), f"{p['x_model']:.2f}x", p['verdict'])
            for p in ip['pipelines']]
    return (f"## Input pipeline (bench/input_pipeline.py), {ip['args']['size']} px, bs {ip['args']['bs']}\n\nThe model consumes "
            f"{ip['model']['img_per_s']:.1f} img/s (B0 train step, {ip['model']['precision']}, data on the device).\n\n"
            + table(['pipeline', 'decode', 'workers', 'img/s', 'x model', 'verdict'], rows))

def fashion_section(out):
    fm = load(out, 'fashion_mnist')
    if not fm: return None
    res = fm['results'].get('efflearn')
    if not res: return None
    s,a = res['summary'],fm['args']
    rows = [(r['epoch'], r['size'], f1(r['wall_s']), f1(r['train_s']), f"{r['accuracy']:.4f}") for r in res['rows']]
    return (f"## Fashion-MNIST (bench/fashion_mnist.py), efflearn's recipe\n\n{fm['n_train']} train / {fm['n_test']} test, {a['arch']}, "
            f"bs {a['bs']}, sizes {a['sizes']}, {a['epochs']} epochs, budget {a['budget']:g} s: time to 93% {f1(s['time_to_93'], '.1f', 'not reached')}, "
            f"to 94% {f1(s['time_to_94'], '.1f', 'not reached')}, best {f1(s['best_accuracy'], '.4f')} (epoch {s['best_epoch']}); "
            f"setup {res['setup_s']} s{' (budget cut)' if res['cut'] else ''}.\n\n" + table(['epoch', 'size', 'wall s', 'training s', 'test accuracy'], rows))

def ddp_section(out):
    d = load(out, 'ddp')
    if not d: return None
    rows = [(w, f1(r.get('img_s')), f"{r['vs_single']:.3f}x" if r.get('vs_single') else '-', r.get('ddp', '-'), r.get('sync_bn_layers', '-'),
             (r['error'] or 'ok').replace('\n', ' ').replace('|', '/')[:300]) for w,r in d['ways'].items()]
    a = d['args']
    return (f"## DDP, one process on {d['backend']} (bench/gpu/ddp.py), B0 {a['size']} px, bs {a['bs']}\n\n"
            + table(['way', 'img/s', 'vs single', 'DDP', 'SyncBatchNorm layers', 'outcome'], rows))

def small_input_section(out):
    d = load(out, 'small_input_convs')
    if not d: return None
    rows = [(r['arch'], r['size'], r['bs'], f1(r['plain_img_s']), f1(r['cropped_img_s']), f"{r['speedup']:.2f}x") for r in d['rows']]
    return ("## Cropped kernels on small inputs (bench/small_input_convs.py)\n\nTrain-step img/s with `crop_kernel` off (plain "
            "convolutions over the padding) and on (efflearn's default: only the kernel taps that reach a feature map smaller than "
            "the kernel); at 224 px nothing is cropped.\n\n"
            + table(['arch', 'size', 'bs', 'plain img/s', 'cropped img/s', 'speed-up'], rows))

def tests_section(out):
    try: root = ET.parse(out/'test_cuda.xml').getroot()
    except (OSError, ET.ParseError): return None
    rows = []
    for tc in root.iter('testcase'):
        bad = next((c for c in tc if c.tag in ('failure', 'error', 'skipped')), None)
        outcome = 'passed' if bad is None else bad.tag
        msg = '' if bad is None else (bad.get('message') or '').replace('\n', ' ').replace('|', '/')[:300]
        rows.append((tc.get('name'), outcome, f1(float(tc.get('time', 0))), msg))
    return "## tests/test_cuda.py\n\n" + table(['test', 'outcome', 's', 'message'], rows)

def write(out):
    out = Path(out)
    env,st = load(out, 'env') or {},load(out, 'steps') or {}
    dry = st.get('dry_run', False)
    head = (f"# GPU suite results{' (DRY RUN)' if dry else ''}\n\n{env.get('device', '?')}; torch {env.get('torch', '?')} (CUDA "
            f"{env.get('cuda')}, cuDNN {env.get('cudnn')}, NCCL {env.get('nccl')}), fastai {env.get('fastai', '?')}, efflearn "
            f"{env.get('efflearn', '?')} ({env.get('git', '?')}), Python {env.get('python', '?')}; {env.get('date', '?')}.\n"
            f"Command: `bash bench/gpu/run.sh{' --dry-run' if dry else ''} $OUT` (bench/gpu/README.md).")
    steps = table(['step', 'status', 'seconds', 'CPU s', 'estimate s (H200)', 'what'],
                  [(s['name'], s['status'] + (f" ({s['why']})" if s.get('why') else ''), s.get('seconds', '-'), s.get('cpu_s', '-'),
                    s['est_s'], s['what'])
                   for s in st.get('steps', [])])
    parts = [head, goals(out, dry), "## Steps\n\n" + steps, tests_section(out), train_step_section(out), small_input_section(out),
             compile_section(out), input_section(out), fashion_section(out), overhead_section(out), ddp_section(out)]
    (out/'results.md').write_text('\n\n'.join(p for p in parts if p) + '\n')

if __name__ == '__main__': write(sys.argv[1])
