#!/usr/bin/python3
"""Drives the self-service page in Debian's headless Chromium.

Run by t/60-page.t, which starts nginx with the module and the simulator.
Does what a person does: reads the policy, asks for a refused name, asks for
an allowed one with a key made in the browser, watches the approvals while
the simulator approves one approver and then the other, and downloads the
certificate and the key.  It prints one JSON document of what it saw on
stdout; the .t file judges it (and checks the files with OpenSSL).
Screenshots of each state go to OUT/.
"""

import argparse
import json
import os
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def sim_approve(sim, rid, approver=None):
    body = json.dumps({"approver": approver} if approver else {}).encode()
    req = urllib.request.Request(f"{sim}/_sim/approve/{rid}", data=body,
                                 method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as res:
        return res.status


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True, help="the page's URL")
    ap.add_argument("--sim", required=True, help="the simulator's URL")
    ap.add_argument("--out", required=True, help="screenshots, downloads")
    ap.add_argument("--refused", required=True, help="a name outside policy")
    ap.add_argument("--name", required=True, help="a name the policy allows")
    ap.add_argument("--first", required=True, help="the approver to go first")
    ap.add_argument("--second", required=True, help="the other approver")
    ap.add_argument("--timeout", type=float, default=30)
    a = ap.parse_args()

    downloads = os.path.join(a.out, "downloads")
    os.makedirs(downloads, exist_ok=True)
    seen = {"steps": []}

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--disable-gpu", "--window-size=1000,1400",
                "--no-first-run", "--disable-extensions",
                "--disable-background-networking"):
        opts.add_argument(arg)
    opts.add_experimental_option("prefs", {
        "download.default_directory": downloads,
        "download.prompt_for_download": False,
    })
    drv = webdriver.Chrome(service=Service("/usr/bin/chromedriver"),
                           options=opts)
    drv.execute_cdp_cmd("Page.setDownloadBehavior",
                        {"behavior": "allow", "downloadPath": downloads})
    wait = WebDriverWait(drv, a.timeout, poll_frequency=0.1)
    el = lambda i: drv.find_element(By.ID, i)

    def shot(name):
        path = os.path.join(a.out, name + ".png")
        drv.save_screenshot(path)
        seen["steps"].append(name)

    def texts(list_id):
        # in one script: the page re-renders the lists as approvals arrive,
        # and elements found in one call may be gone in the next
        return drv.execute_script(
            "return Array.from(document.getElementById(arguments[0])"
            ".getElementsByTagName('li'))"
            ".filter((li) => !li.classList.contains('none'))"
            ".map((li) => li.textContent.trim());", list_id)

    try:
        drv.get(a.url)
        wait.until(lambda d: el("policy-list").is_displayed())
        seen["policy"] = el("policy-list").text
        seen["ku_boxes"] = [b.get_attribute("value") for b in
                            drv.find_elements(By.CSS_SELECTOR,
                                              "input[name=ku]")]
        shot("01-policy")

        # a name outside the policy: the reason next to the name field
        el("cn").send_keys(a.refused)
        el("submit").click()
        wait.until(lambda d: el("cn-err").text.strip())
        seen["refused_error"] = el("cn-err").text
        seen["refused_invalid"] = el("cn").get_attribute("aria-invalid")
        shot("02-refused")

        # an allowed name, key made in the browser
        el("cn").clear()
        el("cn").send_keys(a.name)
        el("submit").click()
        wait.until(lambda d: el("progress").is_displayed()
                   and texts("pending"))
        rid = el("req-id").text
        seen["id"] = rid
        seen["url_after_submit"] = drv.current_url
        seen["pending_before"] = texts("pending")
        seen["approved_before"] = texts("approved")
        shot("03-pending")

        # one approver: the page shows it without a reload
        time.sleep(1)           # the page's long poll is held by now
        sim_approve(a.sim, rid, a.first)
        t0 = time.time()
        wait.until(lambda d: a.first in texts("approved"))
        seen["partial_seconds"] = round(time.time() - t0, 2)
        seen["approved_partial"] = texts("approved")
        seen["pending_partial"] = texts("pending")
        shot("04-partially-approved")

        # a reload keeps the request (its id is in the URL)
        drv.refresh()
        wait.until(lambda d: el("progress").is_displayed()
                   and a.first in texts("approved"))
        seen["after_reload_id"] = el("req-id").text

        # the reload lost the key made before it: start once more so that
        # the key download is tested too; one approver, then the other
        drv.get(a.url)
        wait.until(lambda d: el("policy-list").is_displayed())
        el("cn").send_keys(a.name)
        el("submit").click()
        wait.until(lambda d: el("progress").is_displayed()
                   and el("req-id").text and el("req-id").text != rid)
        rid2 = el("req-id").text
        seen["id2"] = rid2
        # the page's long poll is held now: give it time to be
        wait.until(lambda d: texts("pending"))
        time.sleep(1)
        sim_approve(a.sim, rid2, a.first)
        t0 = time.time()
        wait.until(lambda d: a.first in texts("approved"))
        seen["partial2_seconds"] = round(time.time() - t0, 2)
        seen["approved_partial2"] = texts("approved")
        seen["pending_partial2"] = texts("pending")
        sim_approve(a.sim, rid2, a.second)
        t0 = time.time()
        wait.until(lambda d: el("result").is_displayed())
        seen["issued_seconds"] = round(time.time() - t0, 2)
        seen["state"] = el("progress").get_attribute("data-status")
        seen["cert_info"] = el("cert-info").text
        seen["curl"] = el("curl-line").text
        seen["key_link_shown"] = el("dl-key").is_displayed()
        shot("05-issued")

        for link in ("dl-pem", "dl-key", "dl-der"):
            el(link).click()
        # three finished files (Chromium writes .crdownload first)
        deadline = time.time() + a.timeout
        while time.time() < deadline:
            have = [f for f in os.listdir(downloads)
                    if not f.endswith(".crdownload")]
            if len(have) >= 3 and rid2 + ".key.pem" in have:
                break
            time.sleep(0.1)
        seen["downloads"] = sorted(os.listdir(downloads))

        # the first request, cancelled from its page
        drv.get("about:blank")      # a new load, not a fragment change
        drv.get(a.url + "#request=" + rid)
        wait.until(lambda d: el("cancel").is_displayed())
        el("cancel").click()
        wait.until(lambda d: el("progress").get_attribute("data-status")
                   == "CANCELLED" or el("cancel-err").text)
        seen["cancel_state"] = el("progress").get_attribute("data-status")
        seen["cancel_error"] = el("cancel-err").text
        shot("06-cancelled")

        # script errors; a refusal's 4xx is logged as a failed load, and
        # is what the page is there to show
        seen["console"] = [e["message"] for e in drv.get_log("browser")
                           if e.get("level") == "SEVERE"
                           and "Failed to load resource" not in e["message"]]
    except TimeoutException as e:
        seen["timeout"] = str(e.msg or "timeout") + " after " + \
            ",".join(seen["steps"])
        try:
            shot("99-timeout")
            seen["page_text"] = drv.find_element(By.TAG_NAME, "body").text
        except Exception:
            pass
    finally:
        drv.quit()

    json.dump(seen, sys.stdout)
    print()


if __name__ == "__main__":
    main()
