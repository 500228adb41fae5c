#!/usr/bin/env python3
"""Drive the operations console (/console) in a real headless browser.

Usage: console_check.py --url http://127.0.0.1:PORT --screenshot PATH --token VIEWER_TOKEN
                        [--admin-token ADMIN_TOKEN --reprocess-id ID]

Uses Selenium with Debian's chromium and chromedriver (/usr/bin/chromium,
/usr/bin/chromedriver); it never downloads a driver. Every wait is a
WebDriverWait of at most 30 s.

1. Opens URL/console with no token stored: the page must show its token prompt
   ([data-auth=required], displayed), no data rows, and body[data-loaded] must
   not be "true". The prompt's text is reported as "without_token".
2. Types --token (the viewer token) into the token field and presses Enter,
   waits for body[data-loaded=true] and for the throughput chart to hold at
   least one point, then reads what the page rendered through its DOM contract:

     [data-chart=NAME]  data-points, data-series-sum   (NAME: throughput, error_rate,
                                                        ack_latency, sla)
     [data-table=NAME]  one tr[data-row] per row        (NAME: listeners, adapters,
                                                        bulk_jobs, workflows, quarantine)
     [data-ready]       readiness text

   and saves a PNG of the window (scrolled to the top) to PATH.
3. With --reprocess-id: clicks that quarantine row's Reprocess button with the
   viewer token (the page must show a refusal mentioning 403 or "read-only"),
   then replaces the token with --admin-token, waits for the data to load
   again, clicks again and waits for an outcome that is not a refusal.

Prints one JSON object:
  {"charts": {name: {"points": n, "series_sum": x}}, "tables": {name: rows},
   "ready_text": "...", "without_token": "...",
   "reprocess": null | {"viewer": "...", "admin": "..."}}
Exits 1 with a message on stderr (and the browser console log) on any failure,
including severe browser console errors, except the failed requests the
checks provoke on purpose (messages mentioning 401 or 403) and favicon.ico.
"""

from __future__ import annotations

