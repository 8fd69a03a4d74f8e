// The console: a hash router over a few pages, signed in with an API key.

import { ApiError, forgetKey, get, saveKey, savedKey } from "./api.js";
import { h, replace } from "./dom.js";
import { listPage } from "./list.js";
import { responsePage } from "./response.js";

const main = document.getElementById("main");
let current = null; // the AbortController of the page on screen
let shownPath = null; // the page (without its query) on screen, to move focus on a new one

export function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function showSession() {
  const key = savedKey();
  document.getElementById("nav").hidden = !key;
  document.getElementById("session").hidden = !key;
  document.getElementById("key-hint").textContent = key ? `Signed in with key …${key.slice(-4)}` : "";
}

function signInPage(message) {
  const input = h("input", {
    id: "api-key",
    name: "api-key",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
  });
  const problem = h("p", { class: "problem", role: "alert", id: "sign-in-problem" }, message || "");
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form",
    { class: "sign-in", "aria-describedby": "key-note" },
    h("label", { for: "api-key" }, "API key"),
    input,
    button,
    problem,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    button.disabled = true;
    problem.textContent = "";
    try {
      // Any route that needs a key tells whether this one opens; it lists one response.
      await get("/v1/responses?limit=1", { key });
      saveKey(key);
      showSession();
      navigate("#/responses");
    } catch (error) {
      problem.textContent =
        error instanceof ApiError && error.status === 401
          ? "This key was refused: check it and try again."
          : `Could not sign in: ${error.message}`;
      button.disabled = false;
      input.focus();
    }
  });
  replace(
    main,
    h("h1", { tabindex: "-1" }, "Sign in"),
    h(
      "p",
      { id: "key-note" },
      "Sign in with an API key of this server. You see only that key's project. The key is kept in this ",
      "browser tab (sessionStorage) until you sign out or close the tab, and is sent only to this server.",
    ),
    form,
  );
  input.focus();
}

function parse(hash) {
  const [path, search] = hash.replace(/^#/, "").split("?");
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(search || "") };
}

async function route() {
  if (location.hash && !location.hash.startsWith("#/")) return; // an in-page anchor: no page change
  if (current) current.abort();
  current = new AbortController();
  const page = { main, signal: current.signal, navigate };
  showSession();
  if (!savedKey()) {
    shownPath = null;
    signInPage();
    return;
  }
  const { parts, params } = parse(location.hash || "#/responses");
  const signal = current.signal;
  main.setAttribute("aria-busy", "true"); // until the page is drawn (tests wait on it too)
  try {
    if (parts[0] === "responses" && parts.length === 2) await responsePage(page, parts[1]);
    else await listPage(page, params);
    const path = parts.join("/");
    if (path !== shownPath) main.querySelector("h1")?.focus();
    shownPath = path;
  } catch (error) {
    if (error.name === "AbortError") return;
    if (error instanceof ApiError && error.status === 401) {
      forgetKey();
      showSession();
      signInPage("The server no longer accepts this key: sign in again.");
      return;
    }
    const title = error instanceof ApiError && error.status === 404 ? "Not found" : "Something went wrong";
    replace(
      main,
      h("h1", { tabindex: "-1" }, title),
      h("p", { role: "alert" }, error.message),
      h("p", null, h("a", { href: "#/responses" }, "Back to the responses")),
    );
    main.querySelector("h1").focus();
    shownPath = null;
  } finally {
    if (!signal.aborted) {
      main.removeAttribute("aria-busy");
      main.dataset.shown = location.hash; // which address the page on screen shows
    }
  }
}

document.getElementById("sign-out").addEventListener("click", () => {
  forgetKey();
  navigate("#/signin");
});
window.addEventListener("hashchange", route);
route();
