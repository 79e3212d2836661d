"""Importing efflearn leaves fastai exactly as fastai ships it (issue 13, section 1).

- `test_importing_efflearn_changes_no_fastai_object`: in a fresh interpreter, snapshot every public name of every loaded
  `fastai.*` module, every attribute (`vars`) of every class those names hold (`Learner` and all of fastai's classes,
  and the torch, fastcore, pandas... classes fastai re-exports) and fastai's `defaults`; import `efflearn.all` and every
  efflearn module; snapshot again and list what was added, removed or replaced.
- `test_star_import_shadows_no_fastai_name`: `from fastai.vision.all import *` then `from efflearn.all import *` binds
  every fastai name to the same object as before.
- `test_fastai_fit_methods_behave_the_same_with_efflearn_imported`: fastai's `fit`, `fit_one_cycle`, `fit_flat_cos`,
  `fit_sgdr`, `fine_tune` and `lr_find` on a plain fastai `Learner` schedule the same hyper-parameters and reach the same
  weights before and after efflearn is imported.
- `test_fastai_notebook`: fastai's own notebook tests for `Learner` (13a), schedules (14) and `vision_learner` (21), run
  with efflearn imported first; on a failure, again without it, so that the message says whose doing it is.
- `test_load_learner_keeps_efflearn_learner`: `load_learner` on an exported efflearn learner gives back efflearn's
  `Learner` subclass, with its own `fine_tune` and `fit_sgdr`.

Everything that imports efflearn next to fastai runs in a subprocess, so that no other test's imports (or patches) and
no import order can hide a change."""
import ast, json, os, re, subprocess, sys, tempfile
from pathlib import Path
import pytest

REPO = Path(__file__).resolve().parents[1]
NBS = Path(__file__).resolve().parent/'fastai_nbs'
MARKER = '@@efflearn-test-result@@'

# The fastai modules efflearn's imports pull in, loaded before the first snapshot so that what efflearn loads is compared
FASTAI_IMPORTS = 'import fastai.vision.all, fastai.distributed, fastai.callback.all, fastai.test_utils'

# Imports every module of the efflearn package, subpackages included (none of them runs anything at import:
# `efflearn.__main__` calls `main()` only under `if __name__ == '__main__'`). Sets `efflearn_modules` and `import_errors`.
IMPORT_EFFLEARN = '''
import sys, importlib, pkgutil
import efflearn, efflearn.all
efflearn_modules, import_errors = ['efflearn', 'efflearn.all'], {}
def _onerror(name): import_errors[name] = repr(sys.exc_info()[1])
for _m in pkgutil.walk_packages(efflearn.__path__, 'efflearn.', onerror=_onerror):
    try: importlib.import_module(_m.name); efflearn_modules.append(_m.name)
    except Exception as e: import_errors[_m.name] = repr(e)
'''

# `_describe(o)`: what an object is, for the messages: `module.qualname` when it has them
DESCRIBE = '''
def _describe(o):
    mod, name = getattr(o, '__module__', None), getattr(o, '__qualname__', None) or getattr(o, '__name__', None)
    return f'{mod}.{name}' if mod and name else f'{type(o).__name__} object'
'''

def run_python(code, *args, timeout=600):
    "Run `code` in a fresh interpreter at the repository root; return the JSON it printed after `MARKER`"
    env = {**os.environ, 'MPLBACKEND': 'Agg', 'PYTHONWARNINGS': 'ignore'}
    res = subprocess.run([sys.executable, '-c', f'MARKER = {MARKER!r}\n' + code, *args], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=timeout)
    lines = [l for l in res.stdout.splitlines() if l.startswith(MARKER)]
    assert lines, f"subprocess failed (exit {res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-5000:]}"
    return json.loads(lines[-1][len(MARKER):])

# ---------------------------------------------------------------------------------------------------------------------
# 1. No fastai name, class attribute or default is added, removed or replaced by importing efflearn

