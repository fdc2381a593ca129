"""Drive a node's web page in a real browser: Debian's headless Chromium through Playwright.

Used by tests/node/test_web_page.py and bench/web.py (like node/procs.py, a tool for checking
a node from outside, not part of the daemon). Playwright is a development dependency and is
imported only here; its own browser downloads are never used (they fail on machines without
internet access): Chromium is the system one, ``/usr/bin/chromium`` from the ``chromium``
package (the Makefile's ``setup`` installs it when missing).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path

CHROMIUM = os.environ.get("P2PMOA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]
"""With ``headless=True`` Playwright adds ``--headless``; the profile is a fresh temporary
``--user-data-dir`` per launch (``launch_persistent_context``)."""


def artifacts_dir() -> Path:
    """Where screenshots go: ``$P2PMOA_ARTIFACTS`` or ``./test-artifacts``."""
    d = Path(os.environ.get("P2PMOA_ARTIFACTS", "test-artifacts"))
    d.mkdir(parents=True, exist_ok=True)
    return d


@contextlib.contextmanager
def browser_page(viewport=(1280, 1000)):
    """Yield a Playwright page in a fresh headless Chromium; everything is closed on exit."""
    from playwright.sync_api import sync_playwright
    profile = tempfile.mkdtemp(prefix="p2pmoa-chromium-")
    try:
        with sync_playwright() as pw:
            ctx = pw.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
                viewport={"width": viewport[0], "height": viewport[1]})
            try:
                yield ctx.pages[0] if ctx.pages else ctx.new_page()
            finally:
                ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


# Installed before asking: records, for every trace item the page adds, its kind, the time
# since the click and whether the answer was still empty then (live trace vs. after the fact).
_OBSERVER_JS = """() => {
  window.__traceLog = [];
  window.__t0 = null;
  if (window.__traceObserver) return;  // one observer per page, however many questions
  const ans = document.getElementById('answer');
  window.__traceObserver = new MutationObserver((muts) => {
    for (const m of muts) for (const n of m.addedNodes) {
      if (n.classList && n.classList.contains('trace-item')) {
        window.__traceLog.push({kind: n.dataset.kind, ms: performance.now() - window.__t0,
                                answer_empty: ans.textContent === ''});
      }
    }
  });
  window.__traceObserver.observe(document.getElementById('trace-list'), {childList: true});
}"""


def ask_on_page(page, question: str, timeout_s: float, method: str = "") -> dict:
    """Type ``question``, press Ask, wait until the answer and the decision are shown.

    Returns ``answer``, ``query_id``, ``first_answer_s`` (click to first answer text, measured
    in the page), ``wall_s`` (click to the decision shown, measured here) and ``trace`` (the
    items the page added: kind, ms after the click, whether the answer was still empty).
    """
    page.evaluate(_OBSERVER_JS)
    page.fill("#question", question)
    if method:
        page.select_option("#method", method)
    t0 = time.perf_counter()
    page.evaluate("() => { window.__t0 = performance.now(); }")
    page.click("#ask")
    page.wait_for_selector("#answer[data-query-id], #answer-error:not([hidden])",
                           timeout=timeout_s * 1000)
    wall_s = time.perf_counter() - t0
    err = page.text_content("#answer-error") if page.is_visible("#answer-error") else ""
    first_ms = page.get_attribute("#answer", "data-first-ms")
    return {"answer": page.text_content("#answer") or "", "error": err,
            "query_id": page.get_attribute("#answer", "data-query-id"),
            "first_answer_s": None if first_ms is None else int(first_ms) / 1000.0,
            "wall_s": wall_s, "trace": page.evaluate("() => window.__traceLog")}
