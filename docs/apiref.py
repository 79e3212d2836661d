"""efflearn's public API, as the docs show it: every public name of every module, its signature, and a description
of every parameter taken from its docments comments; and the API reference pages (MyST markdown) built from it.

The public names of `efflearn.<module>` are its `__all__`, plus the methods a module patches onto a class it imports
(`Learner.fit_sgdr`). Of a class, the public methods and properties it defines itself are documented too."""

from __future__ import annotations
import ast, enum, functools, importlib, inspect, re, textwrap
from dataclasses import dataclass, field, is_dataclass
from pathlib import Path

from fastcore.docments import docments

LIB = 'efflearn'

@dataclass
class Param:
    name:str   # as in the signature, with `*`/`**` for var-args
    desc:str   # description shown in the docs
    own:bool   # written in efflearn's code (so it must have a docments comment), not inherited or delegated

@dataclass
class Entry:
    kind:str        # 'function', 'class', 'exception', 'method', 'property' or 'data'
    module:str      # e.g. 'efflearn.callback.resize'
    name:str        # name in the module, e.g. 'ProgressiveResize', 'ProgressiveResize.size_at', 'Learner.fit_sgdr'
    obj:object
    sig:str = ''    # '(a: int = 1, *, b=None) -> int', without `self`
    doc:str = ''
    params:list = field(default_factory=list)
    members:list = field(default_factory=list)  # a class's methods and properties, as `Entry`s
    value:str = ''  # a data entry's value, shortened

    @property
    def fullname(self): return f'{self.module}.{self.name}'
    def missing(self):
        "Parameters written in efflearn's code without a description"
        return [p.name for p in self.params if p.own and not p.desc]

# ----------------------------------------------------------------------------------------------------------------------
# Modules, in the order of their notebooks

def lib_modules():
    "efflearn's modules that have public names, in the order of their notebooks, with the notebook's page (`resize.html`)"
    from efflearn._modidx import d
    res = {}
    for mod,syms in d['syms'].items():
        pages = {v[0].split('#')[0] for v in syms.values()}
        if mod == f'{LIB}.all' or not syms: continue
        res[mod] = sorted(pages)[0] if pages else ''
    return res

def _nb_order(mod:str)->str:
    "Sort key of `mod`: the notebook it is exported from"
    src = Path(importlib.import_module(mod).__file__).read_text()
    m = re.search(r'File to edit: (\S+)', src)
    return Path(m.group(1)).name if m else mod

# ----------------------------------------------------------------------------------------------------------------------
# Signatures

def _short(o)->str:
    "A default value or annotation as it would be written in code"
    if o is inspect.Parameter.empty: return ''
    if isinstance(o, enum.Enum): return f'{type(o).__name__}.{o.name}'
    if inspect.isclass(o) or inspect.isfunction(o) or inspect.isbuiltin(o) or inspect.ismethod(o):
        return getattr(o, '__qualname__', None) or o.__name__
    if hasattr(o, 'func') and hasattr(o, 'args'):  # functools.partial
        args = [_short(a) for a in o.args] + [f'{k}={_short(v)}' for k,v in o.keywords.items()]
        return f"partial({', '.join([_short(o.func)]+args)})"
    r = repr(o)
    return re.sub(r"<(?:function|class|built-in function) '?([\w.]+)'?(?: at 0x[0-9a-f]+)?>", r'\1', r)

def _anno(a)->str:
    if a is inspect.Parameter.empty: return ''
    if isinstance(a, str): return a
    return inspect.formatannotation(a)

