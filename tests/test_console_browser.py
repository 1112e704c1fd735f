"""The console in a real browser (issue 18): Debian's chromium driven by Selenium against the
connector served by gunicorn on loopback, with the Vonage and MoEngage stand-ins. A person's
path through every page, the refusals, an axe accessibility check of each page, and no
horizontal scrolling at 375 px. Skipped, with the reason, when no browser is installed.

CONSOLE_SCREENSHOTS=1 also writes docs/console-overview.png and docs/console-message.png
(and their -phone twins), the README's screenshots.
"""

import json
import os
import re
import uuid
from pathlib import Path

import pgtest
import pytest
import requests
from conftest import AUTH, SIGNATURE_SECRET, inbound_body, sign, status_body
from consolekit import NUMBER, PASSWORD, USAGE
from gunicorn_proc import Connector
from standins import Answer

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,900"]  # fmt: skip
PAGES = ["Overview", "Messages", "Opt-outs", "Pending", "Health", "Setup"]
DOCS = Path(__file__).resolve().parents[1] / "docs"

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
axe_module = pytest.importorskip("axe_selenium_python", reason="axe-selenium-python missing")
pytestmark = pytest.mark.skipif(
    not (os.access(CHROMIUM, os.X_OK) and os.access(DRIVER, os.X_OK)),
    reason=f"no browser: install Debian's chromium and chromium-driver ({CHROMIUM}, {DRIVER})",
)
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request, tmp_path_factory, vonage_server, moengage_server):
    if request.param == "postgres" and not pgtest.URL:
        pytest.skip(pgtest.SKIP_REASON)
    tmp = tmp_path_factory.mktemp(f"console-{request.param}")
    env = {
        "CONSOLE_PASSWORD": PASSWORD,
        "DATABASE_PATH": str(tmp / "connector.db"),
        "DATABASE_URL": "",
        "TMPDIR": str(tmp),
        "VONAGE_API_URL": vonage_server.url,
        "MOENGAGE_DELIVERY_URL": f"{moengage_server.url}/sms/dlr/custom/42",
        "VONAGE_SIGNATURE_SECRET": SIGNATURE_SECRET,
        "VONAGE_FROM": "Acme",
        "VONAGE_TIMEOUT": "2",
        "PENDING_SWEEP_SECONDS": "3600",  # the pending events wait for "Push now"
    }
    if request.param == "postgres":
        with pgtest.fresh_schema() as url:
            yield from _serve({**env, "DATABASE_URL": url}, tmp)
    else:
        yield from _serve(env, tmp)


def _serve(env, tmp):
    connector = Connector(env, workers=2, threads=4).start(tmp / "gunicorn.log")
    try:
        yield connector
    finally:
        connector.kill()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(DRIVER))
    driver.set_page_load_timeout(30)
    driver.implicitly_wait(5)  # a loaded machine: elements of the next page may come late
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def traffic(server, vonage_server, moengage_server):
    """Known traffic over HTTP: 3 sends, one delivered, one failed (1250), a STOP; then two
    statuses MoEngage refuses, left pending."""
    vonage_server.reset()
    moengage_server.reset()
    uuids = [
        requests.post(server.url + "/", json={"to": NUMBER, "text": "hi", "client_ref": f"r{n}"},
                      headers=AUTH, timeout=10).json()["trackingId"]
        for n in range(3)
    ]  # fmt: skip
    _status(server, "delivered", uuids[0], **USAGE)
    _status(server, "rejected", uuids[1], error={"title": "1250", "detail": "Unroutable"})
    _post(server, "/webhooks/inbound", inbound_body("STOP", sender=NUMBER))
    moengage_server.script(*[Answer(503, {})] * 20)
    _status(server, "submitted", uuids[2])
    _status(server, "delivered", uuids[2])
    moengage_server.reset()
    return uuids


def _status(server, state, message_uuid, **extra):
    return _post(server, "/webhooks/status", status_body(state, message_uuid, **extra))


def _post(server, path, body):
    raw = json.dumps(body).encode()
    return requests.post(server.url + path, data=raw, headers=sign(raw), timeout=20)