SNAPSHOT = FASTAI_IMPORTS + DESCRIBE + '''
import sys, json
from fastai.torch_core import defaults

def _fastai_modules():
    return {k:m for k,m in list(sys.modules.items()) if m is not None and (k == 'fastai' or k.startswith('fastai.'))}

def snapshot():
    "{kind: {key: (id, description)}}: names in fastai modules, attributes of the classes they hold, `defaults`"
    names, attrs, dflts, classes = {}, {}, {}, {}
    for mname, mod in sorted(_fastai_modules().items()):
        for k, v in list(vars(mod).items()):
            if k.startswith('_'): continue
            names[f'{mname}.{k}'] = (id(v), _describe(v))
            if isinstance(v, type): classes.setdefault(f'{v.__module__}.{v.__qualname__}', v)
    for cname, cls in classes.items():
        for k, v in list(vars(cls).items()): attrs[f'{cname}.{k}'] = (id(v), _describe(v))
    for k, v in vars(defaults).items():
        dflts[f'defaults.{k}'] = (id(v), _describe(v))
        if isinstance(v, (list, tuple, dict, set)):   # an appended callback keeps the list's id: compare its items
            items = v.items() if isinstance(v, dict) else enumerate(v)
            for i, o in items: dflts[f'defaults.{k}[{i!r}]'] = (id(o), _describe(o))
    return dict(names=names, attrs=attrs, defaults=dflts), set(_fastai_modules())

before, mods_before = snapshot()
''' + IMPORT_EFFLEARN + '''
after, mods_after = snapshot()
diff = {}
for kind in before:
    b, a = before[kind], after[kind]
    diff[kind] = dict(added={k: a[k][1] for k in sorted(set(a) - set(b))},
                      removed={k: b[k][1] for k in sorted(set(b) - set(a))},
                      replaced={k: f'{b[k][1]} -> {a[k][1]}' for k in sorted(set(a) & set(b)) if a[k][0] != b[k][0]})
print(MARKER + json.dumps(dict(diff=diff, efflearn_modules=efflearn_modules, import_errors=import_errors,
                               new_fastai_modules=sorted(mods_after - mods_before))))
'''

def _changes(diff):
    "One line per added/removed/replaced name, attribute or default"
    # names re-exported by other fastai modules repeat the change: attributes and defaults first, then module names
    return [f'{how} {kind[:-1] if kind != "defaults" else "default"}: {key}  ({what})'
            for kind in ('attrs', 'defaults', 'names') for how in ('replaced', 'added', 'removed')
            for key, what in diff[kind][how].items()]

def test_importing_efflearn_changes_no_fastai_object():
    res = run_python(SNAPSHOT)
    assert not res['import_errors'], f"efflearn modules that failed to import: {res['import_errors']}"
    assert len(res['efflearn_modules']) > 2, res['efflearn_modules']
    changes = _changes(res['diff'])
    assert not changes, (f"importing {len(res['efflearn_modules'])} efflearn modules changed {len(changes)} fastai "
                         f"objects (fastai modules loaded only by efflearn: {res['new_fastai_modules']}):\n"
                         + '\n'.join(changes))

STAR = DESCRIBE + '''
import json
fastai_ns, both_ns = {}, {}
exec('from fastai.vision.all import *', fastai_ns)
both_ns.update(fastai_ns)
exec('from efflearn.all import *', both_ns)
shadowed = {k: f'{_describe(v)} -> {_describe(both_ns[k])}' for k, v in fastai_ns.items()
            if not k.startswith('__') and both_ns.get(k) is not v}
print(MARKER + json.dumps(dict(shadowed=shadowed, n_fastai=len(fastai_ns))))
'''

def test_star_import_shadows_no_fastai_name():
    res = run_python(STAR)
    assert res['n_fastai'] > 1000, res['n_fastai']
    assert not res['shadowed'], ("`from efflearn.all import *` after `from fastai.vision.all import *` rebinds these "
                                 "fastai names:\n" + '\n'.join(f'{k}: {v}' for k, v in sorted(res['shadowed'].items())))

# ---------------------------------------------------------------------------------------------------------------------
# 1b. fastai's fitting methods do what fastai's do (fastai's notebook tests below do not check, for one, that
# `fit_sgdr` leaves momentum alone)

