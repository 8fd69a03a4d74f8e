// How values read on the page: times, statuses, token counts, previews.

const pad = (n) => String(n).padStart(2, "0");

export function when(unix) {
  if (unix === null || unix === undefined) return "";
  const d = new Date(unix * 1000);
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

export function isoTime(unix) {
  return new Date(unix * 1000).toISOString();
}

export function duration(start, end) {
  if (!start || !end) return "";
  const seconds = end - start;
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes} min ${seconds % 60} s`;
}

// Every status reads as a word, with a symbol beside it; colour only repeats it.
const STATUS = {
  completed: "✓",
  failed: "✗",
  cancelled: "⊘",
  incomplete: "◐",
  in_progress: "…",
  queued: "◷",
};

export function statusText(status) {
  return (status || "unknown").replace("_", " ");
}

export function statusBadge(h, status) {
  return h(
    "span",
    { class: `status status-${status || "unknown"}` },
    h("span", { "aria-hidden": "true" }, STATUS[status] || "?"),
    " ",
    statusText(status),
  );
}

export const RUNNING = new Set(["queued", "in_progress"]);

export function count(n) {
  return n === null || n === undefined ? "" : Number(n).toLocaleString("en-US");
}

export function shorten(text, length = 120) {
  const flat = String(text || "").replace(/\s+/g, " ").trim();
  return flat.length > length ? `${flat.slice(0, length - 1)}…` : flat;
}

// The first words of what a response answered, for lists.
export function preview(response) {
  for (const item of response.output || []) {
    if (item.type === "message") {
      const text = (item.content || []).map((p) => p.text || p.refusal || "").join(" ");
      if (text.trim()) return shorten(text);
    }
    if (item.type === "function_call") return shorten(`call ${item.name}(${item.arguments || ""})`);
    if (item.type === "mcp_call") return shorten(`MCP ${item.server_label}.${item.name}`);
  }
  if (response.error) return shorten(response.error.message);
  return "";
}
