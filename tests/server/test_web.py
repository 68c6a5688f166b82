"""The web page at ``/`` in real headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by
selenium; never a downloaded browser), against one real server with API keys and an LLM
(``FakeLLMServer``, a real HTTP server speaking OpenAI's protocol): the page asks for the key, answers a
question with citations and opens one in context, renders a document's ``<script>`` as text, uploads a
file (drag and drop), finds it, deletes it, and its status view follows a file changed on disk.

Screenshots go to ``$RAGFLOW_TEST_ARTIFACTS/web`` (default ``test-artifacts/web`` in the checkout);
``docs/images/web-page.png`` in the README is ``ask.png`` from here. Without Chromium these tests are
skipped with a line saying how to install it."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from ragflow.answer import LLMSettings
from ragflow.server.auth import ApiKey, Role, key_digest
from tests.fakes.llm_server import FakeLLMServer
from tests.server.conftest import DOCS, Served, serving

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
HOW = "apt-get update && apt-get install -y chromium chromium-driver (.ci/run does it)"
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip(
        f"BROWSER TESTS SKIPPED: no Chromium/chromedriver on PATH; to run them: {HOW}",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402  (only where Chromium is)
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("RAGFLOW_TEST_ARTIFACTS", REPO / "test-artifacts")) / "web"
ADMIN = "web-admin-secret-0123456789"
READER = "web-reader-secret-0123456789"
KEYS = [ApiKey("admin", Role.ADMIN, key_digest(ADMIN)), ApiKey("reader", Role.READ, key_digest(READER))]
EVIL_NAME = "<img src=x onerror=window.__pwned=1>.md"
EVIL_TEXT = (
    "Evil note about the obsidian beacon. <script>window.__pwned = 2</script> "
    '<img src=x onerror="window.__pwned = 3"> <b>not bold</b>\n'
)
FILES = {**DOCS, f"notes/{EVIL_NAME}": EVIL_TEXT}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with FakeLLMServer() as llm:
        settings = LLMSettings(llm.base_url, llm.api_key, llm.model)
        # every test opens the page without a key first (one refusal each): not a brute-force attempt
        options: dict[str, Any] = {"api_keys": KEYS, "llm": settings, "max_auth_failures": 1000}
        with serving(tmp_path_factory.mktemp("docs"), FILES, **options) as served:
            yield served


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_script_timeout(30)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(check: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except (StaleElementReferenceException, NoSuchElementException):  # the page redrew it
            result = None
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def by_id(driver: webdriver.Chrome, element_id: str) -> WebElement:
    return driver.find_element(By.ID, element_id)


def open_page(driver: webdriver.Chrome, served: Served, key: str = ADMIN) -> None:
    """Load the page in a fresh tab session and give it ``key`` when it asks."""
    driver.get(served.url + "/")
    driver.execute_script("sessionStorage.clear()")
    driver.get(served.url + "/")
    wait_for(lambda: by_id(driver, "key-panel").is_displayed(), "the page to ask for the key")
    by_id(driver, "key-input").send_keys(key)
    by_id(driver, "key-submit").click()
    wait_for(lambda: by_id(driver, "ready").text == "ready", "the page to say ready")


def click(element: WebElement) -> bool:
    element.click()
    return True


def tab(driver: webdriver.Chrome, name: str) -> None:
    by_id(driver, f"tab-{name}").click()


def ask(driver: webdriver.Chrome, question: str, mode: str = "answer", glob: str = "") -> None:
    tab(driver, "ask")
    by_id(driver, f"mode-{mode}").click()
    if glob:
        by_id(driver, "filters").click()
    field = by_id(driver, "glob")
    driver.execute_script("arguments[0].value = arguments[1]", field, glob)
    box = by_id(driver, "question")
    box.clear()
    box.send_keys(question)
    by_id(driver, "ask-button").click()


def hit_paths(driver: webdriver.Chrome) -> list[str]:
    wait_for(lambda: by_id(driver, "hits").is_displayed(), "the retrieved passages")
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#hits li.hit .where")]


def test_the_page_asks_for_a_key_and_the_api_refuses_what_it_would_show(
    browser: webdriver.Chrome, served: Served
) -> None:
    page = requests.get(served.url + "/", timeout=10)
    assert page.status_code == 200 and "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert "lantern" not in page.text  # the page itself holds no document data
    for path in ("/v1/status", "/v1/inputs", "/v1/passage?doc_id=guides/lantern.md&start=0&end=97"):
        assert requests.get(served.url + path, timeout=10).status_code == 401
    browser.get(served.url + "/")
    browser.execute_script("sessionStorage.clear()")
    browser.get(served.url + "/")
    wait_for(lambda: by_id(browser, "key-panel").is_displayed(), "the key prompt")
    by_id(browser, "key-input").send_keys("not-the-key-0123456789")
    by_id(browser, "key-submit").click()
    wait_for(lambda: "refused" in by_id(browser, "key-reason").text, "the wrong key to be refused")
    browser.save_screenshot(str(ARTIFACTS / "key.png"))
    open_page(browser, served, READER)
    assert "key: read" in by_id(browser, "who").text
    tab(browser, "documents")
    assert not by_id(browser, "drop").is_displayed()  # a read key cannot upload: no drop zone


def test_a_question_is_answered_with_citations_that_open_in_context(
    browser: webdriver.Chrome, served: Served
) -> None:
    open_page(browser, served)
    ask(browser, "Who lights the harbor lantern?")
    citations = wait_for(
        lambda: browser.find_elements(By.CSS_SELECTOR, "#citations li.citation"), "the citations"
    )
    answer = by_id(browser, "answer-text")
    assert "lantern is lit at dusk" in answer.text and "[1]" in answer.text
    assert answer.find_elements(By.CSS_SELECTOR, "a.cite")  # [1] links to its citation
    where = citations[0].find_element(By.CSS_SELECTOR, ".where").text
    assert "guides/lantern.md" in where and "chars 0–" in where
    assert "lantern is lit at dusk" in citations[0].find_element(By.TAG_NAME, "blockquote").text
    browser.save_screenshot(str(ARTIFACTS / "ask.png"))
    citations[0].find_element(By.CSS_SELECTOR, "button.open").click()
    wait_for(lambda: by_id(browser, "passage").is_displayed(), "the passage dialog")
    marked = by_id(browser, "passage-text")
    assert marked.tag_name == "mark" and "lantern is lit at dusk by the keeper" in marked.text
    assert "guides/lantern.md" in by_id(browser, "passage-title").text
    browser.save_screenshot(str(ARTIFACTS / "passage.png"))
    by_id(browser, "passage-close").click()
    ask(browser, "river", mode="retrieve", glob="**/notes/*.txt")
    paths = hit_paths(browser)
    assert paths and all("/notes/" in p and ".txt" in p and "dist " in p for p in paths)


def test_a_document_with_a_script_tag_renders_as_text(browser: webdriver.Chrome, served: Served) -> None:
    open_page(browser, served)
    ask(browser, EVIL_TEXT.strip(), mode="retrieve")
    wait_for(lambda: EVIL_NAME in "".join(hit_paths(browser)), "the evil document among the passages")
    quotes = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#hits blockquote")]
    assert any("<script>window.__pwned = 2</script>" in q and "<b>not bold</b>" in q for q in quotes)
    tab(browser, "documents")
    wait_for(
        lambda: any(EVIL_NAME in e.text for e in browser.find_elements(By.CSS_SELECTOR, "td.path")),
        "the evil file name listed as text",
    )
    assert not browser.find_elements(By.CSS_SELECTOR, "#hits b, #doc-table img, #hits script")
    assert browser.execute_script("return window.__pwned === undefined")
    browser.save_screenshot(str(ARTIFACTS / "script-as-text.png"))


def test_an_upload_becomes_searchable_and_a_delete_removes_it(
    browser: webdriver.Chrome, served: Served
) -> None:
    open_page(browser, served)
    tab(browser, "documents")
    text = "The saffron kite flies over the quartz harbor every solstice."
    browser.execute_script(
        """const data = new DataTransfer();
        data.items.add(new File([arguments[0]], "kite.md", {type: "text/markdown"}));
        const drop = new DragEvent("drop", {dataTransfer: data, bubbles: true});
        document.getElementById("drop").dispatchEvent(drop);""",
        text,
    )
    wait_for(lambda: "upload://kite.md: indexed" in by_id(browser, "uploads").text, "the drop to be indexed")
    ask(browser, text, mode="retrieve")
    assert "upload://kite.md" in hit_paths(browser)[0]
    tab(browser, "documents")
    delete = 'tr[data-doc="upload://kite.md"] button.delete'
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, delete), "the upload's row")
    browser.save_screenshot(str(ARTIFACTS / "documents.png"))
    wait_for(lambda: click(browser.find_element(By.CSS_SELECTOR, delete)), "a click on Delete")
    browser.switch_to.alert.accept()
    wait_for(
        lambda: not browser.find_elements(By.CSS_SELECTOR, 'tr[data-doc="upload://kite.md"]'),
        "the deleted upload to leave the list",
    )
    ask(browser, text, mode="retrieve")
    wait_for(lambda: "upload://kite.md" not in "".join(hit_paths(browser)), "the deleted upload to vanish")
    assert all(d["doc_id"] != "upload://kite.md" for d in served.store.inputs())


def test_the_status_view_follows_a_file_changed_on_disk(browser: webdriver.Chrome, served: Served) -> None:
    open_page(browser, served)
    tab(browser, "status")
    counted = wait_for(lambda: by_id(browser, "count-indexed").text, "the indexed count")
    assert "healthy" in by_id(browser, "sources").text  # an admin key sees the sources' health
    (served.root / "notes" / "fresh.md").write_text("A fresh note about the amber comet.")
    (served.root / "notes" / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    wait_for(
        lambda: int(by_id(browser, "count-indexed").text) == int(counted) + 1,
        "the indexed count to grow without a reload",
    )
    wait_for(lambda: by_id(browser, "count-error").text == "1", "the broken file counted as an error")
    wait_for(lambda: "broken.pdf" in by_id(browser, "errors").text, "the error's message")
    summary = wait_for(lambda: by_id(browser, "freshness-summary").text, "the freshness summary")
    assert "searchable" in summary and browser.find_elements(By.CSS_SELECTOR, "#freshness svg rect")
    browser.save_screenshot(str(ARTIFACTS / "status.png"))