BEHAVIOUR = FASTAI_IMPORTS + '''
import json, tempfile, numpy as np
from fastai.vision.all import Callback, set_seed
from fastai.test_utils import synth_learner

class _Trace(Callback):
    "Every parameter group's hyper-parameters at every optimizer step"
    order,run_valid = 100,False
    def before_fit(self): self.steps = getattr(self, 'steps', [])
    def before_step(self):
        self.steps.append([{k:float(v) for k,v in sorted(h.items()) if np.isscalar(v)} for h in self.opt.hypers])

FITS = {'fit': lambda l: l.fit(2), 'fit_one_cycle': lambda l: l.fit_one_cycle(2),
        'fit_flat_cos': lambda l: l.fit_flat_cos(2), 'fit_sgdr': lambda l: l.fit_sgdr(2, 1),
        'fine_tune': lambda l: l.fine_tune(1), 'lr_find': lambda l: l.lr_find(num_it=20, show_plot=False)}

def trace(fit):
    "Hyper-parameters at each step and final weights of `fit` on a seeded two-group synthetic learner"
    set_seed(0, reproducible=True)
    with tempfile.TemporaryDirectory() as d:
        cb = _Trace()
        learn = synth_learner(n_trn=4, splitter=lambda m: [[m.a], [m.b]], path=d, cbs=cb)
        with learn.no_logging(), learn.no_bar(): FITS[fit](learn)
    return dict(steps=cb.steps, weights=[p.item() for p in learn.model.parameters()])

before = {f: trace(f) for f in FITS}
''' + IMPORT_EFFLEARN + '''
after = {f: trace(f) for f in FITS}
def same_step(s, t):
    return [sorted(g) for g in s] == [sorted(g) for g in t] and all(
        np.allclose([g[k] for k in sorted(g)], [h[k] for k in sorted(h)]) for g,h in zip(s, t))
def same(a, b):
    return (len(a['steps']) == len(b['steps']) and np.allclose(a['weights'], b['weights'], rtol=1e-6, atol=1e-8)
            and all(same_step(s, t) for s,t in zip(a['steps'], b['steps'])))
differ = {f: dict(fastai=before[f], with_efflearn=after[f]) for f in FITS if not same(before[f], after[f])}
print(MARKER + json.dumps(dict(differ=differ, import_errors=import_errors)))
'''

def _summary(t):
    "Steps, the hyper-parameters scheduled (those that change), and the first steps' values"
    keys = sorted({k for s in t['steps'] for g in s for k in g})
    moving = [k for k in keys if len({g.get(k) for s in t['steps'] for g in s}) > 1]
    return (f"{len(t['steps'])} steps, hyper-parameters that change: {moving}, "
            f"first 3 steps (group 0): {[{k: round(s[0][k], 5) for k in moving if k in s[0]} for s in t['steps'][:3]]}, "
            f"weights {[round(w, 5) for w in t['weights']]}")

def test_fastai_fit_methods_behave_the_same_with_efflearn_imported():
    "fastai's fitting methods on a plain `Learner`: the same schedules and weights before and after importing efflearn"
    res = run_python(BEHAVIOUR)
    assert not res['import_errors'], f"efflearn modules that failed to import: {res['import_errors']}"
    assert not res['differ'], ("importing efflearn changes what these fastai methods do on a fastai `Learner`:\n" +
        '\n'.join(f"{f}:\n  fastai:        {_summary(d['fastai'])}\n  with efflearn: {_summary(d['with_efflearn'])}"
                  for f, d in res['differ'].items()))

# ---------------------------------------------------------------------------------------------------------------------
# 2. fastai's own notebook tests pass with efflearn imported
#
# The notebooks (tests/fastai_nbs/, see the README there) are run cell by cell in one namespace, as `nbdev-test` does, but
# against the *installed* fastai, since that is what importing efflearn could change: a cell that defines library code
# (`#|export`) is replaced by the installed module's objects (the namespace starts with the module's globals) and only
# its other top-level statements run (such as `defaults.callbacks.append(Recorder)`). Running the notebook's own
# definitions instead would test fresh copies, and 14's `@patch def fit_sgdr` would even re-install fastai's method over
# efflearn's before the test that checks it. Cells flagged `slow` run (they are small synthetic fits, and one is the only
# fastai test of `fit_sgdr`); the cells below are skipped, each for the reason given.

