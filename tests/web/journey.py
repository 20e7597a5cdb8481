#!/usr/bin/python3
"""The web front ends clicked through in real headless Chromium (Selenium + chromedriver).

Run by web_browser_test (tests/web/browser_test.cc), which starts the services and the web stack
and passes their URL, the officer's credential and the expected texts. Two browsers: one is the
citizen's computer (portal) and the registration office, the other the citizen's phone (the
consent app). Every page is checked for JavaScript errors (CSP violations included: Chromium
logs them as errors); screenshots of the key screens go to --artifacts.
"""
import argparse
import base64
import hashlib
import http.server
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

LANGS = ["sr-Cyrl", "sr-Latn", "en"]
# The test e-service's pages: no favicon request (a 404 would count as a console error).
HEAD = '<!doctype html><meta charset=utf-8><link rel=icon href="data:,">'



class Failure(Exception):
    pass


class Browser:
    def __init__(self, name, base, artifacts, pages=False):
        """pages: every click on this browser submits a form or follows a link (the portal, the
        console, the gateway's sign-in, the test e-service), so click() waits for the next page;
        the app's clicks are handled by its script on the same page."""
        opts = webdriver.ChromeOptions()
        opts.binary_location = "/usr/bin/chromium"
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                    "--window-size=1200,1000", "--disable-gpu", "--lang=sr"):
            opts.add_argument(arg)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        # Debian's chromedriver, named: no driver download, no Selenium Manager.
        self.d = webdriver.Chrome(options=opts,
                                  service=ChromeService(executable_path="/usr/bin/chromedriver"))
        self.name = name
        self.base = base
        self.artifacts = artifacts
        self.shots = 0
        self.js_errors = []
        self.pages = pages

    def quit(self):
        self.d.quit()

    def go(self, path):
        self.d.get(self.base + path)
        self.check_log()

    def check_log(self):
        for entry in self.d.get_log("browser"):
            if entry.get("level") == "SEVERE":
                self.js_errors.append(f"{self.name}: {entry.get('message')}")

    def wait(self, cond, timeout=30, what=""):
        try:
            return WebDriverWait(self.d, timeout).until(cond)
        except Exception as e:
            self.shot("failure-" + (what or "wait"))
            self.check_log()
            raise Failure(f"{self.name}: waited {timeout}s for {what}: {e!r}; console errors: "
                          f"{self.js_errors}") from None

    def el(self, css):
        return self.d.find_element(By.CSS_SELECTOR, css)

    def visible(self, css, timeout=30):
        return self.wait(EC.visibility_of_element_located((By.CSS_SELECTOR, css)), timeout, css)

    def tap(self, css, timeout=30):
        """Clicks css once visible. The app re-renders its lists on live updates, so an element
        found a moment ago may be gone when clicked: find it again (a few times) then."""
        return self.fresh(lambda: self.visible(css, timeout).click())

    def read(self, css, timeout=30):
        """The text of css once visible, found again if a live update replaced it meanwhile."""
        return self.fresh(lambda: self.visible(css, timeout).text)

    @staticmethod
    def fresh(action, attempts=5):
        for attempt in range(attempts):
            try:
                return action()
            except StaleElementReferenceException:
                if attempt + 1 == attempts:
                    raise
                time.sleep(0.2)

    def fill(self, values):
        for name, value in values.items():
            field = self.el(f"[name='{name}']")
            field.clear()
            field.send_keys(value)

    def click(self, css):
        if not self.pages:
            self.el(css).click()
            self.check_log()
            return
        # A form's submit returns before the next page has loaded, and the old page may hold the
        # same ids (#account-name before and after a correction): mark this document, then wait
        # until a new one has replaced it and finished loading.
        self.d.execute_script("window.__qsignLeft = true")
        self.el(css).click()
        self.wait(lambda d: d.execute_script(
            "return !window.__qsignLeft && document.readyState === 'complete'"),
            30, f"the page after {css}")
        self.check_log()

    def shot(self, label):
        self.shots += 1
        path = os.path.join(self.artifacts, f"{self.name}-{self.shots:02d}-{label}.png")
        self.d.save_screenshot(path)
        return path

    def set_lang(self, lang):
        self.d.add_cookie({"name": "qsign_lang", "value": lang, "path": "/"})

    def text(self, css):
        return self.el(css).text


