#!/usr/bin/env python
"""Build efflearn's documentation site from the notebooks, in one command:

    python docs/build.py [--out _site]

1. Every notebook under `nbs/` (recursively) is executed with execnb's `CaptureShell`, as `nbdev-test` runs it, in
   parallel worker processes. Cells flagged with a test flag other than `notest` (`slow`, `cuda`: `tst_flags` in
   pyproject.toml) are not run and keep their stored outputs; `notest` cells are run. A cell that raises stops the
   build with the notebook, the cell and the error named.
2. nbdev's own processors prepare each page as `nbdev-docs` would: frontmatter (title, description), `show_doc` of
   every exported symbol, `#|hide` and exported cells removed, directives stripped.
3. The API reference is generated from each module's `__all__` (see `docs/apiref.py`): every public function, class,
   method and parameter with its signature, the docments comments as parameter descriptions. A public parameter
   without a description fails the build, naming it.
4. Sphinx (myst-nb, the furo theme, Sphinx's own search) renders the site to `--out`: `index.ipynb` is the home page,
   `nbs/NN_*.ipynb` the "Library" section in order, `nbs/tutorials/*.ipynb` the "Tutorials" section.

Page names follow nbdev's: `nbs/13_callback.resize.ipynb` is `callback.resize.html`, so links written for nbdev's site work."""

from __future__ import annotations
import argparse, hashlib, json, os, re, shutil, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS))
from nbproc import BuildError, run_isolated, worker_context

# ----------------------------------------------------------------------------------------------------------------------
# Pages

def _title(s:str)->str: return s.replace('_', ' ').replace('-', ' ').strip().capitalize()

def find_pages(nbs:Path)->list[dict]:
    "Every notebook under `nbs` as {src, doc (Sphinx docname, nbdev's page name), section}, in site order"
    from nbdev.config import nbpath2html
    res = []
    for p in sorted(nbs.rglob('*.ipynb')):
        rel = p.relative_to(nbs)
        if any(o.startswith(('.', '_')) for o in rel.parts): continue
        doc = nbpath2html(rel).with_suffix('').as_posix()
        if rel.as_posix() == 'index.ipynb': section = ''
        elif len(rel.parts) == 1: section = 'Library'
        else: section = 'Tutorials' if rel.parts[0] == 'tutorials' else _title(rel.parts[0])
        res.append(dict(src=p, doc=doc, section=section))
    docs = [o['doc'] for o in res]
    dups = {d for d in docs if docs.count(d) > 1}
    if dups: raise BuildError(f"notebooks map to the same page name (nbdev strips the number prefix): {sorted(dups)}")
    order = {'': 0, 'Library': 1, 'Tutorials': 2}
    return sorted(res, key=lambda o: (order.get(o['section'], 3), o['section'], o['src'].name))

# ----------------------------------------------------------------------------------------------------------------------
# Generated pages

def _toctree(caption:str, docs:list[str], hidden=True)->str:
    opts = [f':caption: {caption}'] if caption else []
    if hidden: opts.append(':hidden:')
    opts.append(':maxdepth: 1')
    return '\n'.join(['```{toctree}', *opts, '', *docs, '```'])

def _mod_summary(modname:str)->str:
    import importlib
    d = (importlib.import_module(modname).__doc__ or '').strip()
    d = re.split(r'\n\s*(?:Docs:|Modules:)', d)[0].strip()
    return ' '.join(d.split('\n\n')[0].split())

def write_api(srcdir:Path, api:dict, pages_by_html:dict, titles:dict)->list[str]:
    "The API reference: `api/index.md` and one page per module; returns their docnames"
    import apiref
    out = srcdir/'api'
    out.mkdir(parents=True, exist_ok=True)
    docs,rows = [],[]
    for mod,entries in api.items():
        short = mod.split('.', 1)[1]
        nb_page = apiref.lib_modules().get(mod, '')
        nb_doc = pages_by_html.get(nb_page.removesuffix('.html'))
        link = f'../{nb_doc}.ipynb' if nb_doc else ''
        desc = _mod_summary(mod)
        (out/f'{short}.md').write_text(apiref.module_page(mod, entries, link, titles.get(nb_doc, ''), desc))
        docs.append(f'api/{short}')
        names = ', '.join(f'{{py:obj}}`{e.name} <{e.fullname}>`' for e in entries)
        rows.append(f'| [{mod}]({short}.md) | {desc} | {names} |')
    index = ['# API reference', '',
             "Every public function, class and method of efflearn (each module's `__all__`, and the methods it patches "
             "onto fastai's `Learner`), with its signature and a description of each parameter.", '',
             '| module | | public names |', '|---|---|---|', *rows, '',
             _toctree('', [d.removeprefix('api/') for d in docs]), '']
    (out/'index.md').write_text('\n'.join(index))
    return ['api/index'] + docs