NOTEBOOKS = {  # notebook: (installed module its export cells became, setup run first)
    '13a_learner': ('fastai.learner',
                    # the notebook builds `defaults.callbacks` itself (TrainEvalCallback, then Recorder, CastToTensor)
                    # and its tests count callbacks; `fastai.vision.all` also added ProgressCallback
                    'del defaults.callbacks'),
    '14_callback.schedule': ('fastai.callback.schedule', ''),
    '21_vision.learner': ('fastai.vision.learner', ''),
}

PRETRAINED = "downloads torchvision's ImageNet weights (pretrained=True); no network here"
NEEDS_SKIPPED = 'uses the data or learner of a cell skipped above'
SKIP = {  # notebook: {code snippet: reason}, for what the generic rules in `cell_plan` cannot see
    '21_vision.learner': {
        'm = create_body(tst)': "written for fastai<2.7's `create_body(arch)`; fastai 2.8's takes a model instance",
        'create_vision_model(models.resnet18, 10, True)': PRETRAINED,
        'create_unet_model(models.resnet18, 10, (24,24), True': PRETRAINED,
        'learn = vision_learner(dls, models.resnet18': NEEDS_SKIPPED + ' (PETS), and ' + PRETRAINED,
        'learn = vision_learner(dls, models.resnet34': NEEDS_SKIPPED + ' (PETS), and ' + PRETRAINED,
        'test_eq(to_cpu(dls.after_batch[1].mean': NEEDS_SKIPPED + ' (PETS)',
        "vision_learner(dls, 'vit_tiny_patch16_224'": NEEDS_SKIPPED + ' (PETS), and downloads timm weights',
        'learn = unet_learner(dls, models.resnet34': NEEDS_SKIPPED + ' (CAMVID_TINY), and ' + PRETRAINED,
        'test_ne(learn.cbs, None)': NEEDS_SKIPPED + ' (the unet learner)',
    },
}

DIRECTIVE = re.compile(r'#\s*\|?\s*(export|exports|exporti|hide|skip|cuda|slow|notest|default_exp|eval:\s*false)\b')

def _directives(src):
    "nbdev directives in the cell's leading comment lines, new (`#|export`) and old (`#export`, `# export`) style"
    found = set()
    for line in src.splitlines():
        if not line.startswith('#'): break
        if m := DIRECTIVE.match(line): found.add(re.sub(r'\s+', ' ', m.group(1)))
    return found

def _is_add_docs(n):
    "`add_docs(...)`: sets docstrings, and asserts every method has one, which methods patched in since lack"
    # (the installed `Learner` has `to_non_native_fp16`... from later fastai modules, so it would fail for no fault)
    return isinstance(n, ast.Expr) and isinstance(n.value, ast.Call) and getattr(n.value.func, 'id', None) == 'add_docs'

def _export_statements(src):
    "The top-level statements of an export cell other than definitions, docstrings (`add_docs`) and `__future__` imports"
    keep = [n for n in ast.parse(src).body
            if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not _is_add_docs(n)
            and not (isinstance(n, ast.ImportFrom) and n.module == '__future__')]
    return '\n'.join(ast.get_source_segment(src, n) for n in keep)

def cell_plan(name):
    "[(index, first line, code to run or None, why not run)] for the notebook's code cells"
    cells = [''.join(c['source']) for c in json.loads((NBS/f'{name}.ipynb').read_text())['cells']]
    plan = []
    for i, src in enumerate(cells):
        flags, code, why = _directives(src), src, None
        if flags & {'cuda'}: why = 'needs a GPU (#|cuda)'
        elif flags & {'notest', 'skip', 'eval: false'}: why = 'not run by nbdev-test (#|skip, #|eval: false, #|notest)'
        elif any(l.lstrip().startswith(('!', '%')) for l in src.splitlines()): why = 'shell or magic command'
        elif 'nbdev_export()' in src or 'notebook2script()' in src: why = "exports fastai's library (writes files)"
        elif 'untar_data(' in src or 'URLs.' in src: why = 'downloads a fastai data set; no network here'
        elif reason := next((r for s, r in SKIP.get(name, {}).items() if s in src), None): why = reason
        elif flags & {'export', 'exports', 'exporti'}: code = _export_statements(src)
        plan.append((i, src.splitlines()[0] if src else '', code if why is None else None, why))
    return plan

