"""The console at /console in a real browser: Playwright driving Debian's Chromium
(scripts/install_chromium.sh; Playwright never downloads a browser here) against a live
server with two projects' keys and a scripted upstream.

Screenshots of the main pages go to $CONTINUO_SCREENSHOTS_DIR when it is set
(`CONTINUO_SCREENSHOTS_DIR=docs/images pytest tests/test_console_browser.py -k screenshots`),
else to the test's temporary folder.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from continuo.api.app import create_app
from continuo.config import load_config
from continuo.core.keys import hash_key
from tests.support.configs import write_config
from tests.support.fake_chat import Reply
from tests.support.requires import require, unavailable
from tests.support.servers import ServerThread
from tests.support.waits import wait_until

sync_api = require("playwright.sync_api", "the browser tests need the playwright package")
expect = sync_api.expect

CHROMIUM = Path(os.environ.get("CONTINUO_CHROMIUM", "/usr/bin/chromium"))
if not CHROMIUM.exists():
    unavailable(f"no Chromium at {CHROMIUM} (scripts/install_chromium.sh installs Debian's)")

ALPHA_KEY = "sk-console-alpha-0001"
BETA_KEY = "sk-console-beta-0002"
KEYS = "".join(
    f'[[keys]]\nproject = "{p}"\nhash = "{hash_key(k)}"\n\n' for p, k in [("alpha", ALPHA_KEY), ("beta", BETA_KEY)]
)
# A 1x1 PNG, inline.
PIXEL = "data:image/png;base64," + (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


# A refused API call the page handles (a wrong key, another project's id) is logged so.
EXPECTED_REFUSAL = "Failed to load resource: the server responded with a status of 4"


@dataclass
class Store:
    """What the module's server holds: alpha's responses, and beta's one."""

    url: str
    picnic: str  # the root of a chain with two branches
    sandwiches: str  # a branch
    indoors: str  # the other branch
    weather_call: str  # a function call (model gpt-other, metadata team=blue)
    weather_answer: str  # its output's turn, with reasoning
    picture: str  # an input with an inline image and a remote one
    beta_secret: str


def sdk(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


@pytest.fixture(scope="module")
def store(upstream, tmp_path_factory) -> Iterator[Store]:
    tmp = tmp_path_factory.mktemp("console")
    config = write_config(
        tmp / "console.toml",
        database_url=f"sqlite:///{tmp / 'console.db'}",
        upstream_url=upstream.url,
        extra="[background]\npoll_seconds = 0.2\n\n" + KEYS,
    )
    server = ServerThread(create_app(load_config(config))).start()
    with sdk(server.url, ALPHA_KEY) as alpha, sdk(server.url, BETA_KEY) as beta:
        picnic = alpha.responses.create(model="gpt-test", input="Plan a picnic for Ada", metadata={"team": "red"})
        sandwiches = alpha.responses.create(
            model="gpt-test", input="Add sandwiches", previous_response_id=picnic.id, metadata={"team": "red"}
        )
        indoors = alpha.responses.create(model="gpt-test", input="Make it indoors", previous_response_id=picnic.id)
        upstream.script(Reply(tool_calls=[("get_weather", '{"city": "Lisbon"}')]))
        weather_call = alpha.responses.create(
            model="gpt-other", input="Weather in Lisbon?", tools=[WEATHER_TOOL], metadata={"team": "blue"}
        )
        call = weather_call.output[0]
        upstream.script(
            Reply(reasoning="It is sunny, say so.", text="Sunny and 24 degrees in Lisbon.", prompt_tokens=40)
        )
        weather_answer = alpha.responses.create(
            model="gpt-other",
            previous_response_id=weather_call.id,
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": '{"sky": "sunny", "c": 24}'}],
            tools=[WEATHER_TOOL],
            metadata={"team": "blue"},
        )
        picture = alpha.responses.create(
            model="gpt-test",
            input=[
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "Describe these pictures"},
                        {"type": "input_image", "image_url": PIXEL, "detail": "auto"},
                        {"type": "input_image", "image_url": "https://example.invalid/cat.png", "detail": "auto"},
                    ],
                }
            ],
        )
        beta_secret = beta.responses.create(model="gpt-test", input="Beta's secret plan")
    yield Store(
        server.url, picnic.id, sandwiches.id, indoors.id, weather_call.id, weather_answer.id, picture.id, beta_secret.id
    )
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield launched
        launched.close()


@pytest.fixture
def page(browser) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US", timezone_id="UTC")
    context.set_default_timeout(10_000)
    opened = context.new_page()
    problems: list[str] = []
    # Script errors and refused loads (a Content-Security-Policy violation among them).
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    opened.on(
        "console",
        lambda message: (
            problems.append(f"console {message.type}: {message.text}")
            if message.type == "error" and not message.text.startswith(EXPECTED_REFUSAL)
            else None
        ),
    )
    yield opened
    context.close()
    assert not problems, problems