# -- helpers --------------------------------------------------------------------------------
def follow(browser, element):
    """Click, and wait for the next page to replace this one and finish loading.

    The old page is marked and the wait is for a loaded document without the mark: selenium's
    staleness_of can raise chromium's "Node with given id does not belong to the document" (a
    plain WebDriverException) when it asks about the old element mid-navigation."""
    browser.execute_script("document.documentElement.dataset.leaving = '1'")
    element.click()
    WebDriverWait(browser, 20, ignored_exceptions=[WebDriverException]).until(_next_page_loaded)


def _next_page_loaded(browser):
    return browser.execute_script(
        "return document.readyState === 'complete' && !document.documentElement.dataset.leaving"
    )


def button(browser, label):
    return browser.find_element(By.XPATH, f"//button[text()='{label}']")


def open_page(browser, server, path="/console"):
    browser.get(server.url + path)


def sign_in(browser, server, password=PASSWORD):
    open_page(browser, server)
    browser.find_element(By.ID, "password").send_keys(password)
    follow(browser, button(browser, "Sign in"))


def heading(browser):
    return browser.find_element(By.TAG_NAME, "h1").text


def figure(browser, name):
    return browser.find_element(By.ID, name).text


def go(browser, name):
    follow(browser, browser.find_element(By.LINK_TEXT, name))
    assert heading(browser) == name


def accessible(browser):
    axe = axe_module.Axe(browser)
    axe.inject()
    results = axe.run()
    bad = [v for v in results["violations"] if v["impact"] in ("serious", "critical")]
    assert not bad, axe.report(bad)


def phone_width(browser, on=True):
    if on:
        browser.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": 375, "height": 812, "deviceScaleFactor": 2, "mobile": True},
        )
    else:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def no_horizontal_scroll(browser):
    width = browser.execute_script("return document.documentElement.scrollWidth")
    assert width <= 375, f"{heading(browser)} is {width} px wide at 375"


def screenshot(browser, name):
    if os.environ.get("CONSOLE_SCREENSHOTS") != "1":
        return
    height = browser.execute_script("return document.documentElement.scrollHeight")
    width = browser.execute_script("return window.innerWidth")
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": min(height, 2400), "deviceScaleFactor": 1,
         "mobile": width < 500},
    )  # fmt: skip
    DOCS.mkdir(exist_ok=True)
    browser.save_screenshot(str(DOCS / f"{name}.png"))


# -- the tests, in the order a person goes -----------------------------------------------------
def test_without_a_session_pages_send_to_sign_in_and_downloads_are_401(server, browser):
    open_page(browser, server, "/console/messages")
    assert heading(browser) == "Sign in" and browser.current_url.endswith("/console")
    assert browser.find_element(By.XPATH, "//label[text()='Password']")
    accessible(browser)
    answer = requests.get(server.url + "/console/optouts.csv", timeout=10)
    assert answer.status_code == 401 and "0000" not in answer.text


def test_x_forwarded_proto_from_a_trusted_proxy_makes_the_cookie_secure(server):
    """gunicorn trusts X-Forwarded-Proto from FORWARDED_ALLOW_IPS (loopback by default)."""
    plain = requests.get(server.url + "/console", timeout=10)
    assert "Secure" not in plain.headers["Set-Cookie"]
    proxied = requests.get(server.url + "/console", headers={"X-Forwarded-Proto": "https"},
                           timeout=10)  # fmt: skip
    assert "; Secure" in proxied.headers["Set-Cookie"]


def test_a_wrong_password_is_refused(server, browser):
    sign_in(browser, server, "not the password at all")
    assert heading(browser) == "Sign in"
    assert "Wrong password." in browser.find_element(By.CLASS_NAME, "error").text


