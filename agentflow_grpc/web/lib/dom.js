// DOM helpers: elements are built with textContent / setAttribute, never from HTML strings.

const SVG_NS = 'http://www.w3.org/2000/svg';

export const $ = (id) => document.getElementById(id);

/** An HTML element; `text` sets textContent, other props become attributes. */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  setProps(node, props);
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

/** An SVG element (presentation attributes only, no style). */
export function svg(tag, props = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setProps(node, props);
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

export function setProps(node, props) {
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'text') node.textContent = String(value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
}

export function truncate(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

export function cssToken(text) {
  return String(text ?? '').toLowerCase().replace(/[^a-z0-9-]+/g, '-');
}