def side_by_side(browser, left, right, name):
    """One picture of two screenshots (the portal and the app), for the README."""
    page = os.path.join(browser.artifacts, name + ".html")
    with open(page, "w", encoding="utf-8") as f:
        f.write('<!doctype html><meta charset=utf-8><link rel=icon href="data:,">'
                '<body style="margin:0"><div id=pair style="display:inline-flex;gap:8px;'
                'padding:8px;background:#888">'
                f'<img src="{os.path.basename(left)}" style="width:588px">'
                f'<img src="{os.path.basename(right)}" style="width:588px"></div></body>')
    browser.d.get("file://" + page)
    path = os.path.join(browser.artifacts, name + ".png")
    browser.d.find_element(By.ID, "pair").screenshot(path)
    return path


def expect(cond, message):
    if not cond:
        raise Failure(message)


def registration_token(mail_dir, username, timeout=30):
    """The token of the newest registration link mailed to username (one .eml file a message)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        names = sorted(n for n in os.listdir(mail_dir) if n.endswith(".eml")) \
            if os.path.isdir(mail_dir) else []
        for name in reversed(names):
            with open(os.path.join(mail_dir, name), encoding="utf-8", errors="replace") as f:
                body = f.read()
            if f"To: <{username}>" not in body:
                continue
            m = re.search(r"[?]token=([A-Za-z0-9_-]{43})", body)
            if m:
                return m.group(1)
        time.sleep(0.2)
    raise Failure(f"no registration link for {username} arrived in {mail_dir}")


def journey(args, texts):
    t = texts["sr-Cyrl"]
    pc = Browser("portal", args.base, args.artifacts, pages=True)
    phone = Browser("app", args.base, args.artifacts)
    try:
        # 1. Registration at the portal (with a typo in the surname).
        pc.go("/register")
        pc.shot("register")
        pc.fill({"username": args.username, "given_name": "Ана", "surname": "Петровиц",
                 "national_id": args.national_id})
        pc.click("#register")
        pc.visible("#registered")
        pc.shot("registered")
        # The e-mailed link (identity's mail_drop_dir: the citizen's mailbox) finishes it.
        pc.go("/register/confirm?token=" + registration_token(args.mail_dir, args.username))
        pc.shot("confirm")
        pc.click("#confirm")
        pc.visible("#confirmed")

        # 2. The registration office proofs the identity; the code is shown once.
        pc.go("/office/login")
        pc.fill({"operator_id": args.operator_id, "secret": args.operator_secret})
        pc.click("#office-login")
        pc.visible("#q")
        pc.fill({"q": args.username})
        pc.click("#find")
        # The typo is corrected before proofing; the console says so and shows the new name.
        expect(pc.text("#account-name") == "Ана Петровиц", "office: the name as registered")
        pc.fill({"surname": "Петровић", "correct_note": "као у личној карти"})
        pc.shot("office-correct")
        pc.click("#correct")
        expect(pc.text(".flash") == t["office.correct.done"], f"office: {pc.text('.flash')!r}")
        expect(pc.text("#account-name") == "Ана Петровић", "office: the account's name")
        pc.fill({"document_number": "009876543", "place": "Београд"})
        pc.d.execute_script("document.getElementById('document_expiry').value='2031-01-01'")
        pc.shot("office-account")
        pc.click("#proof")
        code = pc.read("#activation-code")
        pc.shot("office-proofed")
        expect(len(code) >= 8, "office: an activation code")
        # The account's audit trail lists the correction and the proofing, newest first.
        pc.click("#back-to-account")
        pc.click("#go-audit")
        actions = [r.get_attribute("data-action")
                   for r in pc.d.find_elements(By.CSS_SELECTOR, "#audit .audit-record")]
        expect(actions[:2] == ["identity.proof", "identity.correct"], f"office: audit {actions!r}")
        pc.shot("office-audit")

        # 3. The consent app, on the phone: enrol with the code and a PIN.
        phone.go("/app")
        phone.visible("#enrol-form")
        phone.shot("enrol")
        phone.fill({"activation_code": code, "device_name": "Ана телефон",
                    "pin": args.pin, "pin2": args.pin})
        phone.click("#enrol-submit")
        phone.visible("#watching")
        phone.shot("enrolled")
        # The key is in IndexedDB and cannot be exported.
        extractable = phone.d.execute_async_script("""
            const done = arguments[0];
            const req = indexedDB.open('qsign-consent-app', 1);
            req.onsuccess = () => {
              const get = req.result.transaction('device').objectStore('device').get('me');
              get.onsuccess = () => done([get.result.key.extractable, get.result.key.algorithm.namedCurve]);
            };""")
        expect(extractable == [False, "P-256"], f"app: device key {extractable}")

        # 4. Log in at the portal; the same code on both screens; approve with the PIN pad.
        pc.go("/login")
        pc.fill({"username": args.username})
        pc.click("#login")
        portal_code = pc.read("#code")
        portal_shot = pc.shot("login-code")
        phone.tap("#requests .request")
        app_code = phone.read("#req-code")
        app_shot = phone.shot("login-request")
        expect(app_code.endswith(portal_code), f"codes differ: portal {portal_code}, app {app_code}")
        # The request in the app's language (the service's own line is shown below it).
        summary = phone.text("#req-text")
        expect(summary == t["app.login_summary"].replace("{code}", portal_code),
               f"app: the request's text {summary!r}")
        for digit in args.pin:
            phone.click(f"#pinpad .key[data-key='{digit}']")
        phone.click("#approve")
        pc.wait(EC.url_contains("/account"), 30, "the portal's account page after approval")
        account_url = pc.d.current_url
        pc.visible("#cert-state")
        pc.shot("account")
        side_by_side(pc, portal_shot, app_shot, "portal-and-app")
        pc.d.get(account_url)
        expect(pc.text("#name") == "Ана Петровић", "portal: the name")
        expect(pc.text("#cert-state") == t["cert.state.none"], "portal: no certificate yet")

        # 5. The contract, then issue.
        pc.go("/contract")
        pc.visible("#contract-text")
        pc.shot("contract")
        pc.click("#accept-contract")
        pc.tap("#go-issue")
        pc.visible("#confirm-text")
        pc.shot("issue-confirm")
        pc.click("#confirm")
        pc.visible("#cert-state")
        expect(pc.text("#cert-state") == t["cert.state.active"], "portal: certificate active")
        pc.visible("#renew-opens")
        pc.shot("issued")

        # 6. The office opens a PIN unblock (no PIN field: the officer never sees one); the user
        #    sets the new PIN in the app, which signs the PIN operation over a fresh challenge.
        pc.go("/office?q=" + urllib.parse.quote(args.username))
        expect(not pc.d.find_elements(By.CSS_SELECTOR, "[name='new_pin']"), "office: no PIN field")
        pc.fill({"note": "заборављен ПИН, поново проверен личном картом"})
        pc.click("#unblock")
        pc.visible(".flash")
        expect(pc.text(".flash") == t["office.unblock.done"], f"office: {pc.text('.flash')!r}")
        pc.shot("office-unblock")
        # The account's whole trail in the console: the unblock just opened and the app's
        # enrolment and login approval (consent), the contract and the certificate (lifecycle),
        # the proofing (identity), newest first.
        pc.click("#go-audit")
        rows = [(r.get_attribute("data-source"), r.get_attribute("data-action"))
                for r in pc.d.find_elements(By.CSS_SELECTOR, "#audit .audit-record")]
        for want in [("consent.audit_log", "pin.unblock"), ("consent.decisions", "login.approve"),
                     ("consent.audit_log", "device.enroll"),
                     ("lifecycle.audit_log", "certificate.issue"),
                     ("lifecycle.audit_log", "contract.accept"),
                     ("identity.audit_log", "identity.proof")]:
            expect(want in rows, f"office: {want} not in the audit trail {rows!r}")
        expect(rows[0] == ("consent.audit_log", "pin.unblock"), f"office: newest first {rows!r}")
        times = [r.get_attribute("datetime")
                 for r in pc.d.find_elements(By.CSS_SELECTOR, "#audit .audit-record time")]
        expect(times == sorted(times, reverse=True), f"office: audit times {times!r}")
        pc.shot("office-audit-all")
        phone.click("#pin-menu")
        phone.visible("#reset-pin-form")
        phone.fill({"reset_pin": args.new_pin, "reset_pin2": args.new_pin})
        phone.shot("app-pin-settings")
        phone.click("#reset-pin")
        phone.wait(lambda d: phone.text("#pin-status") == t["app.pin_reset"], 30, "the new PIN")
        phone.click("#pin-back")
        phone.visible("#watching")

        # 7. Sign a PDF: upload, approve on the app (it shows the name, pages and SHA-256) with
        #    the new PIN, download the signed PDF and check it with poppler's pdfsig.
        with open(args.pdf, "rb") as f:
            content = f.read()
        digest = hashlib.sha256(content).hexdigest()
        # The app shows what it signs: first the server's display fields are changed on their
        # way to the app (the document's name): it decodes the statement itself, refuses the
        # request and signs nothing. Then, without the change, the same request signs.
        tamper = phone.d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument",
                                         {"source": TAMPER_JS})
        phone.go("/app")
        phone.visible("#watching")
        pc.go("/sign")
        pc.el("#file").send_keys(args.pdf)
        # The level: B-T (a timestamp from the TSA) is the default; the user could choose.
        expect(pc.el("#level-b-t").is_selected(), "sign page: B-T is the default level")
        expect(pc.el("#level-b-lt").is_enabled() and pc.el("#level-b-b").is_enabled(),
               "sign page: B-LT and B-B can be chosen")
        pc.shot("sign-upload")
        pc.click("#upload")
        pc.visible("#sign-status")
        expect(pc.text("#file-sha256") == digest, "portal: SHA-256")
        pc.shot("sign-wait")
        phone.tap("#requests .request")
        phone.wait(lambda d: phone.text("#decide-status") == t["app.statement_mismatch"], 30,
                   "the app's refusal of a display that is not the statement")
        expect(not phone.el("#approve").is_enabled() and not phone.el("#deny").is_enabled(),
               "app: no approve or deny for a request whose display is not its statement")
        expect(phone.d.execute_script("return window.__qsignTampered") > 0,
               "the display fields were changed")
        phone.shot("tampered-refused")
        expect(phone.d.execute_script("return window.__qsignSigned") == 0,
               "app: nothing signed for the changed request")
        phone.d.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument",
                                {"identifier": tamper["identifier"]})
        phone.go("/app")
        phone.visible("#watching")
        phone.tap("#requests .request")
        docs = phone.read("#req-docs .document")
        expect(digest in docs and "ugovor" in docs and "2 " + t["app.pages"] in docs,
               f"app: the document's name, pages and SHA-256: {docs!r}")
        phone.shot("sign-request")
        for digit in args.new_pin:
            phone.click(f"#pinpad .key[data-key='{digit}']")
        phone.click("#approve")
        link = pc.visible("#download", timeout=40)
        pc.shot("signed")
        signed = fetch_with_cookies(pc, link.get_attribute("href"))
        signed_path = os.path.join(args.artifacts, "ugovor-signed.pdf")
        with open(signed_path, "wb") as f:
            f.write(signed)
        check = subprocess.run(["pdfsig", signed_path], capture_output=True, text=True)
        expect(check.returncode == 0 and "Signature is Valid." in check.stdout,
               f"pdfsig: {check.stdout}{check.stderr}")
        check_timestamp(args, signed, signed_path)
        args.pin = args.new_pin

        # 8. The OAuth flow from a small e-service page to a signature.
        if args.gateway:
            eservice(args, pc, phone)

        # 9. Every page in every language.
        for lang in LANGS:
            pc.set_lang(lang)
            phone.set_lang(lang)
            for path, css, key in [("/account", "h1", "account.title"),
                                   ("/contract", "h1", "contract.title"),
                                   ("/cert/issue", "h1", "cert.issue"),
                                   ("/cert/revoke", "h1", "cert.revoke"),
                                   ("/cert/revoke-all", "#confirm-text", "cert.revoke-all.confirm"),
                                   ("/register", "h1", "register.title"),
                                   ("/office", "#find", "office.find")]:
                pc.go(path)
                got = pc.read(css)
                expect(got == texts[lang][key], f"{lang} {path}: {got!r} != {texts[lang][key]!r}")
            pc.go("/account")
            pc.shot(f"account-{lang}")
            phone.go("/app")
            phone.visible("#watching")
            expect(phone.text("#idle") == texts[lang]["app.none"], f"{lang} /app")
            phone.shot(f"app-{lang}")
        pc.set_lang("sr-Cyrl")
        phone.set_lang("sr-Cyrl")
        phone.go("/app")
        phone.visible("#watching")

        # 10. Revoke all: the app says it is no longer active.
        pc.go("/cert/revoke-all")
        pc.shot("revoke-all-confirm")
        pc.click("#confirm")
        pc.visible("#revoked-all")
        pc.shot("revoked-all")
        phone.visible("#inactive", timeout=40)
        phone.shot("app-inactive")
        pc.go("/account")
        expect("/login" in pc.d.current_url, "portal: the session ended with revoke-all")

        # 11. Logged-out pages in every language (the login page, the app's enrolment, the office).
        for lang in LANGS:
            pc.set_lang(lang)
            for path, css, key in [("/login", "h1", "login.title"),
                                   ("/office/login", "h1", "office.login.title")]:
                pc.go(path)
                got = pc.read(css)
                expect(got == texts[lang][key], f"{lang} {path}: {got!r}")
        pc.check_log()
        phone.check_log()
        errors = pc.js_errors + phone.js_errors
        expect(not errors, "JavaScript errors:\n" + "\n".join(errors))
    finally:
        pc.quit()
        phone.quit()


# Installed in the phone's page before its script (CDP): changes the document names in the
# requests the server sends (/app/api/watch), and counts the app's signing calls.
TAMPER_JS = """
(() => {
  window.__qsignTampered = 0;
  window.__qsignSigned = 0;
  const original = window.fetch.bind(window);
  window.fetch = async (url, options) => {
    const path = String(url);
    if (path.endsWith('/decide') || path.endsWith('/approval-challenge')) window.__qsignSigned++;
    const res = await original(url, options);
    if (!path.endsWith('/watch') || !res.ok) return res;
    const body = await res.json();
    for (const r of body.requests || []) {
      for (const d of r.documents || []) { d.name = 'drugi-ugovor.pdf'; window.__qsignTampered++; }
    }
    return new Response(JSON.stringify(body),
                        { status: res.status, headers: { 'Content-Type': 'application/json' } });
  };
})();
"""


def der_children(der, start, end):
    """The DER TLVs in der[start:end]: (tag, header start, content start, content end)."""
    out = []
    i = start
    while i < end:
        tag, first = der[i], i
        length = der[i + 1]
        i += 2
        if length & 0x80:
            n = length & 0x7F
            length = int.from_bytes(der[i:i + n], "big")
            i += n
        out.append((tag, first, i, i + length))
        i += length
    return out


# id-aa-signatureTimeStampToken (1.2.840.113549.1.9.16.2.14), DER with its tag and length.
TIMESTAMP_ATTRIBUTE = bytes.fromhex("060b2a864886f70d010910020e")


def check_timestamp(args, pdf, pdf_path):
    """PAdES B-T, checked with openssl: the CMS in the PDF verifies over the signed byte ranges
    (openssl cms), and its signature timestamp token verifies over the signature value against
    qsign's root (openssl ts -verify)."""
    ranges = re.findall(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]", pdf)
    expect(ranges, "signed PDF: a /ByteRange")
    a, b, c, d = (int(x) for x in ranges[-1])
    cms = bytes.fromhex(pdf[a + b + 1:c - 1].decode("ascii"))
    cms = cms[:der_children(cms, 0, 4)[0][3]]  # Without the placeholder's zero padding.
    base = os.path.splitext(pdf_path)[0]
    with open(base + ".p7s", "wb") as f:
        f.write(cms)
    with open(base + ".signed-ranges", "wb") as f:
        f.write(pdf[a:a + b] + pdf[c:c + d])
    with urllib.request.urlopen(args.ca_root, timeout=30) as res:
        root = res.read()
    with open(base + ".root.der", "wb") as f:
        f.write(root)
    subprocess.run(["openssl", "x509", "-inform", "DER", "-in", base + ".root.der", "-out",
                    base + ".root.pem"], check=True)
    check = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", base + ".p7s",
         "-content", base + ".signed-ranges", "-CAfile", base + ".root.pem", "-purpose", "any",
         "-out", "/dev/null"], capture_output=True, text=True)
    expect(check.returncode == 0, f"openssl cms -verify of the PDF's CMS: {check.stderr}")
    # ContentInfo { oid, [0] { SignedData { ..., signerInfos SET { SignerInfo } } } }
    (_, _, ci, ci_end), = der_children(cms, 0, len(cms))
    _, content = der_children(cms, ci, ci_end)
    signed_data = der_children(cms, content[2], content[3])[0]
    signer_infos = der_children(cms, signed_data[2], signed_data[3])[-1]
    signer_info = der_children(cms, signer_infos[2], signer_infos[3])[0]
    fields = der_children(cms, signer_info[2], signer_info[3])
    signature = next(f for f in fields if f[0] == 0x04)
    unsigned = [f for f in fields if f[0] == 0xA1]
    expect(unsigned, "the PDF's CMS has unsigned attributes (B-T: the signature timestamp)")
    token = None
    for attr in der_children(cms, unsigned[0][2], unsigned[0][3]):
        oid, values = der_children(cms, attr[2], attr[3])
        if cms[oid[1]:oid[3]] == TIMESTAMP_ATTRIBUTE:
            first = der_children(cms, values[2], values[3])[0]
            token = cms[first[1]:first[3]]
    expect(token is not None, "the PDF's CMS has a signature timestamp token")
    with open(base + ".tst", "wb") as f:
        f.write(token)
    with open(base + ".signature-value", "wb") as f:
        f.write(cms[signature[2]:signature[3]])
    check = subprocess.run(
        ["openssl", "ts", "-verify", "-token_in", "-in", base + ".tst", "-data",
         base + ".signature-value", "-CAfile", base + ".root.pem"],
        capture_output=True, text=True)
    expect(check.returncode == 0 and "Verification: OK" in check.stdout,
           f"openssl ts -verify of the timestamp: {check.stdout}{check.stderr}")
    reply = subprocess.run(["openssl", "ts", "-reply", "-token_in", "-in", base + ".tst",
                            "-token_out", "-text"], capture_output=True, text=True)
    expect("Time stamp:" in reply.stdout, f"openssl ts -text: {reply.stdout}{reply.stderr}")


