"""The documentation site: built from the notebooks by `python docs/build.py`, served on localhost, and opened in
Debian's Chromium, headless, through Playwright.

The site is built once per session into a temporary folder (a few minutes: every notebook is executed). To check an
already built site instead, point `EFFLEARN_DOCS_SITE` at it: `python docs/build.py && EFFLEARN_DOCS_SITE=_site pytest
tests/test_docs_site.py`. `EFFLEARN_DOCS_SHOTS=folder` saves screenshots of a tutorial page and an API page there."""

import functools, html.parser, http.server, json, os, re, subprocess, sys, threading
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get('EFFLEARN_CHROMIUM', '/usr/bin/chromium')
CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
                  '--disable-component-update', '--no-first-run', '--disable-sync', '--disable-quic']
# pages whose notebooks draw plots (every tutorial is added to these)
PLOTTING_PAGES = ['callback.resize.html', 'callback.schedule.html']

def _need(ok:bool, msg:str):
    "Skip with `msg` when `ok` is false, or fail when running under CI (`CI` set), where everything must be there"
    if ok: return
    if os.environ.get('CI'): pytest.fail(msg)
    pytest.skip(msg)

def _text(s:str)->str:
    "Text as a page shows it: markdown code marks and emphasis gone, whitespace collapsed"
    return ' '.join(re.sub(r'[`*]', '', s).split())

# ----------------------------------------------------------------------------------------------------------------------
# Fixtures: the site, a server, a browser

@pytest.fixture(scope='session')
def site(tmp_path_factory)->Path:
    given = os.environ.get('EFFLEARN_DOCS_SITE')
    if given:
        path = Path(given).resolve()
        assert (path/'index.html').exists(), f'EFFLEARN_DOCS_SITE={given} has no index.html: build it with `python docs/build.py --out {given}`'
        return path
    tmp = tmp_path_factory.mktemp('docs')
    r = subprocess.run([sys.executable, str(ROOT/'docs'/'build.py'), '--out', str(tmp/'site'), '--work', str(tmp/'work')],
                       cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '1')))
    assert r.returncode == 0, f'`python docs/build.py` failed:\n{r.stdout[-4000:]}\n{r.stderr[-12000:]}'
    return tmp/'site'

@pytest.fixture(scope='session')
def manifest(site)->dict:
    "The build's page list: {'pages': [{doc, html, title, section, src}]}"
    return json.loads((site/'site.json').read_text())

@pytest.fixture(scope='session')
def base_url(site):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.func.log_message = lambda *a, **k: None
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f'http://127.0.0.1:{srv.server_address[1]}/'
    srv.shutdown(); srv.server_close()

@pytest.fixture(scope='session')
def browser(tmp_path_factory):
    _need(Path(CHROMIUM).exists(), f'{CHROMIUM} not found: install Debian\'s Chromium to test the docs site '
                                   '(`sudo apt-get install chromium chromium-driver`), or set EFFLEARN_CHROMIUM to a Chromium binary')
    try: from playwright.sync_api import sync_playwright
    except ImportError: _need(False, 'playwright is not installed: `pip install -e ".[dev]"`')
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(tmp_path_factory.mktemp('chromium-profile')), executable_path=CHROMIUM,
                                                   headless=True, args=CHROMIUM_FLAGS, viewport={'width': 1280, 'height': 900})
        yield ctx
        ctx.close()

class Page:
    "A browser tab that records console errors and uncaught page errors"
    def __init__(self, ctx):
        self.p = ctx.new_page()
        self.errors = []
        self.p.on('console', lambda m: self.errors.append(f'console {m.type}: {m.text} ({m.location.get("url", "")})') if m.type == 'error' else None)
        self.p.on('pageerror', lambda e: self.errors.append(f'page error: {e}'))
    def goto(self, url):
        self.errors.clear()
        r = self.p.goto(url, wait_until='load')
        assert r is not None and r.ok, f'{url}: HTTP {r.status if r else "no response"}'
        return self.p

@pytest.fixture
def tab(browser):
    t = Page(browser)
    yield t
    t.p.close()

def _pages(manifest, section=None):
    return [p for p in manifest['pages'] if section is None or p['section'] == section]

# ----------------------------------------------------------------------------------------------------------------------
# The public API is documented (no site needed)

def test_every_public_parameter_has_a_description():
    sys.path.insert(0, str(ROOT/'docs'))
    import apiref
    gaps = apiref.undocumented(apiref.public_api())
    assert not gaps, ('public parameters without a description; add a docments comment (`name:type=default, # what it is`) '
                      'in the notebook that exports them:\n  ' + '\n  '.join(gaps))

def test_a_missing_description_is_named():
    sys.path.insert(0, str(ROOT/'docs'))
    import apiref
    def f(a:int, # described
          b=1
         ): ...
    f.__module__ = 'efflearn.fake'
    e = apiref._callable_entry('function', 'efflearn.fake', 'f', f, False)
    assert e.missing() == ['b']
    assert [p.desc for p in e.params] == ['described', '']

