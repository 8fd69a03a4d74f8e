// The public API of this server, called with the signed-in key. The key lives in this
// tab's sessionStorage: it is gone when the tab closes and never leaves for another origin.

const KEY = "continuo.console.key";

export function savedKey() {
  return sessionStorage.getItem(KEY);
}

export function saveKey(key) {
  sessionStorage.setItem(KEY, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `The server answered ${status}.`);
    this.status = status;
    this.code = error.code || null;
  }
}

function headers(key) {
  return { authorization: `Bearer ${key ?? savedKey() ?? ""}`, accept: "application/json" };
}

export async function call(method, path, { key, signal } = {}) {
  const answer = await fetch(path, { method, headers: headers(key), signal, cache: "no-store" });
  const text = await answer.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!answer.ok) throw new ApiError(answer.status, body);
  return body;
}

export const get = (path, options) => call("GET", path, options);

export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(name, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

// Server-Sent Events over fetch (EventSource cannot send the key): calls onEvent with each
// parsed event until the stream ends or the signal aborts.
export async function stream(path, onEvent, signal) {
  const answer = await fetch(path, {
    headers: { ...headers(), accept: "text/event-stream" },
    signal,
    cache: "no-store",
  });
  if (!answer.ok) {
    let body = null;
    try {
      body = await answer.json();
    } catch {
      body = null;
    }
    throw new ApiError(answer.status, body);
  }
  const reader = answer.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = frame
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (data) onEvent(JSON.parse(data));
    }
  }
}
