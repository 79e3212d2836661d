# Sphinx configuration of efflearn's documentation site. Not run by hand: `python docs/build.py` executes and
# prepares the notebooks, writes the API reference pages, then runs Sphinx with this file (`-c docs`).
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
try: import tomllib
except ImportError: import tomli as tomllib  # Python 3.10
_proj = tomllib.loads((ROOT/'pyproject.toml').read_text())['project']

project = _proj['name']
author = ', '.join(a['name'] for a in _proj.get('authors', []))
copyright = author
try:
    import efflearn
    release = version = efflearn.__version__
except Exception: release = version = ''

extensions = ['myst_nb', 'sphinx.ext.viewcode']
# source links only for what a module defines: following `EfficientNetLearner.fine_tune` (efflearn.learner) into
# efflearn.callback.fine_tune, where that function lives, made viewcode link that module's source to efflearn.learner
viewcode_follow_imported_members = False
root_doc = 'index'
exclude_patterns = ['_build', '**.ipynb_checkpoints']

# Notebooks arrive executed (docs/build.py runs them with execnb, as nbdev-test does): never execute here
nb_execution_mode = 'off'
nb_render_markdown_format = 'myst'   # show_doc's markdown output, parsed like the notebooks' own markdown
nb_merge_streams = True
nb_output_stderr = 'show'            # warnings the notebooks demonstrate (the training guards) are part of the docs
myst_enable_extensions = ['colon_fence', 'fieldlist', 'attrs_inline', 'attrs_block', 'deflist', 'dollarmath']
myst_heading_anchors = 4
# show_doc output is a heading inside a cell's output; notebooks also jump heading levels now and then
suppress_warnings = ['myst.header', 'misc.highlighting_failure']

add_module_names = False
smartquotes = False                  # descriptions quote code ('b0', 'final'): keep the quotes as written
python_display_short_literal_types = True
toc_object_entries_show_parents = 'hide'
python_maximum_signature_line_length = 100

# MathJax served with the site, not from a CDN: the files of the `sphinx-mathjax-offline` package (only those
# `tex-chtml.js` needs), copied into `_static/mathjax` after the build
_MATHJAX_PARTS = ['tex-chtml.js', 'input/tex/extensions', 'output/chtml/fonts', 'a11y', 'ui']
def _mathjax_dir():
    import importlib
    try: return Path(importlib.import_module('sphinx-mathjax-offline').__file__).parent/'static'/'mathjax'
    except ImportError: return None
if _mathjax_dir(): mathjax_path = 'mathjax/tex-chtml.js'

def _copy_mathjax(app, exc):
    src = _mathjax_dir()
    if exc is not None or src is None: return
    from sphinx.util.fileutil import copy_asset
    for part in _MATHJAX_PARTS:
        s,d = src/part, Path(app.outdir)/'_static'/'mathjax'/part
        if s.is_dir(): copy_asset(str(s), str(d))
        else: d.parent.mkdir(parents=True, exist_ok=True); d.write_bytes(s.read_bytes())

def setup(app): app.connect('build-finished', _copy_mathjax)

html_theme = 'furo'
html_favicon = '_static/favicon.svg'
html_title = f'efflearn {release}'.strip()
html_static_path = ['_static']
html_css_files = ['efflearn.css']
html_show_sourcelink = False
html_copy_source = False
html_last_updated_fmt = None
html_theme_options = {
    'navigation_with_keys': True,
}
