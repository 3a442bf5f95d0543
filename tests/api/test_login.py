"""People log in to the coordinator's page with OpenID Connect, and act on it by its forms.

liaison's real app and a small real identity provider (`tests/support/oidc.py`) both serve on
loopback; a browser is played with httpx (its cookies kept by hand, as a browser keeps them for
127.0.0.1: httpx would not send `Secure` cookies over http), and once by headless Chromium.
Each refusal here is an attack: a forged or replayed answer of the provider, a form posted
from elsewhere, a session used after it ended.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from joserfc.jwk import RSAKey

from adapter.api.app import create_app
from adapter.auth import issue_token
from adapter.config import Settings
from adapter.directory.importer import import_path
from adapter.store.db import get_engine
from tests.api.conftest import FAST_PUSH, HOSPITAL, bearer, wait_for_status
from tests.support.letter_variants import letter_variant
from tests.support.oidc import Provider, User, running_provider
from tests.support.paths import FIXTURES
from tests.support.servers import free_port, serve_app
from tests.support.waiting import wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SESSION = "__Host-liaison-session"
# Claire MARTIN coordinates CPTS-PARIS-CENTRE in the local directory; the GP coordinates nothing
CLAIRE = User("claire", "810000000017", "Claire", "MARTIN")
GP = User("medecin", "801984758437", "Stéphane", "MEDIONI")
NOBODY = User("anonyme", None, "Jean", "SANSRPPS")


@dataclass
class Site:
    base: str
    idp: Provider
    app: FastAPI


@pytest.fixture
def site() -> Iterator[Site]:
    import_path(get_engine(), FIXTURES / "coordination" / "local_directory.csv")
    with running_provider() as idp:
        port = free_port()  # once the provider holds its own port
        base = f"http://127.0.0.1:{port}"
        idp.redirect_uris.append(f"{base}/login/callback")
        for user in (CLAIRE, GP, NOBODY):
            idp.add(user)
        settings = Settings(**{**FAST_PUSH, "public_base_url": base,
                               "oidc_issuer": idp.issuer, "oidc_client_id": idp.client_id,
                               "oidc_client_secret": idp.client_secret,
                               "oidc_acr_values": "eidas1"})
        app = create_app(settings)
        with serve_app(app, port=port, probe_path="/healthz"):
            yield Site(base, idp, app)


class Browser:
    """What a browser does that matters here: cookies of 127.0.0.1 kept and sent back (also
    `Secure` ones: browsers treat loopback as secure), redirects followed when asked."""

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}
        self.set_cookies: list[str] = []  # every Set-Cookie header seen
        self.http = httpx.Client(timeout=30)

    def request(self, method: str, url: str, **options: Any) -> httpx.Response:
        headers = {"Accept": "text/html", **options.pop("headers", {})}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        answer = self.http.request(method, url, headers=headers, **options)
        for header in answer.headers.get_list("set-cookie"):
            self.set_cookies.append(header)
            for name, morsel in SimpleCookie(header).items():
                if morsel["max-age"] == "0" or not morsel.value:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return answer

    def get(self, url: str, **options: Any) -> httpx.Response:
        return self.request("GET", url, **options)

    def post(self, url: str, **options: Any) -> httpx.Response:
        return self.request("POST", url, **options)

    def follow(self, answer: httpx.Response) -> httpx.Response:
        while answer.is_redirect:
            answer = self.get(urljoin(str(answer.url), answer.headers["location"]))
        return answer


def callback_url(browser: Browser, site: Site, login: str) -> str:
    """Open the page, be sent to the provider, log in there: where it sends the browser back."""
    answer = browser.get(f"{site.base}/coordination/page")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=")
    answer = browser.get(urljoin(site.base, answer.headers["location"]))
    assert answer.status_code == 303 and answer.headers["location"].startswith(site.idp.issuer)
    form = browser.get(answer.headers["location"])
    assert form.status_code == 200, form.text
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', form.text))
    sent = browser.post(f"{site.idp.issuer}/authorize", data={**fields, "login": login})
    assert sent.status_code == 302, sent.text
    return sent.headers["location"]


def log_in(browser: Browser, site: Site, login: str) -> httpx.Response:
    """The whole login: the answer where it lands."""
    return browser.follow(browser.get(callback_url(browser, site, login)))


def csrf_of(page: httpx.Response) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]


def test_a_declared_coordinator_logs_in_and_reads_the_page_without_a_bearer_token(
        site: Site) -> None:
    browser = Browser()
    page = log_in(browser, site, "claire")
    assert page.status_code == 200, page.text
    assert str(page.url) == f"{site.base}/coordination/page"
    assert "Sorties d'hospitalisation — CPTS-PARIS-CENTRE" in page.text  # her CPTS
    assert "Connecté(e) en tant que <strong>Claire MARTIN</strong>" in page.text
    session_cookie = next(c for c in browser.set_cookies if c.startswith(f"{SESSION}="))
    attributes = {part.strip().lower() for part in session_cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=lax", "path=/"} <= attributes
    assert f"max-age={8 * 3600}" in attributes
    # the login asked the provider for a code with PKCE S256, a nonce, the level of assurance
    (asked,) = site.idp.authorize_requests
    assert asked["code_challenge_method"] == "S256" and asked["nonce"] and asked["state"]
    assert asked["acr_values"] == "eidas1" and asked["scope"] == "openid scope_all"
    # an API client without a token is still answered 401 OperationOutcome
    api = httpx.get(f"{site.base}/coordination/page", headers={"Accept": "application/json"})
    assert api.status_code == 401 and api.json()["resourceType"] == "OperationOutcome"
    # the session opens the page only: the record's API still wants a bearer token
    record = browser.get(f"{site.base}/fhir/Patient", headers={"Accept": "application/json"})
    assert record.status_code == 401


def test_a_professional_who_coordinates_nothing_is_refused_in_a_readable_page(
        site: Site) -> None:
    refused = log_in(Browser(), site, "medecin")
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("text/html")
    assert "Accès refusé" in refused.text and "réservée aux coordinateurs" in refused.text
    assert 'action="/logout"' in refused.text  # a way out: log in as someone else


def test_a_person_the_provider_gives_no_national_id_for_is_told_so(site: Site) -> None:
    browser = Browser()
    refused = log_in(browser, site, "anonyme")
    assert refused.status_code == 403
    assert "Identité non reconnue" in refused.text and "idNat_PS" in refused.text
    assert SESSION not in browser.cookies


def _other_key(idp: Provider) -> None:  # same key id, another key: a forged signature
    idp.signing_key = RSAKey.generate_key(2048, parameters={"kid": idp.key.kid})


FORGERIES: dict[str, Callable[[Provider], None]] = {
    "nonce of another login": lambda idp: idp.tamper.update(nonce="another-login"),
    "ID token signed by another key": _other_key,
    "ID token for another client": lambda idp: idp.tamper.update(aud="another-client"),
    "ID token of another issuer": lambda idp: idp.tamper.update(iss="https://elsewhere.test"),
    "expired ID token": lambda idp: idp.tamper.update(iat=int(time.time()) - 900,
                                                      exp=int(time.time()) - 600),
    "ID token without expiry": lambda idp: idp.tamper.update(exp=None),
    "lower level of assurance": lambda idp: idp.tamper.update(acr="eidas0"),
    "userinfo about someone else": lambda idp: setattr(idp, "userinfo_sub", "someone-else"),
}


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_a_forged_answer_of_the_provider_opens_no_session(site: Site, forgery: str) -> None:
    FORGERIES[forgery](site.idp)
    browser = Browser()
    refused = log_in(browser, site, "claire")
    assert refused.status_code == 401, refused.text
    assert "Connexion refusée" in refused.text
    assert SESSION not in browser.cookies


def test_a_tampered_or_replayed_or_transplanted_answer_opens_no_session(site: Site) -> None:
    browser = Browser()
    back = callback_url(browser, site, "claire")
    query = parse_qs(urlsplit(back).query)
    tampered = f"{site.base}/login/callback?" + urlencode(
        {"code": query["code"][0], "state": query["state"][0] + "x"})
    assert browser.get(tampered).status_code == 401
    # the login is spent, even by a wrong answer: the right one no longer opens anything
    assert browser.get(back).status_code == 401
    assert SESSION not in browser.cookies
    # an answer meant for one browser, opened in another (login CSRF): refused
    victim, attacker = Browser(), Browser()
    back = callback_url(attacker, site, "claire")
    assert victim.get(back).status_code == 401 and SESSION not in victim.cookies
    # and its rightful browser opens its session once
    assert attacker.follow(attacker.get(back)).status_code == 200
    assert attacker.get(back).status_code == 401


def test_logout_ends_the_session_and_its_cookie_no_longer_opens_the_page(site: Site) -> None:
    browser = Browser()
    page = log_in(browser, site, "claire")
    stolen = dict(browser.cookies)
    # logging out takes the page's form: another site cannot log the person out
    assert browser.post(f"{site.base}/logout", data={"csrf": "forged"}).status_code == 403
    assert browser.get(f"{site.base}/coordination/page").status_code == 200
    out = browser.post(f"{site.base}/logout", data={"csrf": csrf_of(page)})
    assert out.status_code == 303 and SESSION not in browser.cookies
    assert "Vous êtes déconnecté(e)" in browser.follow(out).text
    replayed = httpx.get(f"{site.base}/coordination/page", headers={
        "Accept": "application/json", "Cookie": f"{SESSION}={stolen[SESSION]}"})
    assert replayed.status_code == 401
    again = Browser()
    again.cookies = stolen
    assert again.get(f"{site.base}/coordination/page").headers["location"].startswith("/login")


def test_a_session_ends_eight_hours_after_the_login_whatever_happens(site: Site) -> None:
    browser = Browser()
    assert log_in(browser, site, "claire").status_code == 200
    started = time.time()
    site.app.state.sessions.clock = lambda: started + 8 * 3600 - 60
    assert browser.get(f"{site.base}/coordination/page").status_code == 200
    site.app.state.sessions.clock = lambda: started + 8 * 3600 + 1
    ended = browser.get(f"{site.base}/coordination/page")
    assert ended.status_code == 303 and ended.headers["location"].startswith("/login")
    assert SESSION not in browser.cookies  # the browser is told to forget it


@pytest.fixture
def stay(site: Site) -> Iterator[Site]:
    """The example stay of test_review: its D+7 review is owned by CPTS-PARIS-CENTRE."""
    hospital = bearer(issue_token("hospital", organization=HOSPITAL))
    with httpx.Client(base_url=site.base, timeout=30) as client:
        sent = client.post("/discharge-letters", content=letter_variant(701),
                           headers={**hospital, "Content-Type": "application/hl7-cda+xml"})
        assert sent.status_code == 202, sent.text
        wait_for_status(client, sent.headers["Location"], hospital, "pushed")  # type: ignore[arg-type]
    yield site


def _review_status(site: Site, task: str) -> str:
    answer = httpx.get(f"{site.base}/fhir/Task/{task}",
                       headers=bearer(issue_token("system")))
    return str(answer.json()["status"])


def test_a_review_form_needs_the_sessions_csrf_token_and_liaisons_origin(stay: Site) -> None:
    browser = Browser()
    page = log_in(browser, stay, "claire")
    task = re.search(r'data-review="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    token = csrf_of(page)
    url = f"{stay.base}/coordination/page/review/{task}"
    answers = {"checks": ["gp-appointment", "letter-read"], "note": "RDV le 12"}
    other_session = Browser()
    other_token = csrf_of(log_in(other_session, stay, "claire"))
    for attack, (data, headers) in {
        "no csrf field": (answers, {}),
        "a wrong csrf field": ({**answers, "csrf": "x" * len(token)}, {}),
        "another session's token": ({**answers, "csrf": other_token}, {}),
        "posted from another site": ({**answers, "csrf": token},
                                     {"Origin": "https://attacker.example"}),
        "referred by another site": ({**answers, "csrf": token},
                                     {"Referer": "https://attacker.example/page"}),
    }.items():
        refused = browser.post(url, data=data, headers=headers)
        assert refused.status_code == 403, attack
        assert "Formulaire refusé" in refused.text, attack
    # no session at all (a cross-site form with no cookie): 401
    assert httpx.post(url, data={**answers, "csrf": token}).status_code == 401
    assert _review_status(stay, task) == "requested"

    done = browser.post(url, data={**answers, "csrf": token},
                        headers={"Origin": stay.base, "Referer": f"{stay.base}/coordination/page"})
    assert done.status_code == 303 and done.headers["location"] == "/coordination/page"
    assert _review_status(stay, task) == "completed"
    page = browser.follow(done)
    assert "faite le" in page.text and "par Coordination CPTS-PARIS-CENTRE" in page.text


def test_a_professional_with_a_session_and_its_token_still_cannot_complete_a_review(
        stay: Site) -> None:
    coordinator = Browser()
    page = log_in(coordinator, stay, "claire")
    task = re.search(r'data-review="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    gp = Browser()
    log_in(gp, stay, "medecin")  # 403 on the page, but a session is open
    logout_form = gp.get(f"{stay.base}/coordination/page")
    refused = gp.post(f"{stay.base}/coordination/page/review/{task}",
                      data={"checks": ["gp-appointment"], "csrf": csrf_of(logout_form)})
    assert refused.status_code == 403 and "Accès refusé" in refused.text
    assert _review_status(stay, task) == "requested"


@pytest.mark.browser
def test_a_coordinator_logs_in_and_completes_a_review_in_a_real_browser(
        stay: Site, tmp_path: Path) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian chromium is not installed (scripts/test-deps installs it)")
    from playwright.sync_api import sync_playwright

    screenshot = tmp_path / "coordinator-logged-in.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{stay.base}/coordination/page")
            assert page.url.startswith(f"{stay.idp.issuer}/authorize")  # sent to log in
            page.fill("#login", "claire")
            page.click("#connect")
            page.wait_for_url(f"{stay.base}/coordination/page")
            assert "Claire MARTIN" in page.locator("#signed-in").inner_text()
            cookie = next(c for c in page.context.cookies() if c["name"] == SESSION)
            assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Lax"
            form = page.locator("form.review-form").first
            form.get_by_label("Rendez-vous chez le médecin traitant pris").check()
            form.locator("textarea[name=note]").fill("IDEL passe chaque matin")
            form.get_by_role("button", name="Revue faite").click()
            page.wait_for_url(f"{stay.base}/coordination/page")
            review = page.locator("p.review").first
            assert "faite le" in review.inner_text()
            page.screenshot(path=str(screenshot), full_page=True)
            page.get_by_role("button", name="se déconnecter").click()
            assert "Vous êtes déconnecté(e)" in page.locator("#title").inner_text()
        finally:
            browser.close()
    assert screenshot.stat().st_size > 10_000
    artefacts = os.environ.get("LIAISON_TEST_ARTEFACTS")
    if artefacts:
        Path(artefacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(artefacts) / screenshot.name)


@pytest.mark.browser
def test_a_coordinator_follows_a_stay_from_its_notice_to_its_review_in_a_real_browser(
        site: Site, tmp_path: Path) -> None:
    """Warned before the discharge, the coordinator logs in and sees the planned stay; the
    letter arrives on the same stay and says a psychiatrist is missing; she adds one from the
    living directory to the care team and completes the D+7 review, without a bearer token."""
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian chromium is not installed (scripts/test-deps installs it)")
    from playwright.sync_api import sync_playwright

    from adapter.coordination import living_directory
    from adapter.store.db import session_scope
    from tests.api.test_discharge_notices import encounter, with_stay

    # the local list, with a psychiatrist near the patient's home who is free soon
    directory = tmp_path / "local_directory.csv"
    directory.write_text((FIXTURES / "coordination" / "local_directory.csv").read_text(
        encoding="utf-8").rstrip("\n") + "\n"
        "810000000058,Dr,LEROY,Marc,10,Médecin,SM42,Psychiatrie,member,CPTS-PARIS-CENTRE,,"
        "0145000005,marc.leroy@medecin.mssante.fr,,Cabinet du Champ-de-Mars,3 rue Cler,75007,"
        "Paris\n", encoding="utf-8")
    import_path(get_engine(), directory)
    with session_scope(get_engine()) as session:
        living_directory.save(session, living_directory.AvailabilityUpdate.from_json(
            {"idnat": "810000000058", "accepts_new_patients": "oui", "available_within": "24h",
             "postcodes": "75007"}), "test")
    hospital = bearer(issue_token("hospital", organization=HOSPITAL))
    system = bearer(issue_token("system"))
    shots = [tmp_path / f"walkthrough-{n}.png" for n in (1, 2, 3)]
    with httpx.Client(base_url=site.base, timeout=30) as client, \
            sync_playwright() as playwright:
        announced = client.post("/discharge-notices", json=encounter(901),
                                headers={**hospital, "Content-Type": "application/fhir+json"})
        assert announced.status_code == 202, announced.text
        wait_for(lambda: client.get("/fhir/Encounter", headers=system).json().get("total"),
                 "the notice reaching the record", timeout=30)
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{site.base}/coordination/page?vue=prevues")
            page.fill("#login", "claire")
            page.click("#connect")
            page.wait_for_url(f"{site.base}/coordination/page?vue=prevues")
            assert "sortie prévue le mercredi 9 décembre" in page.locator("main").inner_text()
            page.screenshot(path=str(shots[0]), full_page=True)

            letter = with_stay(letter_variant(901), "SEJ-901")
            sent = client.post("/discharge-letters", content=letter, headers={
                **hospital, "Content-Type": "application/hl7-cda+xml"})
            assert sent.status_code == 202, sent.text
            wait_for_status(client, sent.headers["Location"], hospital, "pushed")  # type: ignore[arg-type]
            page.goto(f"{site.base}/coordination/page")
            stay = page.locator("article.discharge").first
            assert "Sortie le mardi 3 décembre 2019" in stay.inner_text()  # the same stay, ended
            missing = stay.locator('[data-role="Psychiatre"]')
            missing.locator("select[name=idnat]").select_option("810000000058")
            page.screenshot(path=str(shots[1]), full_page=True)
            missing.locator("form.assign button").click()
            page.wait_for_load_state()
            stay = page.locator("article.discharge").first
            assert "Marc LEROY" in stay.locator("table.care-team").inner_text()
            assert not stay.locator('[data-role="Psychiatre"]').count()  # the role is filled
            review = stay.locator("form.review-form").first
            review.get_by_label("Rendez-vous chez le médecin traitant pris").check()
            review.get_by_role("button", name="Revue faite").click()
            page.wait_for_url(f"{site.base}/coordination/page")
            assert "faite le" in page.locator("p.review").first.inner_text()
            page.screenshot(path=str(shots[2]), full_page=True)
        finally:
            browser.close()
    assert all(shot.stat().st_size > 10_000 for shot in shots)
    artefacts = os.environ.get("LIAISON_TEST_ARTEFACTS")
    if artefacts:
        Path(artefacts).mkdir(parents=True, exist_ok=True)
        for shot in shots:
            shutil.copy(shot, Path(artefacts) / shot.name)