def format_sig(sig:inspect.Signature, drop_first=False)->str:
    "`sig` as `(a: int = 1, *, b=None) -> int`, defaults written as code, without the first parameter if `drop_first`"
    ps = list(sig.parameters.values())
    if drop_first and ps: ps = ps[1:]
    parts,star_done = [],False
    for i,p in enumerate(ps):
        if p.kind == p.KEYWORD_ONLY and not star_done and not any(q.kind == q.VAR_POSITIONAL for q in ps):
            parts.append('*'); star_done = True
        s = {p.VAR_POSITIONAL: '*', p.VAR_KEYWORD: '**'}.get(p.kind, '') + p.name
        a = _anno(p.annotation)
        if a: s += f': {a}'
        if p.default is not p.empty: s += f' = {_short(p.default)}' if a else f'={_short(p.default)}'
        parts.append(s)
        if p.kind == p.POSITIONAL_ONLY and (i+1 == len(ps) or ps[i+1].kind != p.POSITIONAL_ONLY): parts.append('/')
    res = f"({', '.join(parts)})"
    r = _anno(sig.return_annotation) if sig.return_annotation is not sig.empty else ''
    return res + (f' -> {r}' if r else '')

# ----------------------------------------------------------------------------------------------------------------------
# Parameters and their descriptions

def _is_lib(o)->bool: return (getattr(o, '__module__', None) or '').split('.')[0] == LIB

def _own_params(f)->set:
    "Names of the parameters written in `f`'s own code (not added to its signature by `delegates`)"
    code = getattr(inspect.unwrap(f, stop=lambda g: hasattr(g, '__delwrap__') and g is not f), '__code__', None)
    if code is None: return set()
    n = code.co_argcount + code.co_kwonlyargcount
    names = list(code.co_varnames[:n])
    if code.co_flags & inspect.CO_VARARGS: names.append(code.co_varnames[n]); n += 1
    if code.co_flags & inspect.CO_VARKEYWORDS: names.append(code.co_varnames[n])
    return set(names)

def _target_name(f)->str:
    "Dotted name of `f`, through the shortest public module path that has it (`torch.nn.Conv2d`, not `torch.nn.modules.conv.Conv2d`)"
    mod,qn = getattr(f, '__module__', '') or '', getattr(f, '__qualname__', getattr(f, '__name__', ''))
    parts = mod.split('.')
    for i in range(1, len(parts)):
        try: o = importlib.import_module('.'.join(parts[:i]))
        except Exception: continue
        for a in qn.split('.'): o = getattr(o, a, None)
        if o is f: return f"{'.'.join(parts[:i])}.{qn}"
    return f'{mod}.{qn}'.lstrip('.')

def _init_of(cls):
    "The `__init__` that gives `cls` its signature, and the class that defines it"
    for c in cls.__mro__:
        if '__init__' in vars(c): return vars(c)['__init__'], c
    return object.__init__, object

def _params(f, sig:inspect.Signature, drop_first:bool, owner:type|None=None)->list[Param]:
    "The parameters of `sig` (of callable `f`) with their descriptions; `owner`: the class whose `__init__` `f` is"
    if isinstance(f, functools.partial): f = f.func
    try: dm = docments(f, full=True, args_kwargs=True)
    except Exception: dm = {}
    own = _own_params(f) if _is_lib(f) else set()
    if inspect.isclass(f) and is_dataclass(f): own = set(sig.parameters)  # fields, documented by comments in the class body
    ps = list(sig.parameters.values())
    if drop_first and ps: ps = ps[1:]
    delegate = getattr(f, '__delwrap__', None)
    res = []
    for p in ps:
        d = dm.get(p.name)
        desc = (d.docment if d else None) or getattr(f, '__param_docs__', {}).get(p.name, '')  # set by wrappers such as `resumable`
        is_own = p.name in own
        if not desc and not is_own:
            # inherited from, or passed on to, code outside efflearn that has no docments: say where it goes
            wrapped = getattr(f, '__wrapped__', None)
            src = (delegate if delegate is not None and not _is_lib(delegate) else
                   wrapped if wrapped is not None and not _is_lib(wrapped) else owner)
            if src is not None: desc = f'passed to `{_target_name(src)}`'
        pre = {p.VAR_POSITIONAL: '*', p.VAR_KEYWORD: '**'}.get(p.kind, '')
        res.append(Param(pre+p.name, ' '.join(desc.split()), is_own))
    return res