import argparse
import json
import sys

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException, WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.keys import Keys
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
                "const e=document.querySelector('[data-error]');const a=document.querySelector('[data-auth]');"
                "return {loaded: document.body && document.body.dataset.loaded,"
                " auth: a ? a.dataset.auth : null, prompt: a && !a.hidden ? a.textContent.replace(/\\s+/g,' ').trim() : null,"
                " banner: e && !e.hidden ? e.textContent : null,"
                " ready: (document.querySelector('[data-ready]')||{}).textContent||null};"
            )
            raise CheckFailed(f"timed out after {TIMEOUT_S} s waiting for {what}; page state: {json.dumps(state)}") from None

    def check_console(self, when: str) -> None:
        """Fail on severe console entries other than the expected 401/403 answers."""
        def expected(msg: str) -> bool:
            return "favicon.ico" in msg or " 401" in msg or " 403" in msg
        severe = [e for e in self.drain_log() if e.get("level") == "SEVERE" and not expected(e.get("message", ""))]
        if severe:
            raise CheckFailed(f"browser console errors {when}: " + "; ".join(e.get("message", "") for e in severe))

    def loaded(self) -> bool:
        return self.js("return document.body && document.body.dataset.loaded === 'true'")

    def enter_token(self, token: str) -> None:
        field = self.d.find_element("css selector", "[data-token-input]")
        field.clear()
        field.send_keys(token + Keys.ENTER)

    def wait_loaded(self, what: str) -> None:
        def loaded_or_refused(_):
            s = self.js(
                "const a=document.querySelector('[data-auth]');"
                "return {loaded: document.body.dataset.loaded === 'true', refused: !!a && a.dataset.auth === 'required',"
                " text: a ? a.textContent.replace(/\\s+/g, ' ').trim() : ''};"
            )
            if s["refused"]:
                raise CheckFailed(f"{what}: the page shows its token prompt instead of data: {s['text']!r}")
            return s["loaded"]
        self.wait(f"body[data-loaded=true] {what}", loaded_or_refused)
        self.wait(
            f"the throughput chart to have data-points >= 1 {what}",
            lambda d: int(self.js("const c=document.querySelector('[data-chart=throughput]');return c?c.dataset.points||'0':'0'")) >= 1,
        )

    def js(self, script: str, *args):
        return self.d.execute_script(script, *args)

    def outcome(self, row_id: str):
        """The outcome shown in a quarantine row, skipping one already read (see forget_outcome)."""
        return self.js(
            "const r=[...document.querySelectorAll('[data-table=quarantine] tr[data-row]')].find(t=>t.dataset.id===arguments[0]);"
            "const o=r&&r.querySelector('[data-outcome]');"
            "return o&&!o.dataset.checkSeen?{kind:o.dataset.outcome,text:o.textContent}:null;",
            row_id,
        )

    def forget_outcome(self, row_id: str) -> None:
        """Mark the outcome element shown now, so the next wait sees only a new one."""
        self.js(
            "for(const o of document.querySelectorAll('[data-table=quarantine] tr[data-row] [data-outcome]'))"
            " if(o.closest('tr').dataset.id===arguments[0]) o.dataset.checkSeen='1';",
            row_id,
        )

    def wait_outcome(self, row_id: str, what: str) -> dict:
        return self.wait(
            f"the reprocess outcome in quarantine row {row_id!r} ({what})",
            lambda d: (lambda o: o if o and o["text"] and not o["text"].startswith("Reprocessing") else False)(self.outcome(row_id)),
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
            # 1. No token: a prompt, no data.
            prompt = page.wait(
                "the token prompt ([data-auth=required]) to be displayed",
                lambda d: next((e for e in d.find_elements("css selector", '[data-auth="required"]') if e.is_displayed()), False),
            )
            without_token = " ".join(prompt.text.split())
            if page.loaded():
                raise CheckFailed('without a token body[data-loaded] is "true"')
            shown = page.js(
                "return [...document.querySelectorAll('[data-table] tr[data-row]')].filter(r=>r.getClientRects().length).length;"
            )
            if shown:
                raise CheckFailed(f"without a token the page shows {shown} data rows")
            if "token" not in without_token.lower():
                raise CheckFailed(f"the prompt shown without a token does not ask for one: {without_token!r}")
            page.check_console("while showing the token prompt")

            # 2. The viewer token: everything, read-only.
            page.enter_token(args.token)
            page.wait_loaded("with the viewer token")
            if page.js("const a=document.querySelector('[data-auth]');return !!a && a.dataset.auth !== 'ok';"):
                raise CheckFailed("data loaded but the token prompt is still marked [data-auth] != ok")
            page.check_console("while loading the console with the viewer token")

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

            page.js("window.scrollTo(0, 0);")
            if not driver.save_screenshot(args.screenshot):
                raise CheckFailed(f"could not write the screenshot to {args.screenshot}")

            # 3. Reprocess: refused with the viewer token, done with the admin token.
            reprocess = None
            if args.reprocess_id is not None:
                rid = args.reprocess_id
                page.click_reprocess(rid)
                refused = page.wait_outcome(rid, "viewer token")
                viewer = " ".join(refused["text"].split())
                if "403" not in viewer and "read-only" not in viewer.lower():
                    raise CheckFailed(f"with the viewer token the page showed {viewer!r}, expected a refusal mentioning 403 or read-only")

                page.enter_token(args.admin_token)
                page.wait_loaded("with the admin token")
                page.forget_outcome(rid)
                page.click_reprocess(rid)
                done = page.wait_outcome(rid, "admin token")
                admin = " ".join(done["text"].split())
                if done["kind"] == "bad" or admin.startswith("Refused") or admin.startswith("Not sent"):
                    raise CheckFailed(f"with the admin token the reprocess failed: {admin!r}")
                reprocess = {"viewer": viewer, "admin": admin}
                page.check_console("while reprocessing")

            return {"charts": charts, "tables": tables, "ready_text": rendered["ready"],
                    "without_token": without_token, "reprocess": reprocess}
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
    ap.add_argument("--token", required=True, help="viewer token (read-only); the data is shown with it")
    ap.add_argument("--admin-token", help="admin token (with --reprocess-id)")
    ap.add_argument("--reprocess-id", help="quarantine row id: refused with --token, then reprocessed with --admin-token")
    args = ap.parse_args()
    if (args.reprocess_id is None) != (args.admin_token is None):
        ap.error("--reprocess-id and --admin-token go together")
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
