// One response: what went in, what came out, usage, timing, metadata, its chain, and a
// live view with a cancel button while a background run is going.

import { call, get, query } from "./api.js";
import { facts, h, replace, section } from "./dom.js";
import { count, duration, isoTime, RUNNING, statusBadge, when } from "./format.js";
import { itemList } from "./items.js";
import { follow } from "./live.js";
import { chainTree } from "./tree.js";

const ITEMS_PAGE = 100;
const ITEMS_PAGES = 5; // pages loaded at once; a "more" button brings the rest

const path = (id) => `/v1/responses/${encodeURIComponent(id)}`;

async function inputItems(id, signal, after) {
  const items = [];
  let page = { has_more: true, last_id: after };
  for (let n = 0; n < ITEMS_PAGES && page.has_more; n += 1) {
    page = await get(`${path(id)}/input_items${query({ limit: ITEMS_PAGE, order: "asc", after: page.last_id })}`, { signal });
    items.push(...page.data);
  }
  return { items, more: page.has_more ? page.last_id : null };
}

function time(unix) {
  return unix ? h("time", { datetime: isoTime(unix) }, when(unix)) : null;
}

function overview(response, provider) {
  const previous = response.previous_response_id
    ? h("a", { href: `#/responses/${encodeURIComponent(response.previous_response_id)}` }, h("code", null, response.previous_response_id))
    : null;
  const conversation = response.conversation ? h("code", null, response.conversation.id) : null;
  const problem = response.error
    ? `${response.error.code || "error"}: ${response.error.message}`
    : response.incomplete_details
      ? `incomplete: ${response.incomplete_details.reason}`
      : null;
  return section(
    "Overview",
    "overview",
    facts([
      ["Status", statusBadge(h, response.status)],
      ["Problem", problem],
      ["Model", response.model],
      ["Provider", provider],
      ["Mode", response.background ? "background" : "foreground"],
      ["Created", time(response.created_at)],
      ["Completed", time(response.completed_at)],
      ["Took", duration(response.created_at, response.completed_at)],
      ["Previous response", previous],
      ["Conversation", conversation],
      ["Stored", response.store === false ? "no" : "yes"],
      ["Tools", (response.tools || []).map((t) => t.name || t.server_label || t.type).join(", ")],
    ]),
    response.instructions
      ? h("details", null, h("summary", null, "Instructions"), h("pre", { class: "instructions" }, typeof response.instructions === "string" ? response.instructions : JSON.stringify(response.instructions, null, 2)))
      : null,
  );
}

function usage(response) {
  const u = response.usage;
  if (!u) return section("Usage", "usage", h("p", { class: "muted" }, "Not known yet."));
  return section(
    "Usage",
    "usage",
    facts([
      ["Input tokens", count(u.input_tokens)],
      ["of them cached", count(u.input_tokens_details?.cached_tokens)],
      ["Output tokens", count(u.output_tokens)],
      ["of them reasoning", count(u.output_tokens_details?.reasoning_tokens)],
      ["Total tokens", count(u.total_tokens)],
    ]),
  );
}

function metadata(response) {
  const entries = Object.entries(response.metadata || {});
  const body = entries.length
    ? h(
        "table",
        { class: "metadata" },
        h("thead", null, h("tr", null, h("th", { scope: "col" }, "Key"), h("th", { scope: "col" }, "Value"))),
        h("tbody", null, entries.map(([k, v]) => h("tr", null, h("th", { scope: "row" }, k), h("td", null, v)))),
      )
    : h("p", { class: "muted" }, "None.");
  return section("Metadata", "metadata", body);
}

