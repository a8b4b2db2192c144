"""Benchmark the console's ranked list of 1,000 leads in headless Chromium beside two floors measured in the run.

    python bench/console.py [--runs 7] [--leads 1000] [--out result.json]

Needs the running stack with a champion and at least --leads consenting leads online (`leadscore demo` leaves
that). It starts `leadscore serve` on a free port, creates a manager's key of the default tenant, signs in through
the sign-in form in Debian's Chromium (Playwright, `executable_path`), then loads /console/leads --runs times and
reads the browser's navigation timing: when the page became interactive (`domInteractive`) and loaded. Floors, in
the same run: the server's own work as one `POST /rank` of the same leads over HTTP (what the page is built on), and
the browser's own work as the same HTML served from memory at the same origin (parse, style, layout of the 1,000
rows, no server work). The aim (issue #19): interactive in under 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.serving import start_server  # noqa: E402

TIMING = """() => { const n = performance.getEntriesByType('navigation')[0];
  return {response: n.responseEnd, interactive: n.domInteractive, content: n.domContentLoadedEventEnd,
          load: n.loadEventEnd, rows: document.querySelectorAll('table.leads tbody tr').length}; }"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="page loads measured (after one warm-up)")
    parser.add_argument("--leads", type=int, default=1000, help="leads the list holds (LEADSCORE_CONSOLE_LEADS)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON")
    args = parser.parse_args()
    import httpx
    from playwright.sync_api import sync_playwright

    from infra.config import Settings
    from serving.keys import create_key

    chromium = os.environ.get("LEADSCORE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        raise SystemExit(f"no Chromium at {chromium}: `bash infra/bootstrap.sh test` installs Debian's chromium")
    os.environ["LEADSCORE_CONSOLE_LEADS"] = str(args.leads)
    settings = Settings.load()
    key = create_key(settings, "default", rate_per_s=1e9, burst=10**9, description="bench/console.py")[0]
    proc, port = start_server(settings, 1)
    base = f"http://{settings.host}:{port}"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{base}/console/sign-in")
            page.get_by_label("Access token or API key").fill(key)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_load_state()
            if not page.url.endswith("/console/leads"):
                raise SystemExit(f"sign-in failed: {page.locator('main').inner_text()[:300]}")
            page.evaluate(TIMING)  # the warm-up load above
            shown = []
            for _ in range(args.runs):
                page.goto(f"{base}/console/leads", wait_until="load")
                shown.append(page.evaluate(TIMING))
            rows = shown[-1]["rows"]
            if rows < args.leads:
                raise SystemExit(f"the list held {rows} leads, not {args.leads}: ingest and materialize more first")
            html = page.content()
            leads = page.locator("table.leads tbody tr td:nth-child(2)").all_inner_texts()
            page.route(f"{base}/console/bench-floor", lambda route: route.fulfill(body=html,
                                                                                  content_type="text/html"))
            static = []
            for _ in range(args.runs):
                page.goto(f"{base}/console/bench-floor", wait_until="load")
                static.append(page.evaluate(TIMING))
            browser.close()
        body = {"leads": [{"lead_id": lead} for lead in leads], "rerank": True}
        ranked = []
        with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {key}"}) as client:
            client.post(f"{base}/rank", json=body)  # warm
            for _ in range(args.runs):
                t0 = time.perf_counter()
                reply = client.post(f"{base}/rank", json=body)
                ranked.append((time.perf_counter() - t0) * 1000)
                reply.raise_for_status()
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)
    report(shown, static, ranked, rows, args.out)


def report(shown: list[dict], static: list[dict], ranked: list[float], rows: int, out: Path | None) -> None:
    def med(runs: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    interactive, loaded, response = med(shown, "interactive"), med(shown, "load"), med(shown, "response")
    browser_floor, rank_floor = med(static, "interactive"), statistics.median(ranked)
    floor = rank_floor + browser_floor
    print(f"console list of {rows} leads, {len(shown)} loads in headless Chromium (medians, ms):")
    print(f"  page interactive (domInteractive)   {interactive:8.0f}   load event {loaded:8.0f}   "
          f"server response end {response:8.0f}")
    print(f"  floor: POST /rank of the same leads {rank_floor:8.0f}   same HTML from memory (interactive) "
          f"{browser_floor:6.0f}")
    print(f"  ratio interactive / (rank + browser floor) = {interactive / floor:.2f}; aim: interactive under "
          f"1,000 ms: {'met' if interactive < 1000 else 'missed'} (load {os.getloadavg()[0]:.1f})")
    if out:
        out.write_text(json.dumps({"shown": shown, "static": static, "rank_ms": ranked, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
