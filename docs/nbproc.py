"""Execute one notebook and prepare it for myst-nb, with nbdev's processors: the worker half of `docs/build.py`.

A module of its own so that the build's worker processes (spawned, not forked: torch and threads) can import it."""

from __future__ import annotations
import os, re, sys, time, traceback
from pathlib import Path

class BuildError(Exception): "The docs build failed; the message says where and why"

_re_ansi = re.compile(r'\x1B(?:[@-Z\\-_]|\[[0-?]*[ -/]*[@-~])')

def _terminal(text:str)->str:
    "`text` as a terminal leaves it; lines that only erased a progress bar disappear"
    # fastprogress redraws its bars with carriage returns outside Jupyter (as here): a line shows what follows its last one
    lines = [l.rsplit('\r', 1)[-1].rstrip() for l in text.split('\n')]
    kept = [l for l,raw in zip(lines, text.split('\n')) if l or '\r' not in raw]
    return '\n'.join(kept)

_re_link = re.compile(r'(\]\()([^)\s]+)(\))')
_re_fence = re.compile(r'^(\s*)(```+|~~~+)', re.MULTILINE)

def _md_segments(s:str):
    "Split markdown `s` into (is_code, text) pieces: fenced code blocks are left alone"
    out,buf,fence = [],[],None
    for line in s.splitlines(keepends=True):
        m = re.match(r'^\s*(```+|~~~+)', line)
        if m and (fence is None or m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence)):
            if fence is None:
                if buf: out.append((False, ''.join(buf)))
                buf,fence = [line],m.group(1)
            else:
                buf.append(line); out.append((True, ''.join(buf))); buf,fence = [],None
            continue
        buf.append(line)
    if buf: out.append((fence is not None, ''.join(buf)))
    return out

def _fix_links(text:str, doc:str, pages:dict)->str:
    "Links to nbdev page names (`transfer.html#x`) or notebooks (`experiments/transfer.ipynb`) become links to Sphinx docs"
    here = Path(doc).parent
    def f(m):
        url = m.group(2)
        if re.match(r'^[a-z]+:', url) or url.startswith(('#', '/')): return m.group(0)
        path,_,anchor = url.partition('#')
        tgt = os.path.normpath((here/path).as_posix())
        tgt = pages.get(tgt) or pages.get(re.sub(r'\.(html|ipynb|md)$', '', tgt))
        if tgt is None: return m.group(0)
        rel = os.path.relpath(tgt, here.as_posix() or '.') + '.ipynb'
        return f"{m.group(1)}{rel}{'#'+anchor if anchor else ''}{m.group(3)}"
    return _re_link.sub(f, text)

def _linkify(text:str, names:dict)->str:
    "`Name` of a public efflearn object becomes a link to its API reference entry (not in headings or link texts)"
    def f(m):
        nm = m.group(2)
        return f"{m.group(1)}{{py:obj}}`{nm} <{names[nm]}>`" if nm in names else m.group(0)
    lines = text.splitlines(keepends=True)
    return ''.join(l if l.lstrip().startswith('#') else re.sub(r'(^|[^\[`\w])`([\w.]+)`(?![`\]])', f, l) for l in lines)

def _blockquote_desc(src:str)->str:
    "The full `> description` under the `# title` of a first markdown cell (fastcore keeps only its first line)"
    lines,out,started = src.splitlines(),[],False
    for l in lines:
        if l.startswith('>'): out.append(l[1:].strip()); started = True
        elif started: break
    return ' '.join(out)