# ----------------------------------------------------------------------------------------------------------------------
# The site, in the browser

def test_site_has_every_page(site, manifest):
    srcs = {p['src'] for p in manifest['pages']}
    nbs = {p.relative_to(ROOT).as_posix() for p in (ROOT/'nbs').rglob('*.ipynb')
           if not any(o.startswith(('.', '_')) for o in p.relative_to(ROOT/'nbs').parts)}
    assert nbs <= srcs, f'notebooks without a page: {sorted(nbs - srcs)}'
    for p in manifest['pages']: assert (site/p['html']).exists(), p
    assert _pages(manifest, 'Library') and _pages(manifest, 'API reference')
    assert [p['src'] for p in _pages(manifest, 'Library')] == sorted(p['src'] for p in _pages(manifest, 'Library')), 'library pages out of order'

def test_every_page_renders(tab, base_url, manifest):
    problems = []
    for p in manifest['pages']:
        pg = tab.goto(base_url + p['html'])
        h1 = pg.locator('article h1').first.inner_text().strip().rstrip('#').strip() if pg.locator('article h1').count() else ''
        main = pg.locator('article[role=main]').inner_text() if pg.locator('article[role=main]').count() else ''
        if not h1: problems.append(f"{p['html']}: no h1")
        elif h1 not in pg.title(): problems.append(f"{p['html']}: title {pg.title()!r} lacks the heading {h1!r}")
        if len(main.strip()) <= len(h1) + 20: problems.append(f"{p['html']}: (almost) empty main content: {main[:200]!r}")
        problems += [f"{p['html']}: {e}" for e in tab.errors]
    shots = os.environ.get('EFFLEARN_DOCS_SHOTS')
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        for p in (_pages(manifest, 'Tutorials')[:1] + [q for q in manifest['pages'] if q['html'] == 'api/learner.html']):
            tab.goto(base_url + p['html']).screenshot(path=str(Path(shots)/(p['html'].replace('/', '_') + '.png')), full_page=True)
    assert not problems, '\n'.join(problems)

def test_navigation_reaches_every_page(tab, base_url, manifest):
    want = {urljoin(base_url, p['html']) for p in manifest['pages'] if p['section'] != 'API reference' or p['doc'] == 'api/index'}
    want |= {urljoin(base_url, p['html']) for p in _pages(manifest, 'API reference')}
    for start in ['index.html', _pages(manifest, 'Tutorials')[0]['html'] if _pages(manifest, 'Tutorials') else 'callback.resize.html', 'api/callback.resize.html']:
        pg = tab.goto(base_url + start)
        # the sidebar; the API reference's module pages hang below its index, whose page lists them
        hrefs = pg.eval_on_selector_all('.sidebar-tree a.reference, a.sidebar-brand', 'els => els.map(e => e.href.split("#")[0])')
        got = {h for h in hrefs}
        api_index = tab.goto(base_url + 'api/index.html')
        got |= set(api_index.eval_on_selector_all('article a.reference.internal', 'els => els.map(e => e.href.split("#")[0])'))
        missing = want - got
        assert not missing, f'from {start}, no navigation link to {sorted(missing)}'
    # clicking navigates: a library page, a tutorial, the API reference, and home
    pg = tab.goto(base_url + 'index.html')
    targets = [p for p in manifest['pages'] if p['html'] == 'callback.resize.html'] + _pages(manifest, 'Tutorials')[:1] + \
              [p for p in manifest['pages'] if p['doc'] == 'api/index']
    for p in targets:
        pg.locator('.sidebar-tree').get_by_role('link', name=p['title'], exact=True).first.click()
        pg.wait_for_load_state('load')
        assert pg.url.split('#')[0] == urljoin(base_url, p['html']), f"clicking {p['title']!r} went to {pg.url}"
        assert pg.locator('article h1').first.inner_text().strip().startswith(p['title'].split('`')[0].strip()[:10]), pg.url
    pg.locator('a.sidebar-brand').first.click()
    pg.wait_for_load_state('load')
    assert urlparse(pg.url).path in ('/', '/index.html')
    assert not tab.errors, tab.errors

def _search_finished(pg):
    "Wait for Sphinx's search to end: it adds results one by one, then writes its summary"
    pg.wait_for_function("() => /Search finished/.test(document.querySelector('#search-results .search-summary')?.textContent || '')",
                         timeout=30000)