RUNNER = '''
import sys, json, importlib, time, traceback
plan = json.loads(open(sys.argv[1]).read())
ns = {'__name__': '__main__'}
t0 = time.time()
exec(plan['prelude'], ns)
for k, v in vars(importlib.import_module(plan['module'])).items():
    if not (k.startswith('__') and k.endswith('__')): ns[k] = v
exec(plan['setup'], ns)
results = dict(failed=[], import_errors=ns.get('import_errors', {}))
for i, first, code in plan['cells']:
    try: exec(compile(code, f"<{plan['name']} cell {i}>", 'exec'), ns)
    except BaseException as e:
        results['failed'].append(dict(index=i, first=first, error=repr(e)[:300],
                                      where=traceback.format_exc().strip().splitlines()[-6:]))
results['total_s'] = round(time.time()-t0, 1)
print(MARKER + json.dumps(results))
'''

PRELUDES = {
    # efflearn imported first, in the notebook's namespace, every module of it (as a user's session may hold)
    'efflearn': 'from fastai.vision.all import *\nimport efflearn.all\nfrom efflearn.all import *\n' + IMPORT_EFFLEARN,
    # the same fastai imports without efflearn: what fails here is not efflearn's doing
    'control': 'from fastai.vision.all import *\n',
}

def run_notebook(name, prelude):
    module, setup = NOTEBOOKS[name]
    plan = cell_plan(name)
    cfg = dict(name=name, module=module, setup=setup, prelude=PRELUDES[prelude],
               cells=[(i, first, code) for i, first, code, why in plan if why is None and code.strip()])
    with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as f: json.dump(cfg, f)
    try: return run_python(RUNNER, f.name), plan
    finally: os.unlink(f.name)

@pytest.mark.parametrize('name', list(NOTEBOOKS))
def test_fastai_notebook(name):
    res, plan = run_notebook(name, 'efflearn')
    assert not res['import_errors'], f"efflearn modules that failed to import: {res['import_errors']}"
    if not res['failed']: return
    # only on failure: the same cells without efflearn, so that the message says whose doing it is
    control, _ = run_notebook(name, 'control')
    n_run = sum(1 for *_, code, why in plan if why is None and code.strip())
    skipped = '\n'.join(f'  cell {i} ({first}): {why}' for i, first, _, why in plan if why)
    failed = '\n'.join(f"  cell {f['index']} ({f['first']}): {f['error']}\n      " + '\n      '.join(f['where'])
                       for f in res['failed'])
    also = {f['index'] for f in control['failed']}
    blame = (f"without efflearn, cells {sorted(also)} fail too: fastai's or this runner's doing" if also else
             "without efflearn every cell passes: efflearn's doing")
    pytest.fail(f"fastai's {name} notebook with efflearn imported: {len(res['failed'])} of {n_run} cells failed "
                f"({res['total_s']}s); {blame}:\n{failed}\nskipped:\n{skipped}")

# 3. load_learner gives back efflearn's learner

def test_load_learner_keeps_efflearn_learner(small_digits, tmp_path):
    from fastai.learner import Learner, load_learner
    from fastai.vision.all import ImageDataLoaders, Resize
    from efflearn.all import efficientnet_learner
    dls = ImageDataLoaders.from_folder(small_digits, valid='valid', item_tfms=Resize(32), bs=16, num_workers=0)
    learn = efficientnet_learner(dls, 'b0', pretrained=False, path=tmp_path)
    cls = type(learn)
    learn.export('export.pkl')
    loaded = load_learner(tmp_path/'export.pkl')
    problems = []
    if cls is Learner or not issubclass(cls, Learner):
        problems.append(f"efficientnet_learner returns a {cls.__module__}.{cls.__qualname__}, "
                        "not a subclass of fastai's Learner")
    if type(loaded) is not cls: problems.append(f"load_learner gives back a {type(loaded)}, not the exported {cls}")
    for name in ('fine_tune', 'fit_sgdr'):
        ours, fastais = getattr(cls, name), getattr(Learner, name)
        if ours is fastais:
            problems.append(f"{cls.__qualname__}.{name} is `Learner.{name}` itself (now "
                            f"{fastais.__module__}.{fastais.__qualname__}), not a method of efflearn's learner class")
        elif getattr(loaded, name).__func__ is not ours:
            problems.append(f"the loaded learner's {name} is not {cls.__qualname__}.{name}")
    assert not problems, '\n'.join(problems)
