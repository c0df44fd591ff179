"""The viewer in a real browser: JupyterLab on localhost, Debian's chromium driven by Playwright.

Starts ``jupyter lab`` (random free port, a token, no browser) on a temp root holding a small notebook that opens
:class:`sgglib.viewer.Viewer` on a few synthetic images with fake predictions, runs its cells, picks another image
in the widget's dropdown, and checks that the rendered picture changed and is an image. The screenshot is saved to
``reports/browser/viewer.png`` (reports/reference/viewer.png is a committed copy).

Skips (with the reason) when chromium or the Python ``playwright`` package is missing. Playwright's own browser
download does not work here: the test launches ``/usr/bin/chromium`` (``apt-get install chromium``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest

from sgglib.runs import reports_dir

CHROMIUM = os.environ.get("SGGLIB_CHROMIUM", "/usr/bin/chromium")
# python.md: without the background-networking flags chromium's connections are refused by the closed network
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

NOTEBOOK_CELLS = [
    """
from sgglib import data, prompts
from sgglib.viewer import Viewer

rows = [data.load_sgg("synthetic", split="val")[i] for i in range(4)]
records = []
for i, row in enumerate(rows):
    text = prompts.sft_target(row)
    if i == 1:  # a prediction with a wrong predicate, so the diff shows red and grey
        text = text.replace('"predicate": "next to"', '"predicate": "near"')
    records.append({"image_id": str(row["image_id"]), "completion": text if i != 2 else "no graph here",
                    "box_scale": [1000, 1000]})
""",
    "viewer = Viewer(rows, {'fake run': records})\nviewer.widget",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with status {proc.returncode} (see lab.log)")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer in {timeout:.0f} s")


@pytest.fixture()
def lab(tmp_path):
    """A JupyterLab server on a temp root with the viewer notebook; yields (base url, token)."""
    if not (Path(CHROMIUM).exists() and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api", reason="Python playwright not installed (pip install playwright)")
    root = tmp_path / "lab"
    root.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c.strip()) for c in NOTEBOOK_CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "viewer.ipynb")
    port, token = _free_port(), "sgglib-test-token"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
           f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={token}", "--ServerApp.open_browser=False",
           "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--LabApp.extension_manager=readonly"]  # no calls to PyPI or news feeds from a closed network
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root; jupyter refuses without this
        cmd.append("--allow-root")
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    try:
        _wait_http(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=90, proc=proc)
        # start the notebook's kernel session first: the page then attaches to it instead of asking which kernel
        body = json.dumps({"path": "viewer.ipynb", "type": "notebook", "name": "viewer.ipynb",
                           "kernel": {"name": "python3"}}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/sessions?token={token}", data=body,
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=60):
            pass
        yield f"http://127.0.0.1:{port}", token, tmp_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _picture(page):
    return page.locator(".jp-OutputArea-output .widget-image").first


def test_viewer_in_jupyterlab(lab):
    # run the cells, change the image through the widget, the picture changes and stays an image; screenshot
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    base, token, tmp = lab
    shot = reports_dir("browser", "viewer.png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp / "profile"), executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1280, "height": 1100})
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(90_000)
            page.goto(f"{base}/lab/tree/viewer.ipynb?token={token}")
            page.locator(".jp-Notebook").first.wait_for()
            dialog = page.locator(".jp-Dialog .jp-mod-accept")  # "Select Kernel", should the session be missed
            try:
                dialog.wait_for(timeout=3_000)
                dialog.click()
            except PlaywrightTimeout:
                pass
            page.get_by_role("menuitem", name="Run").click()
            page.get_by_text("Run All Cells", exact=True).click()
            picture = _picture(page)
            picture.wait_for()
            page.wait_for_function("el => el.naturalWidth > 0", arg=picture.element_handle())
            before_src, before_png = picture.get_attribute("src"), picture.screenshot()
            image_select = page.locator(".widget-dropdown", has_text="image").locator("select")
            options = image_select.locator("option").all_inner_texts()
            assert len(options) == 4
            image_select.select_option(label=options[1])
            page.wait_for_function("([el, old]) => el.src !== old && el.naturalWidth > 0",
                                   arg=[picture.element_handle(), before_src])
            after_png = picture.screenshot()
            assert after_png != before_png
            assert picture.evaluate("el => el.tagName") == "IMG" and picture.evaluate("el => el.naturalWidth") > 300
            status = page.locator(".widget-html").first.inner_text()
            assert "matched" in status  # image 1 parses: the diff's counts are shown
            news = page.locator(".jp-toast-button", has_text="No")  # JupyterLab's "official news?" toast
            if news.count():
                news.first.click()
                page.wait_for_timeout(500)
            picture.scroll_into_view_if_needed()
            page.screenshot(path=str(shot), full_page=True)
        except Exception:
            page.screenshot(path=str(shot.with_name("failure.png")), full_page=True)  # for the post-mortem
            raise
        finally:
            context.close()
    assert shot.stat().st_size > 10_000
    if os.environ.get("SGGLIB_UPDATE_REFERENCE"):  # refresh the committed copy by hand
        shutil.copy(shot, reports_dir("reference", "viewer.png"))
