// A background run followed as it happens: the stream replayed from the start, then its
// new events as they arrive, in a live region. Resumes after a dropped connection.

import { stream } from "./api.js";
import { h, replace } from "./dom.js";
import { renderItem } from "./items.js";

const TERMINAL = new Set(["response.completed", "response.failed", "response.incomplete", "response.cancelled"]);

export function follow(responseId, region, signal, onEnd) {
  const status = h("p", { class: "live-status", id: "live-status" }, "Connecting to the run…");
  const items = h("ol", { class: "items live-items", "aria-live": "polite", "aria-relevant": "additions text", "aria-label": "Output so far" });
  replace(region, status, items);
  const open = new Map(); // output_index → the text element growing with deltas
  let last = null;
  let events = 0;
  let ended = false;

  function openItem(index, item) {
    const text = h("p", { class: "text growing" });
    const entry = h(
      "li",
      { class: `item item-${item.type}`, "data-type": item.type },
      h("article", null, h("header", { class: "item-head" }, h("span", { class: "kind" }, item.role || item.type.replaceAll("_", " ")), " (streaming)"), text),
    );
    items.append(entry);
    open.set(index, { entry, text });
  }

  function onEvent(event) {
    last = event.sequence_number;
    events += 1;
    const kind = event.type;
    if (kind === "response.output_item.added") openItem(event.output_index, event.item);
    else if (kind.endsWith(".delta") && open.has(event.output_index)) {
      open.get(event.output_index).text.append(event.delta);
    } else if (kind === "response.output_item.done") {
      const shown = open.get(event.output_index);
      const final = renderItem(event.item);
      if (shown) shown.entry.replaceWith(final);
      else items.append(final);
      open.delete(event.output_index);
    }
    const state = event.response ? event.response.status : null;
    if (TERMINAL.has(kind)) {
      ended = true;
      status.textContent = `Run ended: ${state.replace("_", " ")} (${events} events).`;
    } else {
      status.textContent = `Running: ${events} events so far${state ? `, ${state.replace("_", " ")}` : ""}.`;
    }
  }

  (async () => {
    for (let attempt = 0; !ended && attempt < 5 && !signal.aborted; attempt += 1) {
      const after = last === null ? "" : `&starting_after=${last}`;
      try {
        await stream(`/v1/responses/${encodeURIComponent(responseId)}?stream=true${after}`, onEvent, signal);
      } catch (error) {
        if (signal.aborted) return;
        status.textContent = `The stream was interrupted: ${error.message}`;
        await new Promise((resolve) => setTimeout(resolve, 1000 * (attempt + 1)));
      }
    }
    if (!signal.aborted) onEnd();
  })();
}