def fetch_with_cookies(browser, url):
    jar = "; ".join(f"{c['name']}={c['value']}" for c in browser.d.get_cookies())
    req = urllib.request.Request(url, headers={"Cookie": jar})
    with urllib.request.urlopen(req, timeout=30) as res:
        return res.read()


class EService:
    """A small e-service: signs the citizen in with qsign (authorization code + PKCE), then asks
    for a signature of one document's hash (scope=credential) and shows it."""

    def __init__(self, args):
        self.args = args
        self.gateway = args.gateway.rstrip("/") + "/csc/v2/"
        self.redirect = f"http://localhost:{args.eservice_port}/callback"
        self.document = "Захтев за упис / Zahtev za upis".encode("utf-8")
        self.digest = hashlib.sha256(self.document).digest()
        self.pkce = {}
        self.result = {}
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                url = urllib.parse.urlparse(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                if url.path == "/":
                    body = service.start_page()
                elif url.path == "/callback":
                    body = service.callback(query)
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = body.encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", args.eservice_port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def authorize_url(self, state, **extra):
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()) \
            .decode().rstrip("=")
        self.pkce[state] = verifier
        params = {"response_type": "code", "client_id": "e-uprava", "redirect_uri": self.redirect,
                  "code_challenge": challenge, "code_challenge_method": "S256", "state": state,
                  **extra}
        return self.gateway + "oauth2/authorize?" + urllib.parse.urlencode(params)

    def start_page(self):
        url = self.authorize_url("login", scope="service")
        return (HEAD + "<title>e-Управа</title><h1>e-Управа</h1>"
                f"<a id=sign-in href='{url}'>Пријава са qsign</a>")

    def post(self, method, body, token=None, form=False):
        headers = {"Content-Type": "application/x-www-form-urlencoded" if form
                   else "application/json"}
        if token:
            headers["Authorization"] = "Bearer " + token
        data = urllib.parse.urlencode(body).encode() if form else json.dumps(body).encode()
        req = urllib.request.Request(self.gateway + method, data=data, headers=headers)
        with urllib.request.urlopen(req, timeout=30) as res:
            return json.loads(res.read())

    def token(self, query):
        return self.post("oauth2/token", {
            "grant_type": "authorization_code", "code": query["code"],
            "redirect_uri": self.redirect, "code_verifier": self.pkce[query["state"]],
            "client_id": "e-uprava", "client_secret": self.args.eservice_secret}, form=True)

    def callback(self, query):
        if "code" not in query:
            return HEAD + f"<p id=error>{query.get('error')}</p>"
        token = self.token(query)
        if query["state"] == "login":
            listed = self.post("credentials/list", {}, token["access_token"])
            credential = listed["credentialIDs"][0]
            self.result["credential"] = credential
            hashes = base64.urlsafe_b64encode(self.digest).decode().rstrip("=")
            url = self.authorize_url("sign", scope="credential", credentialID=credential,
                                     numSignatures="1", hashes=hashes,
                                     hashAlgorithmOID="2.16.840.1.101.3.4.2.1",
                                     description="Захтев за упис")
            return (HEAD + f"<p id=signed-in>{credential}</p>"
                    f"<a id=sign href='{url}'>Потпиши захтев</a>")
        signed = self.post("signatures/signHash", {
            "credentialID": self.result["credential"],
            "hashes": [base64.b64encode(self.digest).decode()],
            "signAlgo": "1.2.840.10045.4.3.2"}, token["access_token"])
        info = self.post("credentials/info", {"credentialID": self.result["credential"],
                                              "certificates": "single"}, token["access_token"])
        self.result["signature"] = base64.b64decode(signed["signatures"][0])
        self.result["certificate"] = base64.b64decode(info["cert"]["certificates"][0])
        return HEAD + f"<p id=signature>{signed['signatures'][0]}</p>"

    def verify(self, directory):
        cert = os.path.join(directory, "eservice-signer.der")
        with open(cert, "wb") as f:
            f.write(self.result["certificate"])
        pub = subprocess.run(["openssl", "x509", "-inform", "DER", "-in", cert, "-pubkey",
                              "-noout"], capture_output=True, check=True).stdout
        paths = {n: os.path.join(directory, "eservice-" + n) for n in ("pub.pem", "d", "sig")}
        for name, data in (("pub.pem", pub), ("d", self.digest), ("sig", self.result["signature"])):
            with open(paths[name], "wb") as f:
                f.write(data)
        check = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey",
                                paths["pub.pem"], "-in", paths["d"], "-sigfile", paths["sig"]],
                               capture_output=True, text=True)
        expect(check.returncode == 0, f"openssl pkeyutl -verify: {check.stdout}{check.stderr}")