def test_overview_after_known_traffic(server, browser, traffic):
    sign_in(browser, server)
    assert heading(browser) == "Overview"
    assert figure(browser, "sends") == "3" and figure(browser, "accepted") == "3"
    assert figure(browser, "delivered") == "2" and figure(browser, "failed") == "1"
    assert figure(browser, "rate") == "66.7%" and figure(browser, "opt-outs") == "1"
    assert figure(browser, "cost") == "0.0333 EUR" and figure(browser, "parts") == "2"
    assert int(figure(browser, "pending")) >= 1
    assert browser.find_element(By.CSS_SELECTOR, "svg.chart")
    assert NUMBER not in browser.page_source
    screenshot(browser, "console-overview")
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_every_page_is_accessible_and_fits_a_phone(server, browser, traffic):
    for name in PAGES:
        open_page(browser, server)
        go(browser, name)
        accessible(browser)
        phone_width(browser)
        browser.refresh()
        no_horizontal_scroll(browser)
        if name == "Overview":
            screenshot(browser, "console-overview-phone")
        phone_width(browser, on=False)


def test_search_a_tracking_id_and_see_its_timeline(server, browser, traffic):
    open_page(browser, server)
    go(browser, "Messages")
    box = browser.find_element(By.ID, "q")
    assert browser.find_element(By.XPATH, "//label[@for='q']").text == "Search"
    box.send_keys(traffic[0])
    follow(browser, button(browser, "Search"))
    follow(browser, browser.find_element(By.LINK_TEXT, traffic[0]))
    stages = [e.text for e in browser.find_elements(By.CLASS_NAME, "stage")]
    assert [s.lower() for s in stages[:3]] == ["send", "vonage", "answer"]
    assert "status" in [s.lower() for s in stages] and NUMBER not in browser.page_source
    accessible(browser)
    screenshot(browser, "console-message")
    phone_width(browser)
    browser.refresh()
    no_horizontal_scroll(browser)
    screenshot(browser, "console-message-phone")
    phone_width(browser, on=False)
    follow(browser, button(browser, "Reveal"))
    assert browser.find_element(By.ID, "revealed").text == NUMBER


def test_opt_a_number_in(server, browser, traffic):
    open_page(browser, server)
    go(browser, "Opt-outs")
    assert "********0000" in browser.page_source and NUMBER not in browser.page_source
    follow(browser, browser.find_element(By.PARTIAL_LINK_TEXT, "Opt in"))
    accessible(browser)
    follow(browser, button(browser, "Confirm opt-in"))
    assert "opted in" in browser.find_element(By.CSS_SELECTOR, "[role=status]").text
    go(browser, "Opt-outs")
    assert "No number has opted out" in browser.page_source


def test_a_form_without_its_csrf_token_is_403_and_changes_nothing(server, browser, traffic):
    open_page(browser, server)
    go(browser, "Pending")
    before = browser.find_element(By.ID, "pending-total").text
    browser.execute_script("document.querySelector('main input[name=csrf]').remove()")
    follow(browser, button(browser, "Push now"))
    assert heading(browser) == "Refused (403)"
    go(browser, "Pending")
    assert browser.find_element(By.ID, "pending-total").text == before != "0"


def test_push_pending_events(server, browser, traffic):
    open_page(browser, server)
    go(browser, "Pending")
    total = browser.find_element(By.ID, "pending-total").text
    follow(browser, button(browser, "Push now"))
    pushed = browser.find_element(By.ID, "pushed").text
    assert f"Pushed: {total} delivered to MoEngage" in pushed
    assert browser.find_element(By.ID, "pending-total").text == "0"


def test_sign_out_then_the_old_session_opens_nothing(server, browser, traffic):
    open_page(browser, server)
    cookie = browser.get_cookie("console_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    follow(browser, button(browser, "Sign out"))
    assert heading(browser) == "Sign in"
    copied = requests.get(server.url + "/console/messages", allow_redirects=False, timeout=10,
                          cookies={"console_session": cookie["value"]})  # fmt: skip
    assert copied.status_code == 303


def test_the_throttle_after_five_wrong_passwords(server, browser):
    wrong = 1  # test_a_wrong_password_is_refused's, within the minute
    while wrong < 5:
        sign_in(browser, server, f"wrong-{uuid.uuid4().hex}")
        assert "Wrong password." in browser.page_source, wrong
        wrong += 1
    sign_in(browser, server)  # the right one, too soon
    assert heading(browser) == "Refused (429)"
    assert "Try again in a minute" in browser.page_source
    assert re.search(r"Overview", browser.title) is None
