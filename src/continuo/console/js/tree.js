// A response's chain as a tree: its ancestors from the root, and every response that
// branches from them. Each node is a link; the response on screen is marked in words.

import { h } from "./dom.js";
import { shorten, statusText, when } from "./format.js";

function node(graph, children, id, currentId) {
  const found = graph.get(id);
  const kids = children.get(id) || [];
  const here = id === currentId;
  const label = [
    h("code", { class: "id" }, id),
    h("span", { class: "node-facts" }, ` ${statusText(found.status)} · ${found.model || ""} · ${when(found.created_at)}`),
    found.preview ? h("span", { class: "node-preview" }, ` — ${shorten(found.preview, 80)}`) : null,
  ];
  const link = here
    ? h("span", { class: "node current", "aria-current": "page" }, h("strong", null, "This response: "), label)
    : h("a", { class: "node", href: `#/responses/${encodeURIComponent(id)}` }, label);
  const branchNote = kids.length > 1 ? h("span", { class: "branches" }, ` (${kids.length} branches)`) : null;
  const item = h("li", { "data-id": id }, link, branchNote);
  if (kids.length) item.append(h("ul", null, kids.map((kid) => node(graph, children, kid, currentId))));
  return item;
}

export function chainTree(answer, currentId) {
  const graph = new Map(answer.nodes.map((n) => [n.id, n]));
  const children = new Map();
  for (const n of [...answer.nodes].sort((a, b) => a.created_at - b.created_at || (a.id < b.id ? -1 : 1))) {
    const parent = n.previous_response_id;
    if (parent && graph.has(parent)) {
      if (!children.has(parent)) children.set(parent, []);
      children.get(parent).push(n.id);
    }
  }
  const roots = answer.nodes.filter((n) => !n.previous_response_id || !graph.has(n.previous_response_id)).map((n) => n.id);
  if (answer.root_id && roots.includes(answer.root_id)) {
    roots.splice(roots.indexOf(answer.root_id), 1);
    roots.unshift(answer.root_id);
  }
  const summary = h(
    "p",
    { class: "muted" },
    `${answer.nodes.length} response${answer.nodes.length === 1 ? "" : "s"} in this chain`,
    answer.truncated ? " (the tree is cut short: the chain is larger than one page of it)." : ".",
  );
  return [summary, h("ul", { class: "tree", "aria-label": "Chain" }, roots.map((id) => node(graph, children, id, currentId)))];
}