def process_nb(src:str, dst:str, doc:str, ctx:dict)->dict:
    "Execute and process notebook `src` into `dst`, ready for myst-nb; returns timing information"
    t0 = time.time()
    import warnings
    from fastcore.basics import str2bool
    from fastcore.nbio import write_nb, mk_cell
    from execnb.shell import CaptureShell
    from nbdev.process import NBProcessor, Processor
    from nbdev.frontmatter import FrontmatterProc
    from nbdev.processors import (populate_language, add_show_docs, hide_line, filter_stream_, rm_header_dash,
                                  rm_export, clean_magics, hide_, strip_hidden_metadata)
    src,dst = Path(src),Path(dst)
    skip_flags = set(ctx['skip_flags'])
    n_run = 0

    class Mark(Processor):
        "Remember each cell's position in the notebook file, for error messages"
        def begin(self):
            for i,c in enumerate(self.nb.cells): c.orig_idx_ = i

    class Execute(Processor):
        "Run every code cell in order in one `CaptureShell`, except flagged ones, which keep their stored outputs"
        def begin(self):
            fm = getattr(self.nb, 'frontmatter_', {}) or {}
            self.skip_all = str2bool(fm.get('skip_exec', False))
            self.k = CaptureShell(src, mpl_format='png')
            self.k.run_cell('from nbdev.showdoc import show_doc')
        def cell(self, cell):
            nonlocal n_run
            if self.skip_all or cell.cell_type != 'code' or not cell.source.strip(): return
            d = cell.directives_ or {}
            if skip_flags & d.keys() or str(d.get('eval', '')).strip().lower() == 'false': return
            self.k.cell(cell)
            n_run += 1
            if self.k.exc is not None:
                e = self.k.exc
                tb = ''.join(o.get('traceback', '') if isinstance(o.get('traceback'), str) else '\n'.join(o.get('traceback', []))
                             for o in cell.outputs if o.get('output_type') == 'error')
                tb = re.sub(r'\x1B\[[0-?]*[ -/]*[@-~]', '', tb)
                where = f"cell {cell.orig_idx_}" if getattr(cell, 'orig_idx_', None) is not None else 'an inserted show_doc cell'
                raise BuildError(f"{src.relative_to(ctx['root'])}: {where} raised {type(e).__name__}: {e}\n"
                                 f"--- cell source ---\n{cell.source}\n--- traceback ---\n{tb.strip()}")
        def end(self): self.k.close()

    class drop_bare_show_docs(Processor):
        "No `show_doc` inserted for methods with neither a docstring nor parameters (a callback's event methods)"
        def begin(self):
            bare = set(ctx.get('bare', ()))
            def keep(c):
                m = re.match(r'^show_doc\(([\w.]+)\)$', (c.source or '').strip())
                return not (getattr(c, 'has_sd', False) and m and m.group(1) in bare)
            self.nb.cells = [c for c in self.nb.cells if keep(c)]

    def strip_ansi(cell):
        "Text outputs as a terminal shows them: colour codes out, and each line what follows its last carriage return"
        for o in cell.get('outputs', []):
            if 'text' in o:
                t = ''.join(o['text']) if isinstance(o['text'], list) else o['text']
                o['text'] = _terminal(_re_ansi.sub('', t))

    def show_docs(cell):
        "`show_doc` cells: input hidden; the broken source link becomes a link to the API reference"
        if cell.cell_type != 'code' or not re.match(r'^\s*show_doc\(', cell.source or ''): return
        cell.metadata.setdefault('tags', [])
        if 'remove-input' not in cell.metadata['tags']: cell.metadata['tags'].append('remove-input')
        for o in cell.get('outputs', []):
            md = o.get('data', {}).get('text/markdown')
            if md is None: continue
            md = ''.join(md) if isinstance(md, list) else md
            md = re.sub(r'^\[source\]\([^)]*\)(\{[^}]*\})?\s*$', '', md, flags=re.MULTILINE)
            md = re.sub(r'^---\s*\n', '', md.lstrip())
            m = re.search(r'^#+\s+(\S+)\s*$', md, flags=re.MULTILINE)
            if m and m.group(1) in ctx['names']:
                md = md[:m.end()] + f"\n\n{{py:obj}}`API reference <{ctx['names'][m.group(1)]}>`\n" + md[m.end():]
            o['data']['text/markdown'] = md

    def quarto_dirs(cell):
        "Quarto's cell options, as myst-nb's cell tags"
        if cell.cell_type != 'code': return
        d,tags = cell.directives_ or {}, []
        val = lambda k: str(d.get(k, '')).strip().lower()
        if val('echo') == 'false': tags.append('remove-input')
        if val('output') == 'false': tags.append('remove-output')
        if val('include') == 'false': tags.append('remove-cell')
        if tags: cell.metadata['tags'] = list(dict.fromkeys(cell.metadata.get('tags', []) + tags))

    def markdown(cell):
        if cell.cell_type != 'markdown' or not cell.source: return
        cell.source = ''.join(t if code else _linkify(_fix_links(t, doc, ctx['pages']), ctx['names'])
                              for code,t in _md_segments(cell.source))

    os.chdir(src.parent)
    from fastcore.nbio import read_nb
    nb = read_nb(src)
    first_md = next((c.source for c in nb.cells if c.cell_type == 'markdown'), '')
    procs = [Mark, FrontmatterProc, populate_language, add_show_docs, drop_bare_show_docs, hide_line, filter_stream_, rm_header_dash, Execute,
             strip_ansi, show_docs, quarto_dirs, rm_export, clean_magics, hide_, strip_hidden_metadata, markdown]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        NBProcessor(nb=nb, procs=procs, rm_directives=True).process()
    # FrontmatterProc put the title and description in a raw frontmatter cell: make them the page's heading
    fm = getattr(nb, 'frontmatter_', {}) or {}
    nb.cells = [c for c in nb.cells if not (c.cell_type == 'raw' and c.source.lstrip().startswith('---'))]
    head = []
    if fm.get('title'): head.append(f"# {fm['title']}")
    desc = fm.get('description', '')
    full = _blockquote_desc(first_md)
    if desc and full.startswith(desc): desc = full
    if desc: head.append(f'{{.lead}}\n{_linkify(_fix_links(desc, doc, ctx["pages"]), ctx["names"])}')
    if head: nb.cells.insert(0, mk_cell('\n\n'.join(head), 'markdown'))
    nb.metadata.pop('widgets', None)
    dst.parent.mkdir(parents=True, exist_ok=True)
    write_nb(nb, dst)
    return dict(src=str(src), title=fm.get('title', ''), seconds=time.time()-t0, cells_run=n_run)