def sign_in(page: Any, url: str, key: str) -> None:
    page.goto(f"{url}/console")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1, name="Responses")).to_be_visible()


def drawn(page: Any) -> None:
    page.wait_for_function(
        "() => { const main = document.getElementById('main');"
        " return !main.hasAttribute('aria-busy') && main.dataset.shown === location.hash; }"
    )


def visit(page: Any, url: str) -> None:
    page.goto(url)
    drawn(page)


def listed(page: Any) -> list[str]:
    """The response ids in the list's table, top to bottom, once the page for the address
    in the location bar is drawn."""
    drawn(page)
    expect(page.locator("main :is(table.responses, p.empty)")).to_be_visible()
    return page.locator("table.responses tbody th a").all_inner_texts()


def apply_filters(page: Any, **fields: str) -> None:
    for label, value in fields.items():
        control = page.get_by_label(label.replace("_", " "), exact=True)
        if control.evaluate("e => e.tagName") == "SELECT":
            control.select_option(value)
        else:
            control.fill(value)
    old = page.url
    page.get_by_role("button", name="Apply filters").click()
    wait_until(lambda: page.url != old)
    drawn(page)


def test_sign_in_refuses_a_wrong_key_then_lists_the_projects_responses(page, store):
    page.goto(f"{store.url}/console")
    page.get_by_label("API key").fill("sk-not-a-key")
    page.get_by_label("API key").press("Enter")
    expect(page.get_by_role("alert")).to_have_text(re.compile("refused"))
    sign_in(page, store.url, ALPHA_KEY)
    ids = listed(page)
    # Newest first; responses made in the same second may come in either order.
    alphas = {store.picture, store.weather_answer, store.weather_call, store.indoors, store.sandwiches, store.picnic}
    assert set(ids[:6]) == alphas
    assert store.beta_secret not in ids
    row = page.get_by_role("row").filter(has_text=store.weather_call)
    expect(row).to_contain_text("completed")  # the status in words, not only in colour
    expect(row).to_contain_text("call get_weather")
    assert page.evaluate("sessionStorage.getItem('continuo.console.key')") == ALPHA_KEY
    expect(page.get_by_text("Signed in with key …0001")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", level=1, name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('continuo.console.key')") is None
    # A key the server stops accepting (revoked) sends the page back to sign-in.
    page.evaluate("sessionStorage.setItem('continuo.console.key', 'sk-revoked')")
    visit(page, f"{store.url}/console#/responses/{store.picnic}")
    expect(page.get_by_role("alert")).to_have_text(re.compile("no longer accepts this key"))
    assert page.evaluate("sessionStorage.getItem('continuo.console.key')") is None


def clear(page: Any) -> None:
    page.get_by_role("button", name="Clear").click()
    wait_until(lambda: page.url.endswith("#/responses"))
    drawn(page)


