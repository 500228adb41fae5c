#!/usr/bin/env python3
"""Drive the operations console (/console) in a real headless browser.

Usage: console_check.py --url http://127.0.0.1:PORT --screenshot PATH
                        [--token TOKEN --reprocess-id ID]

Uses Selenium with Debian's chromium and chromedriver (/usr/bin/chromium,
/usr/bin/chromedriver); it never downloads a driver. Opens URL/console, waits
(up to 30 s) for the first full refresh (body[data-loaded=true]) and for the
throughput chart to hold at least one point, then reads what the page rendered
through its DOM contract:

  [data-chart=NAME]  data-points, data-series-sum   (NAME: throughput, error_rate,
                                                     ack_latency, sla)
  [data-table=NAME]  one tr[data-row] per row        (NAME: listeners, adapters,
                                                     bulk_jobs, workflows, quarantine)
  [data-ready]       readiness text

With --reprocess-id, clicks that quarantine row's Reprocess button with no token
entered (the page must show a refusal mentioning 401 or the token), then types
--token into the token field, clicks again and waits for the outcome.

Saves a PNG of the browser window to PATH and prints one JSON object:
  {"charts": {name: {"points": n, "series_sum": x}}, "tables": {name: rows},
   "ready_text": "...", "reprocess": null | {"without_token": "...", "with_token": "..."}}
Exits 1 with a message on stderr (and the browser console log) on any failure,
including severe browser console errors while the page loads.
"""

from __future__ import annotations

import argparse
import json
import sys

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException, WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

CHARTS = ("throughput", "error_rate", "ack_latency", "sla")
TABLES = ("listeners", "adapters", "bulk_jobs", "workflows", "quarantine")
TIMEOUT_S = 30


class CheckFailed(Exception):
    pass


def make_driver() -> webdriver.Chrome:
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                "--disable-gpu", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)


class Console:
    def __init__(self, driver: webdriver.Chrome):
        self.d = driver
        self.log: list[dict] = []

    def drain_log(self) -> list[dict]:
        try:
            new = self.d.get_log("browser")
        except WebDriverException:
            new = []
        self.log.extend(new)
        return new

    def wait(self, what: str, cond):
        def safe(d):
            try:
                return cond(d)
            except StaleElementReferenceException:
                return False
        try:
            return WebDriverWait(self.d, TIMEOUT_S, poll_frequency=0.2).until(safe)
        except TimeoutException:
            state = self.js(
                "const e=document.querySelector('[data-error]');"
                "return {loaded: document.body && document.body.dataset.loaded,"
                " banner: e && !e.hidden ? e.textContent : null,"
                " ready: (document.querySelector('[data-ready]')||{}).textContent||null};"
            )
            raise CheckFailed(f"timed out after {TIMEOUT_S} s waiting for {what}; page state: {json.dumps(state)}") from None

    def js(self, script: str, *args):
        return self.d.execute_script(script, *args)

    def outcome(self, row_id: str):
        return self.js(
            "const r=[...document.querySelectorAll('[data-table=quarantine] tr[data-row]')].find(t=>t.dataset.id===arguments[0]);"
            "const o=r&&r.querySelector('[data-outcome]');"
            "return o?{kind:o.dataset.outcome,text:o.textContent}:null;",
            row_id,
        )

    def click_reprocess(self, row_id: str):
        state = self.js(
            "const rows=[...document.querySelectorAll('[data-table=quarantine] tr[data-row]')];"
            "const r=rows.find(t=>t.dataset.id===arguments[0]);"
            "return {ids: rows.map(t=>t.dataset.id), row: !!r, button: !!(r&&r.querySelector('button[data-reprocess]'))};",
            row_id,
        )
        if not state["row"]:
            raise CheckFailed(f"no quarantine row with id {row_id!r} on the page (ids shown: {state['ids'][:20]})")
        if not state["button"]:
            raise CheckFailed(f"quarantine row {row_id!r} has no Reprocess button (already reprocessed?)")

        def find(_):
            return self.js(
                "const r=[...document.querySelectorAll('[data-table=quarantine] tr[data-row]')].find(t=>t.dataset.id===arguments[0]);"
                "const b=r&&r.querySelector('button[data-reprocess]');"
                "return b&&!b.disabled?b:null;",
                row_id,
            )
        button = self.wait(f"an enabled Reprocess button in quarantine row {row_id!r}", find)
        try:
            button.click()
        except StaleElementReferenceException:  # the table re-rendered under us: find it again
            self.wait(f"an enabled Reprocess button in quarantine row {row_id!r}", find).click()