def _doc(o)->str:
    d = inspect.getdoc(o) or ''
    return textwrap.dedent(d).strip()

# ----------------------------------------------------------------------------------------------------------------------
# Entries

def _data_comment(mod, name:str)->str:
    "The comment on the line assigning `name` in `mod`'s source, or on the lines just above it"
    try: src = Path(mod.__file__).read_text()
    except Exception: return ''
    lines = src.splitlines()
    for node in ast.parse(src).body:
        tgts = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if not any(isinstance(t, ast.Name) and t.id == name for t in tgts): continue
        line = lines[node.lineno-1]
        m = re.search(r'#\s*(.*)$', line)
        if m and line.count('"') % 2 == 0 and line.count("'") % 2 == 0: return m.group(1).strip()
        above,i = [],node.lineno-2
        while i >= 0 and lines[i].lstrip().startswith('#') and not lines[i].lstrip().startswith('# %%'):
            above.insert(0, lines[i].lstrip()[1:].strip()); i -= 1
        return ' '.join(above)
    return ''

def _value(v)->str:
    r = _short(v)
    if len(r) <= 90: return r
    if isinstance(v, dict): return f"{{{', '.join(repr(k) for k in list(v)[:6])}{', ...' if len(v)>6 else ''}}} ({len(v)} entries)"
    return r[:87] + '...'

def _callable_entry(kind, module, name, f, drop_first, owner=None)->Entry:
    sig = inspect.signature(f)
    doc = _doc(f)
    if isinstance(f, functools.partial):  # e.g. `efficientnet_lite0 = partial(efficientnet_lite, 0)`
        fixed = [_short(a) for a in f.args] + [f'{k}={_short(v)}' for k,v in f.keywords.items()]
        doc = f"`{f.func.__name__}({', '.join(fixed)}, ...)`: {_doc(f.func)}"
    return Entry(kind, module, name, f, format_sig(sig, drop_first), doc, _params(f, sig, drop_first, owner))

def _member_entries(cls, module:str, prefix:str)->list[Entry]:
    "Public methods and properties `cls` defines itself (patched ones included)"
    res = []
    for a,v in vars(cls).items():
        if a.startswith('_') and a != '__call__': continue
        nm = f'{prefix}.{a}'
        if isinstance(v, property):
            res.append(Entry('property', module, nm, v, '', _doc(v)))
        elif isinstance(v, (staticmethod, classmethod)):
            res.append(_callable_entry('method', module, nm, v.__func__, isinstance(v, classmethod)))
        elif inspect.isfunction(v):
            res.append(_callable_entry('method', module, nm, v, True))
    return res

def _class_entry(cls, module:str, name:str)->Entry:
    kind = 'exception' if issubclass(cls, BaseException) else 'class'
    init,definer = _init_of(cls)
    if kind == 'exception' and not _is_lib(definer): sig,params = '', []
    else:
        try: s = inspect.signature(cls)
        except (TypeError, ValueError): s = inspect.Signature()
        # `inspect.signature(cls)` already drops `self`, so `_params` is given it as it is
        f = cls if is_dataclass(cls) else init
        sig,params = format_sig(s), _params(f, s, False, owner=None if _is_lib(definer) else definer)
    return Entry(kind, module, name, cls, sig, _doc(cls), params, _member_entries(cls, module, name))