function deleteDialog(response, navigate, signal) {
  const problem = h("p", { class: "problem", role: "alert" });
  const dialog = h(
    "dialog",
    { "aria-labelledby": "delete-title", "aria-describedby": "delete-text", class: "confirm" },
    h("h2", { id: "delete-title" }, "Delete this response?"),
    h("p", { id: "delete-text" }, "Response ", h("code", null, response.id), " and its output are deleted for good. Responses chained to it stay."),
    problem,
  );
  const confirm = h("button", { type: "button", class: "danger" }, "Delete");
  const keep = h("button", { type: "button", class: "secondary", autofocus: true }, "Keep it");
  dialog.append(h("div", { class: "buttons" }, keep, confirm));
  keep.addEventListener("click", () => dialog.close());
  confirm.addEventListener("click", async () => {
    confirm.disabled = true;
    try {
      await call("DELETE", path(response.id), { signal });
      dialog.close();
      navigate(`#/responses?deleted=${encodeURIComponent(response.id)}`);
    } catch (error) {
      problem.textContent = `Not deleted: ${error.message}`;
      confirm.disabled = false;
    }
  });
  return dialog;
}

// The provider a model name is served by, as GET /v1/models/{model} says it (owned_by):
// the one configured now (a response object does not name its provider).
async function providerOf(model, signal) {
  if (!model) return null;
  try {
    const found = await get(`/v1/models/${encodeURIComponent(model)}`, { signal });
    return found.owned_by || null;
  } catch (error) {
    if (error.name === "AbortError") throw error;
    return null;
  }
}

export async function responsePage(page, id) {
  const { main, signal, navigate } = page;
  const [response, graph, input] = await Promise.all([
    get(path(id), { signal }),
    get(`${path(id)}/graph`, { signal }).catch((error) => (error.name === "AbortError" ? Promise.reject(error) : error)),
    inputItems(id, signal),
  ]);
  const provider = await providerOf(response.model, signal);
  const running = RUNNING.has(response.status);
  const actions = h("div", { class: "actions" });
  const notice = h("p", { class: "notice", role: "status" });
  const dialog = deleteDialog(response, navigate, signal);
  const reload = async () => {
    if (signal.aborted) return;
    await responsePage(page, id).catch(() => {});
    if (!main.contains(document.activeElement)) main.querySelector("h1")?.focus();
  };

  if (running && response.background) {
    const cancel = h("button", { type: "button", class: "danger", id: "cancel-run" }, "Cancel run");
    cancel.addEventListener("click", async () => {
      cancel.disabled = true;
      try {
        const answer = await call("POST", `${path(id)}/cancel`, { signal });
        notice.textContent = `Cancel requested: the run is ${answer.status.replace("_", " ")}.`;
      } catch (error) {
        notice.textContent = `Not cancelled: ${error.message}`;
        cancel.disabled = false;
      }
    });
    actions.append(cancel);
  }
  const remove = h("button", { type: "button", class: "secondary", id: "delete-response" }, "Delete…");
  remove.addEventListener("click", () => dialog.showModal());
  actions.append(remove);

  const live = running && response.background ? section("Live run", "live", h("div", { id: "live-region" })) : null;
  const chain =
    graph instanceof Error
      ? section("Chain", "chain", h("p", { class: "problem" }, `The chain could not be loaded: ${graph.message}`))
      : section("Chain", "chain", chainTree(graph, id));
  const more = input.more
    ? h("p", null, "Only the first ", count(input.items.length), " input items are shown.")
    : null;

  replace(
    main,
    h("p", { class: "crumbs" }, h("a", { href: "#/responses" }, "← All responses")),
    h("h1", { tabindex: "-1" }, "Response ", h("code", null, response.id)),
    h("div", { class: "head" }, statusBadge(h, response.status), actions),
    notice,
    h("div", { class: "grid" }, overview(response, provider), usage(response), metadata(response)),
    live,
    chain,
    section("Input", "input", itemList(input.items, "Input items"), more),
    section("Output", "output", running ? h("p", { class: "muted" }, "The run is going: its output so far is under Live run.") : null, running ? null : itemList(response.output || [], "Output items")),
    dialog,
  );
  if (live) follow(id, live.querySelector("#live-region"), signal, reload);
}