def _index_toc(pages:list[dict])->str:
    "Toctrees of the home page: the site's navigation"
    parts,sections = [],{}
    for p in pages:
        if p['section']: sections.setdefault(p['section'], []).append(p['doc'])
    for sec,docs in sections.items(): parts.append(_toctree(sec, docs))
    parts.append(_toctree('Reference', ['api/index']))
    return '\n\n'.join(parts)

# ----------------------------------------------------------------------------------------------------------------------
# Build

def _failed_page(p:dict, e:Exception):
    "With `--keep-going`: the page of a notebook that failed says so, and shows the error"
    from fastcore.nbio import new_nb, mk_cell, write_nb
    title = p['src'].stem
    msg = str(e).replace('```', "'''")
    nb = new_nb([mk_cell(f"# {title}\n\n**This notebook failed to execute; the docs build failed.**\n\n```text\n{msg}\n```", 'markdown')])
    p['dst'].parent.mkdir(parents=True, exist_ok=True)
    write_nb(nb, p['dst'])

def _hash(*paths)->str:
    h = hashlib.sha256()
    for p in paths:
        p = Path(p)
        h.update(str(p).encode()); h.update(p.read_bytes() if p.exists() else b'')
    return h.hexdigest()

def build(out:Path, work:Path, workers:int|None=None, cache:bool=True, quiet:bool=False, allow_undocumented=False, keep_going=False)->Path:
    from nbdev.config import get_config
    t0 = time.time()
    cfg = get_config(ROOT)
    nbs = Path(cfg.nbs_path)
    flags = cfg.tst_flags.split() if isinstance(cfg.tst_flags, str) else list(cfg.tst_flags or [])
    skip_flags = sorted(set(flags) - {'notest'})
    pages = find_pages(nbs)
    if not any(p['doc'] == 'index' for p in pages): raise BuildError(f'{nbs}/index.ipynb is missing: it is the home page')
    srcdir = work/'src'
    if srcdir.exists(): shutil.rmtree(srcdir)
    srcdir.mkdir(parents=True)
    cachedir = work/'cache'
    cachedir.mkdir(parents=True, exist_ok=True)

    # The public API first: its names link the notebooks' prose to the reference, and a gap fails fast
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        import apiref
        api = apiref.public_api()
    gaps = apiref.undocumented(api)
    if gaps and allow_undocumented: print('WARNING: public parameters without a description:\n  ' + '\n  '.join(gaps), file=sys.stderr)
    elif gaps:
        raise BuildError("public parameters without a description (add a docments comment, `name:type=default, # what it is`, "
                         "in the notebook that exports them):\n  " + '\n  '.join(gaps))
    names = {}
    for e in apiref.all_entries(api):
        names.setdefault(e.name, e.fullname)
        if e.name.startswith('Learner.'): names.setdefault(e.name.split('.', 1)[1], e.fullname)

    bare = sorted(e.name for e in apiref.all_entries(api) if e.kind == 'method' and not e.doc and not e.params)
    ctx = dict(root=str(ROOT), skip_flags=skip_flags, names=names, bare=bare,
               pages={p['doc']: p['doc'] for p in pages} |
                      {Path(p['src'].relative_to(nbs)).with_suffix('').as_posix(): p['doc'] for p in pages})
    lib_key = _hash(DOCS/'nbproc.py', *sorted(Path(cfg.lib_path).rglob('*.py')), cfg.config_file)
    timings_f = work/'timings.json'
    timings = json.loads(timings_f.read_text()) if timings_f.exists() else {}
    jobs,cached = [],[]
    for p in pages:
        dst = srcdir/f"{p['doc']}.ipynb"
        key = hashlib.sha256((lib_key + _hash(p['src']) + json.dumps(ctx, sort_keys=True, default=str)).encode()).hexdigest()
        p['key'],p['dst'] = key,dst
        c = cachedir/f'{key}.ipynb'
        if cache and c.exists():
            dst.parent.mkdir(parents=True, exist_ok=True); shutil.copy2(c, dst); cached.append(p)
        else: jobs.append(p)
    jobs.sort(key=lambda p: -timings.get(p['doc'], 1e9))  # slowest first; unknown ones first of all
    n = workers or min(len(jobs), os.cpu_count() or 1, 8) or 1
    if 'OMP_NUM_THREADS' not in os.environ: os.environ['OMP_NUM_THREADS'] = str(max(1, (os.cpu_count() or 1)//n))
    if not quiet: print(f'executing {len(jobs)} notebooks with {n} workers ({len(cached)} unchanged, from the cache)', flush=True)
    errors,titles = [],{}
    if jobs:
        mp = worker_context()
        with ThreadPoolExecutor(n) as ex:  # each thread runs its notebooks in fresh processes, one at a time
            futs = {ex.submit(run_isolated, mp, (str(p['src']), str(p['dst']), p['doc'], ctx)): p for p in jobs}
            for f in as_completed(futs):
                p = futs[f]
                try: r = f.result()
                except Exception as e:
                    errors.append(f"{p['src'].relative_to(ROOT)}: {e}")
                    if not quiet: print(f"  FAILED {p['src'].relative_to(ROOT)}" + (f': {e}' if keep_going else ''), flush=True)
                    if keep_going: _failed_page(p, e)
                    continue
                timings[p['doc']] = r['seconds']
                shutil.copy2(p['dst'], cachedir/f"{p['key']}.ipynb")
                if not quiet: print(f"  {p['src'].relative_to(ROOT)}: {r['cells_run']} cells run, {r['seconds']:.0f}s", flush=True)
    timings_f.write_text(json.dumps(timings, indent=1))
    if errors and not keep_going: raise BuildError('notebooks failed:\n\n' + '\n\n'.join(errors))

    # Titles, the home page's navigation, the API reference
    from fastcore.nbio import read_nb, mk_cell, write_nb
    for p in pages:
        nb = read_nb(p['dst'])
        m = re.search(r'^#\s+(.+)$', nb.cells[0].source, re.MULTILINE) if nb.cells else None
        titles[p['doc']] = m.group(1).strip().replace('`', '') if m else p['doc']
        # nbdev-clean strips the kernel metadata that tells myst-nb the cells are Python
        nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}
        nb.metadata['language_info'] = {'name': 'python', 'pygments_lexer': 'ipython3'}
        write_nb(nb, p['dst'])
    api_docs = write_api(srcdir, api, {p['doc'].split('/')[-1]: p['doc'] for p in pages if p['section'] == 'Library'}, titles)
    idx = srcdir/'index.ipynb'
    nb = read_nb(idx)
    nb.cells.append(mk_cell(_index_toc(pages), 'markdown'))
    write_nb(nb, idx)
    # the site's page list, for the tests and for anyone scripting against the site
    manifest = dict(pages=[dict(doc=p['doc'], html=f"{p['doc']}.html", title=titles[p['doc']], section=p['section'] or 'Home',
                                src=p['src'].relative_to(ROOT).as_posix()) for p in pages] +
                          [dict(doc=d, html=f'{d}.html', title='API reference' if d == 'api/index' else f"{cfg.lib_name}.{d.split('/')[-1]}",
                                section='API reference', src='') for d in api_docs])

    # Render
    t1 = time.time()
    # Sphinx writes into the work folder (myst-nb puts its output files beside the output folder), then the site moves
    html = work/'html'
    if html.exists(): shutil.rmtree(html)
    cmd = [sys.executable, '-m', 'sphinx', '-b', 'html', '-c', str(DOCS), '-d', str(work/'doctrees'), '-E', '-W',
           '--keep-going', '-j', str(min(4, os.cpu_count() or 1)), *(['-q'] if quiet else []), str(srcdir), str(html)]
    r = subprocess.run(cmd, cwd=ROOT)
    if r.returncode: raise BuildError(f'Sphinx failed (exit {r.returncode}); its messages are above')
    for junk in ('.buildinfo', '_sources'): shutil.rmtree(html/junk, ignore_errors=True) if (html/junk).is_dir() else (html/junk).unlink(missing_ok=True)
    if out.exists(): shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(html), str(out))
    (out/'site.json').write_text(json.dumps(manifest, indent=1))
    (out/'.nojekyll').touch()
    if not quiet: print(f'site written to {out} in {time.time()-t0:.0f}s (notebooks {t1-t0:.0f}s, Sphinx {time.time()-t1:.0f}s)')
    if errors: raise BuildError('notebooks failed (their pages show the error instead):\n\n' + '\n\n'.join(errors))
    return out

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', default=str(ROOT/'_site'), help='where the HTML site goes (default: _site)')
    ap.add_argument('--work', default=str(ROOT/'_docs_build'), help='intermediate files: processed notebooks, cache (default: _docs_build)')
    ap.add_argument('--workers', type=int, default=None, help='notebooks executed at once (default: the CPU count)')
    ap.add_argument('--no-cache', action='store_true', help='execute every notebook, even those unchanged since the last build')
    ap.add_argument('--allow-undocumented', action='store_true',
                    help='warn, instead of failing, about public parameters without a description (for previews)')
    ap.add_argument('--keep-going', action='store_true',
                    help='render the site even when notebooks fail (their pages show the error); still exits 1')
    ap.add_argument('-q', '--quiet', action='store_true')
    a = ap.parse_args(argv)
    try: build(Path(a.out).resolve(), Path(a.work).resolve(), a.workers, not a.no_cache, a.quiet, a.allow_undocumented, a.keep_going)
    except BuildError as e:
        print(f'\ndocs build FAILED: {e}', file=sys.stderr)
        return 1
    return 0

if __name__ == '__main__': sys.exit(main())
