// dom.js: small DOM and formatting helpers. User text only ever goes in as text nodes.

// h builds an element: h('button', {class: 'x', type: 'button', onclick: fn}, 'text', child).
// Strings become text nodes, never HTML.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') {
        el.addEventListener(k.slice(2), v);
      } else if (k === 'class') {
        el.className = v;
      } else if (k === 'dataset') {
        Object.assign(el.dataset, v);
      } else if (k === 'hidden') {
        el.hidden = Boolean(v);
      } else {
        el.setAttribute(k, v === true ? '' : String(v));
      }
    }
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const URL_RE = /\bhttps?:\/\/[^\s<>"]+/gi;

// safeHref returns a normalised http(s) URL, or null when the text is not one.
export function safeHref(text) {
  try {
    const u = new URL(text);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return null;
    return u.href;
  } catch {
    return null;
  }
}

// linkify turns text into a fragment of text nodes and safe links (http/https only).
export function linkify(text) {
  const frag = document.createDocumentFragment();
  let last = 0;
  for (const m of text.matchAll(URL_RE)) {
    let url = m[0];
    // Leave trailing punctuation (end of a sentence, closing bracket) out of the link.
    while (/[.,;:!?'")\]}]$/.test(url)) {
      if (url.endsWith(')') && (url.match(/\(/g) || []).length >= (url.match(/\)/g) || []).length) break;
      url = url.slice(0, -1);
    }
    const href = safeHref(url);
    if (!href) continue;
    if (m.index > last) frag.append(document.createTextNode(text.slice(last, m.index)));
    const a = document.createElement('a');
    a.href = href;
    a.target = '_blank';
    a.rel = 'noopener noreferrer';
    a.textContent = url;
    frag.append(a);
    last = m.index + url.length;
  }
  if (last < text.length) frag.append(document.createTextNode(text.slice(last)));
  return frag;
}

// formatSize prints a byte count for people: 512 B, 3.4 KB, 12 MB.
export function formatSize(n) {
  if (!Number.isFinite(n) || n < 0) return '';
  if (n < 1000) return `${n} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = -1;
  do {
    v /= 1000;
    i++;
  } while (v >= 1000 && i < units.length - 1);
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit' });
const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: 'long', month: 'long', day: 'numeric' });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

// formatTime prints the clock time of a date.
export function formatTime(d) {
  return timeFmt.format(d);
}

// formatFull prints date and time, for tooltips.
export function formatFull(d) {
  return fullFmt.format(d);
}

// dayLabel names the day of a date: Today, Yesterday, or the date.
export function dayLabel(d) {
  const today = new Date();
  const start = (x) => new Date(x.getFullYear(), x.getMonth(), x.getDate()).getTime();
  const diff = Math.round((start(today) - start(d)) / 86400000);
  if (diff === 0) return 'Today';
  if (diff === 1) return 'Yesterday';
  return dayFmt.format(d);
}

// dayKey is a string that is equal for two dates of the same local day.
export function dayKey(d) {
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
}

// initials gives one or two letters for an avatar.
export function initials(name) {
  const parts = String(name || '?').trim().split(/\s+/).filter(Boolean);
  const first = [...(parts[0] || '?')][0] || '?';
  const second = parts.length > 1 ? [...parts[parts.length - 1]][0] : '';
  return (first + (second || '')).toUpperCase();
}

// hue picks a stable colour hue for a username.
export function hue(s) {
  let x = 0;
  for (const ch of String(s)) x = (x * 31 + ch.codePointAt(0)) >>> 0;
  return x % 360;
}

// avatar builds a round initials badge; the colour comes from the username.
export function avatar(user, { size = 'md', online } = {}) {
  const name = user.display_name || user.username;
  const el = h('span', { class: `avatar avatar-${size}`, 'aria-hidden': 'true' }, initials(name));
  el.style.setProperty('--avatar-hue', String(hue(user.username)));
  if (online !== undefined) {
    el.append(h('span', { class: 'presence-dot', 'data-online': online ? 'true' : 'false' }));
  }
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

// fileIcon draws a document outline (no emoji font needed).
export function fileIcon() {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('width', '28');
  svg.setAttribute('height', '28');
  svg.setAttribute('fill', 'none');
  svg.setAttribute('stroke', 'currentColor');
  svg.setAttribute('stroke-width', '1.8');
  svg.setAttribute('stroke-linecap', 'round');
  svg.setAttribute('stroke-linejoin', 'round');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('class', 'file-icon');
  for (const d of ['M14 3H7a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h10a2 2 0 0 0 2-2V8z', 'M14 3v5h5', 'M9 13h6M9 17h4']) {
    const path = document.createElementNS(SVG_NS, 'path');
    path.setAttribute('d', d);
    svg.append(path);
  }
  return svg;
}
