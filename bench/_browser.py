"""What the browser benchmarks share: Chromium's path, the long-task observer, min/median/max.

Imported by ``bench/ui_timeline_render.py`` (the timeline on a static page) and by
``bench/ui_page.py --browser`` (the whole flow-run page served by the dashboard). Playwright is
imported by the callers, only once ``missing()`` has said it is there.
"""

from __future__ import annotations

import importlib.util
import statistics
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# Debian's chromium package; Playwright drives it (never ``playwright install``).
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox"]
VIEWPORT = {"width": 1400, "height": 900}

# Installed with ``add_init_script`` before any page script: collects long tasks (main-thread
# work over 50 ms) from navigation start (``buffered``), keeping the observer so that
# LONGEST_TASK can take the entries not yet delivered to the callback.
LONGTASKS = """
window.__longtasks = [];
window.__longtaskObserver = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__longtasks.push(e.duration);
});
window.__longtaskObserver.observe({type: "longtask", buffered: true});
"""
# The longest long task so far in ms (0 when there was none), pending entries included.
LONGEST_TASK = """
(() => {
  const seen = window.__longtasks || [];
  const observer = window.__longtaskObserver;
  if (observer) for (const e of observer.takeRecords()) seen.push(e.duration);
  return Math.max(0, ...seen);
})()
"""


def missing() -> str | None:
    """Why the browser benchmarks cannot run here (Chromium or Playwright absent), else None."""
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (Debian's chromium package)"
    if importlib.util.find_spec("playwright") is None:
        return "Playwright for Python is missing (pip install playwright; its browser is not " \
               f"needed: {CHROMIUM} is used)"
    return None


def launch(playwright: object) -> object:
    """Headless Chromium from ``CHROMIUM`` through a started ``sync_playwright()``."""
    return playwright.chromium.launch(  # type: ignore[attr-defined]
        executable_path=CHROMIUM, args=LAUNCH_ARGS)


def sample(playwright: object, one: Callable[[Any], T], repeat: int) -> list[T]:
    """``one(browser)`` ``repeat`` times in one headless Chromium, after a warm-up call that
    takes the browser's own first-start costs out of the figures."""
    browser: Any = launch(playwright)
    try:
        one(browser)
        return [one(browser) for _ in range(repeat)]
    finally:
        browser.close()


def stats(samples: Iterable[float], suffix: str = "") -> dict[str, float]:
    """``{"min", "median", "max"}`` of ``samples`` (keys end with ``suffix``, e.g. "_ms")."""
    values = list(samples)
    return {f"min{suffix}": round(min(values), 2),
            f"median{suffix}": round(statistics.median(values), 2),
            f"max{suffix}": round(max(values), 2)}