def eservice(args, pc, phone):
    service = EService(args)
    try:
        pc.d.get(f"http://localhost:{args.eservice_port}/")
        pc.shot("eservice")
        pc.click("#sign-in")
        pc.visible("#relying-party")
        expect(pc.text("#relying-party") == "e-Управа", "gateway: the e-service's name")
        pc.shot("oauth-signin")
        pc.fill({"username": args.username})
        pc.click("#continue")
        portal_code = pc.read("#code")
        pc.shot("oauth-code")
        phone.tap("#requests .request")
        expect(phone.read("#req-code").endswith(portal_code), "oauth: the same code")
        expect("e-Управа" in phone.read("#req-client"), "app: which e-service asks")
        phone.shot("oauth-login-request")
        for digit in args.pin:
            phone.click(f"#pinpad .key[data-key='{digit}']")
        phone.click("#approve")
        pc.visible("#signed-in", timeout=40)
        pc.shot("eservice-signed-in")
        pc.click("#sign")
        expect(pc.read("#description") == "Захтев за упис", "gateway: the description")
        pc.shot("oauth-credential")
        pc.click("#continue")
        pc.visible("#approve")
        phone.tap("#requests .request")
        expect("e-Управа" in phone.read("#req-docs"), "app: the e-service asks to sign")
        phone.shot("oauth-sign-request")
        for digit in args.pin:
            phone.click(f"#pinpad .key[data-key='{digit}']")
        phone.click("#approve")
        pc.visible("#signature", timeout=40)
        pc.shot("eservice-signed")
        service.verify(args.artifacts)
    finally:
        service.server.shutdown()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True)
    p.add_argument("--texts", required=True)
    p.add_argument("--artifacts", required=True)
    p.add_argument("--operator_id", required=True)
    p.add_argument("--operator_secret", required=True)
    p.add_argument("--username", default="ana.browser@example.rs")
    p.add_argument("--national_id", required=True)
    p.add_argument("--mail_dir", required=True)
    p.add_argument("--pin", default="240913")
    p.add_argument("--new_pin", default="13572468")
    p.add_argument("--pdf", required=True)
    p.add_argument("--ca_root", required=True, help="qsign's root certificate (DER) URL")
    p.add_argument("--gateway", default="")
    p.add_argument("--eservice_port", type=int, default=0)
    p.add_argument("--eservice_secret", default="")
    args = p.parse_args()
    os.makedirs(args.artifacts, exist_ok=True)
    with open(args.texts, encoding="utf-8") as f:
        texts = json.load(f)
    started = time.time()
    try:
        journey(args, texts)
    except Failure as e:
        print(f"journey: FAILED: {e}", file=sys.stderr)
        return 1
    print(f"journey: every step passed in {time.time() - started:.1f}s; "
          f"screenshots in {args.artifacts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