def module_entries(modname:str)->list[Entry]:
    "The public names of `modname` (its `__all__`, then what it patches onto imported classes), as `Entry`s"
    from efflearn._modidx import d
    mod = importlib.import_module(modname)
    res = []
    for n in getattr(mod, '__all__', []):
        o = getattr(mod, n)
        if inspect.isclass(o): res.append(_class_entry(o, modname, n))
        elif callable(o) and not isinstance(o, (dict, list, tuple)): res.append(_callable_entry('function', modname, n, o, False))
        else:
            e = Entry('data', modname, n, o, doc=_data_comment(mod, n), value=_value(o))
            res.append(e)
    # methods patched onto a class the module imports (e.g. fastai's `Learner`)
    patched = {}
    for k in d['syms'].get(modname, {}):
        parts = k[len(modname)+1:].split('.')
        if len(parts) != 2 or parts[0] in getattr(mod, '__all__', []) or parts[0].startswith('_') or parts[1].startswith('_'): continue
        cls = getattr(mod, parts[0], None)
        if not inspect.isclass(cls) or parts[1] not in vars(cls): continue
        v = vars(cls)[parts[1]]
        f = v.fget if isinstance(v, property) else v
        if getattr(f, '__module__', None) != modname: continue
        nm = '.'.join(parts)
        if isinstance(v, property): patched[nm] = Entry('property', modname, nm, v, '', _doc(v))
        elif inspect.isfunction(v): patched[nm] = _callable_entry('method', modname, nm, v, True)
    return res + list(patched.values())

def public_api()->dict:
    "{module: [Entry]} for every efflearn module with public names, in notebook order"
    importlib.import_module(f'{LIB}.all')  # as users import it (`efflearn.callback.fine_tune` alone lacks fastai's `fit_one_cycle`)
    mods = sorted(lib_modules(), key=_nb_order)
    res = {m: module_entries(m) for m in mods}
    return {m:es for m,es in res.items() if es}

def all_entries(api:dict):
    "Every entry of `api`, class members included"
    for es in api.values():
        for e in es:
            yield e
            yield from e.members

def undocumented(api:dict)->list[str]:
    "'module.name: parameter' for every parameter written in efflearn's code that has no description"
    return [f'{e.fullname}: parameter `{p}`' for e in all_entries(api) for p in e.missing()]

# ----------------------------------------------------------------------------------------------------------------------
# MyST pages

def _esc(s:str)->str:
    "`s` safe as a one-line field value in MyST"
    return s.replace('\n', ' ')

def _directive(e:Entry, colons:int, nested=False)->str:
    "A py-domain directive for `e` (its members nested inside), fenced with `colons` colons"
    c = ':'*colons
    kind = {'function':'py:function', 'class':'py:class', 'exception':'py:exception', 'method':'py:method',
            'property':'py:property', 'data':'py:data'}[e.kind]
    nm = e.name.split('.')[-1] if nested else e.name
    lines = [f'{c}{{{kind}}} {nm}{e.sig}']
    if e.kind == 'data' and e.value: lines.append(f':value: {_esc(e.value)}')
    lines.append('')
    if e.doc: lines += [e.doc, '']
    if e.params:
        for p in e.params: lines.append(f':param {p.name.lstrip("*")}: {_esc(p.desc) or "(no description)"}')
        lines.append('')
    bare = [m for m in e.members if m.kind == 'method' and not m.doc and not m.params]
    for m in e.members:
        if m not in bare: lines += [_directive(m, colons-1, nested=True), '']
    if bare:  # a callback's event methods: no docstring, no parameters, one line for all
        lines += ['{.event-methods}', 'Callback events: ' + ', '.join(f'`{m.name.split(".")[-1]}()`' for m in bare), '']
    lines.append(c)
    return '\n'.join(lines)

def module_page(modname:str, entries:list, page:str='', title:str='', desc:str='')->str:
    "MyST source of the API reference page of `modname`; `page`: its notebook's doc (e.g. '../resize.ipynb')"
    out = [f'# {modname}', '']
    if desc: out += [desc, '']
    if page: out += [f'Guide and examples: [{title or page}]({page})', '']
    out += [f'```{{py:module}} {modname}', '```', '']
    for e in entries: out += [_directive(e, 5 if e.members else 3), '']
    return '\n'.join(out)
