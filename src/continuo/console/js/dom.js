// Building the page from data without ever parsing it as HTML: text stays text.

export function h(tag, attrs, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      element.className = value;
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

export function append(element, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

export function replace(element, ...children) {
  element.replaceChildren();
  return append(element, children);
}

// A term/description list from [label, value] pairs; pairs with no value are left out.
export function facts(pairs, attrs) {
  const list = h("dl", { class: "facts", ...attrs });
  for (const [label, value] of pairs) {
    if (value === null || value === undefined || value === "") continue;
    list.append(h("dt", null, label), h("dd", null, value));
  }
  return list;
}

export function section(title, id, ...children) {
  const heading = h("h2", { id: `${id}-title` }, title);
  return h("section", { class: "panel", id, "aria-labelledby": `${id}-title` }, heading, ...children);
}