def when(offset: int) -> str:
    """A time ``offset`` seconds from now as a datetime-local field takes it (the browser's
    time zone is UTC)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + offset))


def test_filters_and_search_narrow_the_list(page, store):
    sign_in(page, store.url, ALPHA_KEY)
    apply_filters(page, Model="gpt-other")
    assert sorted(listed(page)) == sorted([store.weather_answer, store.weather_call])
    assert "model=gpt-other" in page.url  # the filters live in the address: back and reload keep them
    clear(page)
    apply_filters(page, Metadata_key="team", Metadata_value="red")
    newest_first = listed(page)
    assert sorted(newest_first) == sorted([store.sandwiches, store.picnic])
    apply_filters(page, Order="asc")
    assert listed(page) == newest_first[::-1]
    clear(page)
    apply_filters(page, Model="gpt-other", Mode="foreground", Created_after=when(-3600), Created_before=when(60))
    assert sorted(listed(page)) == sorted([store.weather_answer, store.weather_call])
    apply_filters(page, Mode="background")
    expect(page.get_by_text("No response matches these filters.")).to_be_visible()
    apply_filters(page, Mode="", Created_after="", Created_before=when(-3600))
    expect(page.get_by_text("No response matches these filters.")).to_be_visible()
    clear(page)
    apply_filters(page, Search="indoors")
    assert listed(page) == [store.indoors]
    apply_filters(page, Search="", Status="failed")
    expect(page.get_by_text("No response matches these filters.")).to_be_visible()
    page.go_back()
    assert page.url.endswith("?q=indoors")
    assert listed(page) == [store.indoors]


def test_pages_forward_and_back(page, store):
    sign_in(page, store.url, ALPHA_KEY)
    visit(page, f"{store.url}/console#/responses?model=gpt-test")
    everything = listed(page)
    assert len(everything) >= 4
    visit(page, f"{store.url}/console#/responses?model=gpt-test&limit=2")
    pages = [listed(page)]
    expect(page.get_by_role("link", name="← Previous page")).to_have_count(0)
    while page.get_by_role("link", name="Next page →").count():
        page.get_by_role("link", name="Next page →").click()
        pages.append(listed(page))
    assert [i for p in pages for i in p] == everything and all(len(p) == 2 for p in pages[:-1])
    for expected in reversed(pages[:-1]):
        page.get_by_role("link", name="← Previous page").click()
        assert listed(page) == expected
    expect(page.get_by_role("link", name="← Previous page")).to_have_count(0)
    assert "model=gpt-test" in page.url  # the filters hold across pages


def test_a_chain_with_a_branch_is_a_tree_of_links(page, store):
    sign_in(page, store.url, ALPHA_KEY)
    page.get_by_role("link", name=store.sandwiches).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(store.sandwiches)
    tree = page.get_by_role("list", name="Chain")
    root = tree.locator(f"li[data-id='{store.picnic}']")
    expect(root).to_contain_text("(2 branches)")
    branches = root.locator(":scope > ul > li")
    expect(branches).to_have_count(2)
    assert sorted(branches.evaluate_all("items => items.map(i => i.dataset.id)")) == sorted(
        [store.sandwiches, store.indoors]
    )
    expect(tree.locator("[aria-current=page]")).to_contain_text(store.sandwiches)
    # The input is the whole chain: the root's input and output, then this turn's.
    expect(page.locator("#input")).to_contain_text("Plan a picnic for Ada")
    expect(page.locator("#input")).to_contain_text("echo: Plan a picnic for Ada")
    expect(page.locator("#output")).to_contain_text("echo: Add sandwiches")
    # Through the tree to the other branch, then up to the root.
    tree.get_by_role("link").filter(has_text=store.indoors).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(store.indoors)
    expect(page.locator("#output")).to_contain_text("echo: Make it indoors")
    expect(page.get_by_role("list", name="Chain").locator("[aria-current=page]")).to_contain_text(store.indoors)
    page.get_by_role("list", name="Chain").get_by_role("link").filter(has_text=store.picnic).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(store.picnic)
    expect(page.locator("#overview")).not_to_contain_text("Previous response")


def test_the_response_page_shows_calls_outputs_reasoning_usage_and_metadata(page, store):
    sign_in(page, store.url, ALPHA_KEY)
    visit(page, f"{store.url}/console#/responses/{store.weather_answer}")
    expect(page.get_by_role("heading", level=1)).to_contain_text(store.weather_answer)
    call = page.locator("#input li[data-type=function_call]")
    expect(call).to_contain_text("get_weather")
    expect(call).to_contain_text('"city": "Lisbon"')
    expect(page.locator("#input li[data-type=function_call_output]")).to_contain_text('"sky": "sunny"')
    expect(page.locator("#output li[data-type=reasoning]")).to_contain_text("Reasoning")
    expect(page.locator("#output li[data-type=message]")).to_contain_text("Sunny and 24 degrees in Lisbon.")
    usage = page.locator("#usage")
    expect(usage).to_contain_text("Input tokens")
    expect(usage.locator("dd").first).to_have_text("40")
    expect(page.locator("#metadata")).to_contain_text("team")
    expect(page.locator("#metadata")).to_contain_text("blue")
    overview = page.locator("#overview")
    expect(overview).to_contain_text("gpt-other")
    expect(overview.locator("dt", has_text="Provider").locator("xpath=following-sibling::dd[1]")).to_have_text("fake")
    expect(overview).to_contain_text("foreground")
    expect(overview.get_by_role("link", name=store.weather_call)).to_be_visible()


def test_images_inside_a_response_are_shown_and_remote_ones_are_not_fetched(page, store):
    sign_in(page, store.url, ALPHA_KEY)
    visit(page, f"{store.url}/console#/responses/{store.picture}")
    message = page.locator("#input li[data-type=message]")
    expect(message).to_contain_text("Describe these pictures")
    image = message.get_by_role("img", name="Input image")
    expect(image).to_have_count(1)
    assert image.evaluate("img => img.complete && img.naturalWidth") == 1  # decoded: the CSP lets data: images in
    expect(message).to_contain_text("Input image: https://example.invalid/cat.png")


def test_a_background_run_is_followed_live_and_cancelled(page, store, upstream):
    words = " ".join(f"word{n}" for n in range(300))
    upstream.script(Reply(text=words, chunk_size=6, delay=0.05))  # about 15 s if left alone
    with sdk(store.url, ALPHA_KEY) as alpha:
        run = alpha.responses.create(model="gpt-test", input="Count slowly", background=True)
        sign_in(page, store.url, ALPHA_KEY)
        page.get_by_role("link", name=run.id).click()
        live = page.get_by_role("list", name="Output so far")
        expect(live).to_have_attribute("aria-live", "polite")
        expect(live).to_contain_text("word3")
        seen = max(int(n) for n in re.findall(r"word(\d+)", live.inner_text()))
        expect(live).to_contain_text(f"word{seen + 5} ")  # more arrives while the page is open
        expect(page.locator("#live-status")).to_contain_text("Running")
        page.get_by_role("button", name="Cancel run").click()
        expect(page.locator(".head .status")).to_have_text(re.compile("cancelled"), timeout=15_000)
        expect(page.get_by_role("button", name="Cancel run")).to_have_count(0)
        final = alpha.responses.retrieve(run.id)
    assert final.status == "cancelled"
    kept = final.output[0].content[0].text
    assert kept.startswith("word0 word1") and len(kept) < len(words)
    expect(page.locator("#output")).to_contain_text(kept[-20:])
    wait_until(lambda: upstream.disconnects == 1)


def test_delete_asks_first(page, store):
    with sdk(store.url, ALPHA_KEY) as alpha:
        doomed = alpha.responses.create(model="gpt-test", input="Delete me")
        sign_in(page, store.url, ALPHA_KEY)
        page.get_by_role("link", name=doomed.id).click()
        page.get_by_role("button", name="Delete…").click()
        dialog = page.get_by_role("dialog", name="Delete this response?")
        expect(dialog).to_be_visible()
        expect(dialog.get_by_role("button", name="Keep it")).to_be_focused()
        dialog.get_by_role("button", name="Keep it").click()
        expect(dialog).to_be_hidden()
        assert alpha.responses.retrieve(doomed.id).id == doomed.id
        page.get_by_role("button", name="Delete…").click()
        dialog.get_by_role("button", name="Delete", exact=True).click()
        expect(page.get_by_role("status")).to_have_text(f"Deleted {doomed.id}.")
        assert doomed.id not in listed(page)
        with pytest.raises(openai.NotFoundError):
            alpha.responses.retrieve(doomed.id)


def test_a_second_key_sees_nothing_of_the_first_project(page, store):
    sign_in(page, store.url, BETA_KEY)
    assert listed(page) == [store.beta_secret]
    apply_filters(page, Search="picnic")
    expect(page.get_by_text("No response matches these filters.")).to_be_visible()
    visit(page, f"{store.url}/console#/responses/{store.picnic}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
    expect(page.get_by_role("alert")).to_contain_text("not found")
    expect(page.locator("main")).not_to_contain_text("Plan a picnic")
    visit(page, f"{store.url}/console#/responses/{store.beta_secret}")
    tree = page.get_by_role("list", name="Chain")
    expect(tree.locator("li")).to_have_count(1)
    expect(tree).not_to_contain_text(store.picnic)


def test_the_keyboard_reaches_the_list_and_opens_a_response(page, store):
    page.goto(f"{store.url}/console")
    expect(page.get_by_label("API key")).to_be_focused()
    page.keyboard.type(ALPHA_KEY)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1, name="Responses")).to_be_focused()
    first = page.locator("table.responses tbody th a").first
    for _ in range(40):
        page.keyboard.press("Tab")
        if first.evaluate("a => a === document.activeElement"):
            break
    else:
        pytest.fail("Tab never reached the first response of the list")
    # The focus is visible: an outline drawn by :focus-visible.
    assert first.evaluate("a => getComputedStyle(a).outlineStyle") == "solid"
    target = first.inner_text()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_contain_text(target)
    expect(page.get_by_role("heading", level=1)).to_be_focused()


def test_screenshots(page, store, tmp_path):
    folder = Path(os.environ.get("CONTINUO_SCREENSHOTS_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    sign_in(page, store.url, ALPHA_KEY)
    listed(page)
    page.screenshot(path=str(folder / "console-list.png"))
    visit(page, f"{store.url}/console#/responses/{store.weather_answer}")
    expect(page.locator("#output li[data-type=message]")).to_be_visible()
    page.screenshot(path=str(folder / "console-response.png"), full_page=True)
    visit(page, f"{store.url}/console#/responses/{store.sandwiches}")
    chain = page.locator("#chain")
    expect(chain.locator("[aria-current=page]")).to_be_visible()
    chain.screenshot(path=str(folder / "console-chain.png"))
    for name in ("console-list.png", "console-response.png", "console-chain.png"):
        assert (folder / name).read_bytes().startswith(b"\x89PNG")
