"""The documentation site: ``mkdocs build --strict`` passes, the generated pages (API reference,
CLI reference) hold what they should, and a real browser renders the home page, the API page of
``gpunet.get_model`` and a page with plots (Chromium, headless; skipped where it is not installed,
CI installs Debian's ``chromium``).

``GPUNET_DOCS_SCREENSHOTS=DIR`` keeps the screenshots in DIR to look at.
"""
from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e '.[docs]'")
pytest.importorskip("material", reason="the docs extra is not installed: pip install -e '.[docs]'")
pytest.importorskip("mkdocstrings", reason="the docs extra is not installed: pip install -e '.[docs]'")

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = next((p for p in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                             shutil.which("chromium-browser")) if p and os.path.exists(p)), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built once for this module, strictly (any warning fails the build)."""
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return out


def _text(page: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))


def test_the_site_builds_strictly_with_every_page(site):
    for page in ["index.html", "hub/index.html", "weights/index.html", "deploy/index.html",
                 "latency-table/index.html", "search/index.html", "train/index.html", "cli/index.html",
                 "cli-reference/index.html", "api/index.html", "architecture/index.html", "results/index.html",
                 "results/deploy/index.html"]:
        assert (site / page).is_file(), page
    assert not list(site.rglob("*.py")), "hooks must not be published"


def test_the_api_reference_is_generated_from_the_docstrings(site):
    text = _text(site / "api" / "index.html")
    for name in ["gpunet.get_model", "gpunet.query", "gpunet.load_deployed"]:
        assert name in text
    assert re.search(r"get_model\(\s*name", text)  # the signature
    assert "Build a hub model, optionally with weights." in text  # its docstring
    assert ":func:" not in text  # Sphinx roles are turned into plain code


def test_the_cli_reference_lists_every_command_from_the_parser(site):
    import argparse

    from gpunet.cli import build_parser

    text = _text(site / "cli-reference" / "index.html")
    progs = []
    todo = [build_parser()]
    while todo:
        parser = todo.pop()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                progs += [sub.prog for sub in action.choices.values()]
                todo += list(action.choices.values())
    assert len(progs) > 20
    missing = [p for p in progs if f"usage: {p} " not in text]
    assert not missing, f"not in the CLI reference: {missing}"


CHECK_SCRIPT = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  document.body.setAttribute("data-images", imgs.map(function (i) {
    return i.getAttribute("src") + "=" + i.naturalWidth + "x" + i.naturalHeight; }).join(" "));
  document.body.setAttribute("data-title", document.title);
  var plot = imgs.filter(function (i) { return /(^|\\/)img\\//.test(i.getAttribute("src")); })[0];
  if (!plot) { return; }
  // show the plot's section at the top of the screenshot: drop what comes before its heading
  var block = plot; while (block.parentNode && !block.parentNode.classList.contains("md-typeset")) { block = block.parentNode; }
  var head = block.previousElementSibling; while (head && !/^H[1-6]$/.test(head.tagName)) { head = head.previousElementSibling; }
  var first = head || block;
  while (first.previousElementSibling) { first.parentNode.removeChild(first.previousElementSibling); }
});
</script>"""


def _instrumented(page: Path) -> Path:
    """A copy of ``page`` beside it (same relative links) that records, once loaded, every image's
    natural size and the title on <body>, and brings the first plot to the top."""
    copy = page.with_name("_browser_check.html")
    copy.write_text(page.read_text(encoding="utf-8").replace("</body>", CHECK_SCRIPT + "</body>"), encoding="utf-8")
    return copy


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=3000", *args]
    env = dict(os.environ, HOME=str(tmp_path))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _screenshot(tmp_path: Path, page: Path, name: str) -> Path:
    shot = tmp_path / f"{name}.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri())
    assert shot.is_file() and shot.stat().st_size > 20_000, f"{name}: no screenshot or an empty one"
    keep = os.environ.get("GPUNET_DOCS_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
    return shot


def _not_blank(shot: Path) -> None:
    image = pytest.importorskip("PIL.Image")
    with image.open(shot) as im:
        colours = im.convert("L").resize((64, 100)).getcolors(maxcolors=64 * 100)
    assert colours is not None and len(colours) > 8, f"{shot.name} looks blank"


@needs_chromium
@pytest.mark.parametrize("page, expect", [
    ("index.html", ["gpunet", "Quick start", "The stages"]),
    ("api/index.html", ["gpunet.get_model", "get_model(", "Build a hub model, optionally with weights."]),
])
def test_a_browser_renders_the_page(site, tmp_path, page, expect):
    dom = _chromium(tmp_path, "--dump-dom", _instrumented(site / page).as_uri()).stdout
    text = html.unescape(re.sub(r"<[^>]+>", "", dom))
    for needle in expect:
        assert needle in text, f"{page}: {needle!r} not rendered"
    title = re.search(r'data-title="([^"]*)"', dom)
    assert title and title.group(1).strip(), f"{page}: the page script did not run"
    _not_blank(_screenshot(tmp_path, site / page, page.replace("/", "_").replace(".html", "")))


@needs_chromium
def test_a_browser_loads_the_plots(site, tmp_path):
    page = _instrumented(site / "deploy" / "index.html")
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    found = re.search(r'data-images="([^"]*)"', dom)
    assert found, "the page script did not run"
    sizes = dict(item.rsplit("=", 1) for item in found.group(1).split())
    plots = {src: size for src, size in sizes.items() if "img/pareto" in src}
    assert len(plots) == 2, sizes
    assert all(size != "0x0" for size in plots.values()), f"a plot did not load: {plots}"
    _not_blank(_screenshot(tmp_path, page, "deploy_plots"))
