// One input or output item as it reads on the page: messages, reasoning, function and MCP
// calls with their outputs, images; anything else as its JSON.

import { h } from "./dom.js";
import { statusBadge } from "./format.js";

function pretty(text) {
  if (typeof text !== "string") return JSON.stringify(text, null, 2);
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

function code(label, text) {
  return h("div", { class: "code" }, h("p", { class: "label" }, label), h("pre", null, h("code", null, pretty(text))));
}

// Only images inside the response (data: URLs) are shown; a remote URL stays a URL, so the
// console never fetches from another origin (its Content-Security-Policy would refuse).
function image(url, alt) {
  if (typeof url === "string" && url.startsWith("data:image/")) return h("img", { src: url, alt, class: "image" });
  return h("p", null, `${alt}: `, h("code", null, url || "(no URL)"));
}

function part(content) {
  switch (content.type) {
    case "input_text":
    case "output_text":
    case "text":
    case "summary_text":
    case "reasoning_text":
      return h("p", { class: "text" }, content.text);
    case "refusal":
      return h("p", { class: "text refusal" }, h("strong", null, "Refusal: "), content.refusal);
    case "input_image":
      return content.file_id && !content.image_url
        ? h("p", null, "Image file ", h("code", null, content.file_id))
        : image(content.image_url, "Input image");
    case "input_file":
      return h("p", null, "File ", h("code", null, content.filename || content.file_id || content.file_url || "(inline)"));
    default:
      return code(content.type || "part", content);
  }
}

function header(kind, item, ...extra) {
  return h(
    "header",
    { class: "item-head" },
    h("span", { class: "kind" }, kind),
    ...extra,
    item.status ? statusBadge(h, item.status) : null,
    item.id ? h("code", { class: "item-id" }, item.id) : null,
  );
}

function message(item) {
  const content = typeof item.content === "string" ? [{ type: "input_text", text: item.content }] : item.content || [];
  return [header(`${item.role || "message"}`, item), content.map(part)];
}

function reasoning(item) {
  const summary = (item.summary || []).map(part);
  const content = (item.content || []).map(part);
  const hidden = item.encrypted_content ? h("p", { class: "muted" }, "Encrypted reasoning kept for the next turn.") : null;
  return [
    header("reasoning", item),
    summary.length ? h("div", { class: "summary" }, h("p", { class: "label" }, "Summary"), summary) : null,
    content.length ? h("details", null, h("summary", null, "Reasoning text"), content) : null,
    hidden,
  ];
}

function functionCall(item) {
  return [
    header("function call", item, h("code", { class: "name" }, item.name)),
    h("p", { class: "muted" }, "call id ", h("code", null, item.call_id)),
    code("Arguments", item.arguments || ""),
  ];
}

function functionOutput(item) {
  const output = Array.isArray(item.output) ? item.output.map(part) : code("Output", item.output ?? "");
  return [header("function output", item), h("p", { class: "muted" }, "for call id ", h("code", null, item.call_id)), output];
}

function mcpCall(item) {
  return [
    header("MCP call", item, h("code", { class: "name" }, `${item.server_label}.${item.name}`)),
    code("Arguments", item.arguments || ""),
    item.error ? h("p", { class: "problem" }, h("strong", null, "Error: "), pretty(item.error)) : null,
    item.output !== null && item.output !== undefined ? code("Output", item.output) : null,
  ];
}

function mcpTools(item) {
  const names = (item.tools || []).map((tool) => h("li", null, h("code", null, tool.name), tool.description ? ` — ${tool.description}` : ""));
  return [header("MCP tools", item, h("code", { class: "name" }, item.server_label)), h("ul", null, names)];
}

function imageCall(item) {
  const result = item.result ? image(`data:image/png;base64,${item.result}`, "Generated image") : null;
  return [header("image generation", item), result, item.revised_prompt ? h("p", { class: "muted" }, item.revised_prompt) : null];
}

const RENDER = {
  message,
  reasoning,
  function_call: functionCall,
  function_call_output: functionOutput,
  mcp_call: mcpCall,
  mcp_list_tools: mcpTools,
  image_generation_call: imageCall,
};

export function renderItem(item) {
  const kind = item.type || (item.role ? "message" : "item");
  const render = RENDER[kind];
  const body = render ? render(item) : [header(kind.replaceAll("_", " "), item), code("Item", item)];
  return h("li", { class: `item item-${kind}`, "data-type": kind }, h("article", null, body));
}

export function itemList(items, label) {
  if (!items.length) return h("p", { class: "muted" }, "None.");
  return h("ol", { class: "items", "aria-label": label }, items.map(renderItem));
}
