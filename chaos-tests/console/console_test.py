#!/usr/bin/env python3
"""Drives the admin console in headless Chromium against a running cluster.

Run by chaos-tests/tests/console.rs, which starts the cluster and passes, by
environment:

  SLUICE_ADMIN_URL     admin listener of the node whose console is opened
  SLUICE_ADMIN_TOKEN   the right admin token
  SLUICE_DATA_URL      the same node's data plane (traffic is sent there: the
                       console shows this node's metrics)
  SLUICE_ROUTE_PATH    a route's path template that proxies GET to a live upstream
  SLUICE_TRAFFIC_PATH  a request path matching it
  SLUICE_MEMBERS       how many members the cluster has
  SLUICE_SCREENSHOT_DIR       where console.png is saved (the test's temp dir)
  SLUICE_CONSOLE_SCREENSHOT   optional: also save the screenshot to this path
  CHROMIUM, CHROMEDRIVER      the browser and driver binaries

Every check polls the page until it holds or a deadline passes (never
sleep-then-assert). Exits 0 when every check passed; prints what it saw else.
"""

import os
import shutil
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

ADMIN = os.environ["SLUICE_ADMIN_URL"].rstrip("/")
TOKEN = os.environ["SLUICE_ADMIN_TOKEN"]
DATA = os.environ["SLUICE_DATA_URL"].rstrip("/")
ROUTE_PATH = os.environ.get("SLUICE_ROUTE_PATH", "/api/*")
TRAFFIC_PATH = os.environ.get("SLUICE_TRAFFIC_PATH", "/api/console")
MEMBERS = int(os.environ.get("SLUICE_MEMBERS", "3"))
SHOT_DIR = os.environ.get("SLUICE_SCREENSHOT_DIR", ".")
SHOT_EXTRA = os.environ.get("SLUICE_CONSOLE_SCREENSHOT")


def step(msg):
    print(f"console_test: {msg}", flush=True)


def wait(what, probe, timeout=30.0, every=0.2):
    """Polls `probe` until it returns something truthy; returns that. `probe`
    may raise (the element is not there yet); the last thing seen is reported."""
    deadline = time.monotonic() + timeout
    seen = None
    while True:
        try:
            got = probe()
            if got:
                return got
            seen = got
        except Exception as e:  # noqa: BLE001 - anything the page throws is "not yet"
            seen = f"{type(e).__name__}: {e}"
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last seen: {seen!r}")
        time.sleep(every)


def driver():
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("CHROMIUM") or shutil.which("chromium") or "chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
        "--no-first-run",
        "--disable-extensions",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver"))
    return webdriver.Chrome(options=opts, service=service)


def displayed(d, css):
    return d.find_element(By.CSS_SELECTOR, css).is_displayed()


def log_in(d, token):
    field = d.find_element(By.ID, "token")
    field.clear()
    field.send_keys(token)
    d.find_element(By.ID, "login-button").click()


def route_rps(d):
    cell = d.find_element(By.CSS_SELECTOR, f'#routes tr[data-path="{ROUTE_PATH}"] td.rps')
    return float(cell.text)


def send_traffic(n):
    for _ in range(n):
        with urllib.request.urlopen(DATA + TRAFFIC_PATH, timeout=5) as r:
            r.read()


def csp_violations(d):
    try:
        entries = d.get_log("browser")
    except Exception:  # noqa: BLE001 - logs are a bonus, not every driver has them
        return []
    return [
        e["message"]
        for e in entries
        if "Content Security Policy" in e.get("message", "") or "Refused to" in e.get("message", "")
    ]


def screenshot(d):
    os.makedirs(SHOT_DIR, exist_ok=True)
    path = os.path.join(SHOT_DIR, "console.png")
    d.save_screenshot(path)
    step(f"screenshot saved to {path}")
    if SHOT_EXTRA:
        os.makedirs(os.path.dirname(os.path.abspath(SHOT_EXTRA)), exist_ok=True)
        shutil.copyfile(path, SHOT_EXTRA)
        step(f"screenshot copied to {SHOT_EXTRA}")


def main():
    d = driver()
    try:
        run(d)
    except BaseException:
        try:
            d.save_screenshot(os.path.join(SHOT_DIR, "console-failed.png"))
            step(f"page at failure: {d.find_element(By.TAG_NAME, 'body').text!r}")
            step(f"failure screenshot in {SHOT_DIR}/console-failed.png")
        except Exception:  # noqa: BLE001
            pass
        raise
    finally:
        d.quit()


def run(d):
    started = time.monotonic()
    d.get(ADMIN + "/console")
    wait("the login form", lambda: displayed(d, "#login-form"))
    assert not displayed(d, "#dashboard"), "dashboard visible before login"
    step("login form shown")

    log_in(d, TOKEN + "-wrong")
    err = wait("the wrong-token error", lambda: displayed(d, "#login-error") and d.find_element(By.ID, "login-error").text)
    assert "Wrong admin token" in err, f"unexpected login error text: {err!r}"
    assert not displayed(d, "#dashboard"), "dashboard shown after a wrong token"
    step(f"wrong token refused: {err!r}")

    log_in(d, TOKEN)
    wait("the dashboard", lambda: displayed(d, "#dashboard"))
    assert not displayed(d, "#login"), "login form still shown after logging in"
    assert TOKEN not in d.current_url, "token leaked into the URL"

    def members():
        rows = d.find_elements(By.CSS_SELECTOR, "#members tbody tr.member")
        leaders = d.find_elements(By.CSS_SELECTOR, "#members tbody tr.is-leader")
        if len(rows) != MEMBERS or len(leaders) != 1:
            return None
        return (len(rows), leaders[0].get_attribute("data-id"), d.find_element(By.ID, "leader").text)

    n, leader_id, leader_text = wait(f"{MEMBERS} members and one leader", members)
    assert leader_text == f"node {leader_id}", f"leader summary {leader_text!r} != row of node {leader_id}"
    step(f"{n} members, leader node {leader_id}")

    def rps_moves():
        send_traffic(5)
        v = route_rps(d)
        return v if v > 0 else None

    rps = wait(f"requests/s of route {ROUTE_PATH} > 0", rps_moves, timeout=40.0, every=0.1)
    step(f"route {ROUTE_PATH}: {rps} req/s")
    if SHOT_EXTRA:
        # A fuller chart for the docs: a few more refreshes under traffic.
        until = time.monotonic() + 12
        while time.monotonic() < until:
            send_traffic(5)
            time.sleep(0.05)
    screenshot(d)

    violations = csp_violations(d)
    assert not violations, f"CSP violations in the browser console: {violations}"

    d.find_element(By.ID, "logout").click()
    wait("the login form after logout", lambda: displayed(d, "#login-form") and not displayed(d, "#dashboard"))
    stored = d.execute_script("return sessionStorage.getItem('sluice.adminToken')")
    assert stored is None, f"token still in sessionStorage after logout: {stored!r}"
    d.refresh()
    wait("the login form after a reload", lambda: displayed(d, "#login-form"))
    assert not displayed(d, "#dashboard"), "dashboard shown after logout + reload"
    step(f"logged out; all checks passed in {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"console_test: FAILED: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