def run(args) -> dict:
    base = args.url.rstrip("/")
    driver = make_driver()
    page = Console(driver)
    try:
        try:
            driver.get(base + "/console")
            page.wait("body[data-loaded=true]", lambda d: page.js("return document.body && document.body.dataset.loaded === 'true'"))
            page.wait(
                "the throughput chart to have data-points >= 1",
                lambda d: int(page.js("const c=document.querySelector('[data-chart=throughput]');return c?c.dataset.points||'0':'0'")) >= 1,
            )
            severe = [e for e in page.drain_log() if e.get("level") == "SEVERE" and "favicon.ico" not in e.get("message", "")]
            if severe:
                raise CheckFailed("browser console errors while loading the console: " + "; ".join(e.get("message", "") for e in severe))

            rendered = page.js(
                "const out={charts:{},tables:{},ready:null};"
                "for(const n of arguments[0]){const c=document.querySelector(`[data-chart=\"${n}\"]`);"
                " out.charts[n]=c?{points:c.dataset.points,sum:c.dataset.seriesSum}:null;}"
                "for(const n of arguments[1]){const t=document.querySelector(`[data-table=\"${n}\"]`);"
                " out.tables[n]=t?t.querySelectorAll('tr[data-row]').length:null;}"
                "const r=document.querySelector('[data-ready]');out.ready=r?r.textContent.trim():null;return out;",
                list(CHARTS),
                list(TABLES),
            )
            charts = {}
            for name in CHARTS:
                c = rendered["charts"].get(name)
                if c is None:
                    raise CheckFailed(f"no [data-chart={name}] element on the page")
                try:
                    charts[name] = {"points": int(c["points"]), "series_sum": float(c["sum"])}
                except (TypeError, ValueError):
                    raise CheckFailed(f"chart {name}: unreadable data-points/data-series-sum {c!r}") from None
            tables = {}
            for name in TABLES:
                if rendered["tables"].get(name) is None:
                    raise CheckFailed(f"no [data-table={name}] element on the page")
                tables[name] = rendered["tables"][name]
            if not rendered["ready"]:
                raise CheckFailed("no readiness text in [data-ready]")

            reprocess = None
            if args.reprocess_id is not None:
                rid = args.reprocess_id
                # No token: the page must refuse visibly.
                page.js(
                    "sessionStorage.clear();const i=document.querySelector('[data-token-input]');"
                    "i.value='';i.dispatchEvent(new Event('input',{bubbles:true}));"
                )
                page.click_reprocess(rid)
                refused = page.wait(
                    f"a refusal shown in quarantine row {rid!r}",
                    lambda d: (lambda o: o if o and o["text"] and not o["text"].startswith("Reprocessing") else False)(page.outcome(rid)),
                )
                without = refused["text"].strip()
                if "401" not in without and "token" not in without.lower():
                    raise CheckFailed(f"without a token the page showed {without!r}, expected a refusal mentioning 401 or the token")
                # With the token.
                field = driver.find_element("css selector", "[data-token-input]")
                field.clear()
                field.send_keys(args.token)
                page.click_reprocess(rid)
                done = page.wait(
                    f"the reprocess outcome in quarantine row {rid!r}",
                    lambda d: (lambda o: o if o and o["text"] and o["text"].strip() != without
                               and not o["text"].startswith("Reprocessing") else False)(page.outcome(rid)),
                )
                with_token = done["text"].strip()
                if done["kind"] == "bad":
                    raise CheckFailed(f"with the token the reprocess failed: {with_token!r}")
                reprocess = {"without_token": without, "with_token": with_token}

            page.js("window.scrollTo(0, 0);")
            if not driver.save_screenshot(args.screenshot):
                raise CheckFailed(f"could not write the screenshot to {args.screenshot}")
            return {"charts": charts, "tables": tables, "ready_text": rendered["ready"], "reprocess": reprocess}
        except CheckFailed:
            page.drain_log()
            dump_log(page.log)
            raise
        except WebDriverException as e:
            page.drain_log()
            dump_log(page.log)
            raise CheckFailed(f"browser error: {e.msg or e}") from None
    finally:
        driver.quit()


def dump_log(entries: list[dict]) -> None:
    print("--- browser console log ---", file=sys.stderr)
    if not entries:
        print("(empty)", file=sys.stderr)
    for e in entries:
        print(f"[{e.get('level')}] {e.get('source', '')}: {e.get('message', '')}", file=sys.stderr)
    print("--- end of browser console log ---", file=sys.stderr)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="admin server base URL, e.g. http://127.0.0.1:9090")
    ap.add_argument("--screenshot", required=True, help="where to write the PNG")
    ap.add_argument("--token", help="admin token (with --reprocess-id)")
    ap.add_argument("--reprocess-id", help="quarantine row id to reprocess through the page")
    args = ap.parse_args()
    if args.reprocess_id is not None and not args.token:
        ap.error("--reprocess-id needs --token")
    try:
        result = run(args)
    except CheckFailed as e:
        print(f"console_check: FAILED: {e}", file=sys.stderr)
        return 1
    except WebDriverException as e:  # e.g. the browser did not start
        print(f"console_check: FAILED: could not start or drive the browser: {e.msg or e}", file=sys.stderr)
        return 1
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