def _child(args, conn):
    "Body of a worker process: run `process_nb(*args)`, send back ('ok', result) or ('err', message)"
    os.environ['IN_TEST'] = '1'  # as under nbdev-test and nbdev's own docs processing
    import multiprocessing as mp
    # a process the fork server started inherits its start method; a notebook's own process pools (fastcore's `parallel`,
    # `ProcessPoolExecutor`) fork, as under Jupyter and nbdev-test on Linux, so functions the notebook defines reach them
    if 'fork' in mp.get_all_start_methods(): mp.set_start_method('fork', force=True)
    try: res = ('ok', process_nb(*args))
    except BuildError as e: res = ('err', str(e))
    except BaseException as e: res = ('err', f"{args[0]}: {type(e).__name__}: {e}\n{traceback.format_exc()}")
    try: conn.send(res); conn.close()
    finally:
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(0)  # threads or loader workers a notebook left behind must not keep the process alive

def worker_context():
    """A fork server that has imported fastai (and the processing code) once: every notebook then runs in a fresh
    process forked from it, so nothing a notebook does (patching `Learner`, global settings) leaks into the next"""
    import multiprocessing as mp
    os.environ.setdefault('MPLBACKEND', 'Agg')
    ctx = mp.get_context('forkserver' if 'forkserver' in mp.get_all_start_methods() else 'spawn')
    if ctx.get_start_method() == 'forkserver': ctx.set_forkserver_preload(['nbproc', 'fastai.vision.all', 'execnb.shell', 'nbdev.processors'])
    return ctx

def run_isolated(ctx, args)->dict:
    "Run `process_nb(*args)` in a new process of `ctx` (see `worker_context`)"
    r,w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child, args=(args, w), daemon=False)
    p.start(); w.close()
    try: status,val = r.recv()
    except EOFError:
        p.join()
        raise BuildError(f"{args[0]}: the worker process died (exit code {p.exitcode}) before reporting")
    finally: r.close()
    p.join()
    if status == 'err': raise BuildError(val)
    return val