def test_search_finds_api_and_pages(tab, base_url):
    pg = tab.goto(base_url + 'index.html')
    box = pg.locator('input.sidebar-search').first
    box.fill('ProgressiveResize')
    box.press('Enter')
    pg.wait_for_url('**/search.html?q=ProgressiveResize*')
    _search_finished(pg)
    links = pg.eval_on_selector_all('#search-results ul.search li a', 'els => els.map(e => e.href)')
    paths = [urlparse(h).path + ('#' + urlparse(h).fragment if urlparse(h).fragment else '') for h in links]
    assert any(p.endswith('/api/callback.resize.html#efflearn.callback.resize.ProgressiveResize') for p in paths), paths
    assert any(urlparse(h).path.endswith('/callback.resize.html') and '/api/' not in h for h in links), paths
    # the result leads to the entry
    pg.locator('#search-results ul.search li a[href*="api/callback.resize.html#efflearn.callback.resize.ProgressiveResize"]').first.click()
    pg.wait_for_load_state('load')
    assert pg.locator('[id="efflearn.callback.resize.ProgressiveResize"]').count() == 1
    # and a query loaded from the address works too
    pg = tab.goto(base_url + 'search.html?q=fit_sgdr')
    _search_finished(pg)
    assert any('api/learner.html' in h for h in pg.eval_on_selector_all('#search-results ul.search li a', 'els => els.map(e => e.href)'))
    assert not tab.errors, tab.errors

def test_plots_are_images(tab, base_url, manifest):
    must = PLOTTING_PAGES + [p['html'] for p in _pages(manifest, 'Tutorials')]
    problems, with_plots = [], []
    for p in manifest['pages']:
        pg = tab.goto(base_url + p['html'])
        imgs = pg.eval_on_selector_all('article img', '''els => els.map(e => ({src: e.getAttribute("src"),
            w: e.naturalWidth, complete: e.complete, output: !!e.closest(".cell_output")}))''')
        problems += [f"{p['html']}: image {i['src']} did not load" for i in imgs if not i['w']]
        if any(i['output'] and i['w'] > 0 and i['src'].endswith('.png') for i in imgs): with_plots.append(p['html'])
    problems += [f'{h}: no plot (a loaded PNG <img> in a cell output)' for h in must if h not in with_plots]
    assert not problems, '\n'.join(problems)

class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(); self.links,self.ids = [],set()
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get('id'): self.ids.add(a['id'])
        if tag == 'a' and a.get('name'): self.ids.add(a['name'])
        for k in ('href', 'src'):
            if a.get(k) and not (tag == 'link' and a.get('rel') in ('preconnect', 'dns-prefetch')): self.links.append(a[k])

def test_no_broken_internal_links(site):
    parsed = {}
    def parse(f):
        if f not in parsed:
            p = _Links(); p.feed(f.read_text(encoding='utf-8', errors='replace')); parsed[f] = p
        return parsed[f]
    broken = []
    pages = sorted(site.rglob('*.html'))
    assert len(pages) > 10
    for f in pages:
        for link in parse(f).links:
            u = urlparse(link)
            if u.scheme or u.netloc or link.startswith(('mailto:', 'javascript:', 'data:')): continue
            tgt = f if not u.path else (f.parent/unquote(u.path)).resolve()
            if tgt.is_dir(): tgt = tgt/'index.html'
            if not tgt.exists() or site.resolve() not in [tgt, *tgt.parents]:
                broken.append(f'{f.relative_to(site)}: {link} (no such file)'); continue
            if u.fragment and tgt.suffix == '.html' and unquote(u.fragment) not in parse(tgt).ids:
                broken.append(f'{f.relative_to(site)}: {link} (no #{u.fragment} there)')
    assert not broken, f'{len(broken)} broken internal links:\n' + '\n'.join(broken[:100])

def test_api_reference_lists_every_public_name(tab, base_url):
    sys.path.insert(0, str(ROOT/'docs'))
    import apiref
    api = apiref.public_api()
    problems = []
    for mod,entries in api.items():
        pg = tab.goto(base_url + f"api/{mod.split('.', 1)[1]}.html")
        found = pg.eval_on_selector_all('dl.py > dt[id]', '''els => Object.fromEntries(els.map(e => [e.id,
            {sig: e.innerText, body: e.nextElementSibling ? e.nextElementSibling.innerText : ""}]))''')
        text = pg.locator('article').inner_text()
        for e in apiref.all_entries({mod: entries}):
            bare = e.kind == 'method' and not e.doc and not e.params
            if bare:  # a callback's event method: named in the class's "Callback events" line
                if f"{e.name.split('.')[-1]}()" not in text: problems.append(f'{e.fullname}: not listed')
                continue
            d = found.get(e.fullname)
            if d is None: problems.append(f'{e.fullname}: no entry'); continue
            sig,body = _text(d['sig']), _text(d['body'])
            if e.name.split('.')[-1] not in sig: problems.append(f'{e.fullname}: name missing from {sig!r}')
            for p in e.params:
                if p.name.lstrip('*') not in sig: problems.append(f'{e.fullname}: parameter {p.name} missing from the signature {sig!r}')
                if not p.desc: problems.append(f'{e.fullname}: parameter {p.name} has no description')
                elif _text(p.desc) not in body: problems.append(f'{e.fullname}: description of {p.name} ({p.desc!r}) not shown')
            if e.doc and _text(e.doc.splitlines()[0])[:60] not in body: problems.append(f'{e.fullname}: docstring not shown')
    assert not tab.errors, tab.errors
    assert not problems, '\n'.join(problems)
