// The response list: filters, search and cursor pages, all in the page's address.

import { get, query } from "./api.js";
import { h, replace } from "./dom.js";
import { isoTime, preview, statusBadge, when } from "./format.js";

const PAGE = 50;
const STATUSES = ["completed", "in_progress", "queued", "failed", "cancelled", "incomplete"];
const FILTERS = ["q", "model", "status", "background", "created_after", "created_before", "meta_key", "meta_value", "order"];

// <input type="datetime-local"> speaks local time; the API speaks unix seconds.
function toUnix(local) {
  if (!local) return "";
  const ms = new Date(local).getTime();
  return Number.isNaN(ms) ? "" : String(Math.floor(ms / 1000));
}

function apiQuery(params) {
  const wanted = {
    limit: params.get("limit") || PAGE,
    order: params.get("order") || "desc",
    after: params.get("after"),
    before: params.get("before"),
    q: params.get("q"),
    model: params.get("model"),
    status: params.get("status"),
    background: params.get("background"),
    created_after: toUnix(params.get("created_after")),
    created_before: toUnix(params.get("created_before")),
  };
  const key = params.get("meta_key");
  if (key) wanted[`metadata[${key}]`] = params.get("meta_value") || "";
  return query(wanted);
}

function field(label, control, hint) {
  return h("div", { class: "field" }, h("label", { for: control.id }, label), control, hint || null);
}

function select(id, value, options) {
  const control = h("select", { id, name: id });
  for (const [optionValue, text] of options) {
    control.append(h("option", { value: optionValue, selected: optionValue === value }, text));
  }
  return control;
}

function filterForm(params, models, navigate) {
  const text = (id, type = "text", extra = {}) =>
    h("input", { id, name: id, type, value: params.get(id) || "", ...extra });
  const form = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter responses" },
    field("Search", text("q", "search", { placeholder: "text in input or output" })),
    field("Model", text("model", "text", { list: "model-names", autocomplete: "off" })),
    h("datalist", { id: "model-names" }, models.map((name) => h("option", { value: name }))),
    field("Status", select("status", params.get("status") || "", [["", "any"], ...STATUSES.map((s) => [s, s.replace("_", " ")])])),
    field("Mode", select("background", params.get("background") || "", [["", "any"], ["true", "background"], ["false", "foreground"]])),
    field("Created after", text("created_after", "datetime-local", { step: "1" })),
    field("Created before", text("created_before", "datetime-local", { step: "1" })),
    field("Metadata key", text("meta_key")),
    field("Metadata value", text("meta_value")),
    field("Order", select("order", params.get("order") || "desc", [["desc", "newest first"], ["asc", "oldest first"]])),
    h(
      "div",
      { class: "buttons" },
      h("button", { type: "submit" }, "Apply filters"),
      h("button", { type: "reset", class: "secondary" }, "Clear"),
    ),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const name of FILTERS) {
      const value = form.elements[name].value.trim();
      if (value && !(name === "order" && value === "desc")) next.set(name, value);
    }
    navigate(`#/responses${next.size ? `?${next}` : ""}`);
  });
  form.addEventListener("reset", (event) => {
    event.preventDefault();
    navigate("#/responses");
  });
  return form;
}

function table(page) {
  const rows = page.data.map((response) =>
    h(
      "tr",
      null,
      h("th", { scope: "row" }, h("a", { href: `#/responses/${encodeURIComponent(response.id)}`, class: "id" }, response.id)),
      h("td", null, h("time", { datetime: isoTime(response.created_at) }, when(response.created_at))),
      h("td", null, statusBadge(h, response.status)),
      h("td", null, response.model),
      h("td", null, response.background ? "background" : "foreground"),
      h("td", { class: "preview" }, preview(response)),
    ),
  );
  return h(
    "table",
    { class: "responses" },
    h("caption", null, `${page.data.length} response${page.data.length === 1 ? "" : "s"} on this page`),
    h(
      "thead",
      null,
      h(
        "tr",
        null,
        ["Response", "Created", "Status", "Model", "Mode", "Answer"].map((name) => h("th", { scope: "col" }, name)),
      ),
    ),
    h("tbody", null, rows),
  );
}

// Cursor pages both ways: "after" the last row shown, or "before" the first (the API then
// says in has_more whether more come before).
function pager(params, page) {
  const at = (cursor, id) => {
    const moved = new URLSearchParams(params);
    for (const name of ["after", "before", "deleted"]) moved.delete(name);
    moved.set(cursor, id);
    return `#/responses?${moved}`;
  };
  const backward = params.get("before");
  const links = [];
  if (page.first_id && (params.get("after") || (backward && page.has_more))) {
    links.push(h("a", { href: at("before", page.first_id), rel: "prev" }, "← Previous page"));
  }
  if (page.last_id && (backward || page.has_more)) {
    links.push(h("a", { href: at("after", page.last_id), rel: "next" }, "Next page →"));
  }
  return h("nav", { class: "pager", "aria-label": "Pages" }, links);
}

export async function listPage({ main, signal, navigate }, params) {
  const [page, models] = await Promise.all([
    get(`/v1/responses${apiQuery(params)}`, { signal }),
    get("/v1/models", { signal }).then(
      (answer) => answer.data.map((model) => model.id).filter((id) => id !== "*"),
      () => [],
    ),
  ]);
  const filtered = FILTERS.some((name) => name !== "order" && params.get(name));
  const notice = params.get("deleted")
    ? h("p", { class: "notice", role: "status" }, `Deleted ${params.get("deleted")}.`)
    : null;
  const body = page.data.length
    ? table(page)
    : h("p", { class: "empty", role: "status" }, filtered ? "No response matches these filters." : "No responses yet.");
  replace(main, h("h1", { tabindex: "-1" }, "Responses"), notice, filterForm(params, models, navigate), body, pager(params, page));
}
