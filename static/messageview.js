// messageview.js: one message as DOM. User text only ever goes in as text
// (links made by linkify are http/https only); files are shown from their
// server URL, images inline.

import { h, linkify, formatSize, formatTime, formatFull, fileIcon } from './dom.js';
import { state, nameOf, IMAGE_TYPES } from './state.js';

const $ = (id) => document.getElementById(id);

// messageEl returns the element of a message record, rebuilt only when it changed.
// actions.retry(r) and actions.remove(r) back the buttons of a message not sent.
export function messageEl(r, actions) {
  const sig = [r.id, r.status, r.error, r.body, r.file ? r.file.url : '', nameOf(r.from)].join('|');
  if (r.el && r.sig === sig) return r.el;
  r.sig = sig;
  const mine = r.from === state.me.username;
  const li = h('li', {
    class: `msg ${mine ? 'mine' : 'theirs'}`,
    'data-testid': 'message',
    'data-id': r.id || undefined,
    'data-status': r.status,
    'data-from': r.from,
  });
  li.append(h('div', { class: 'msg-sender' }, mine ? 'You' : nameOf(r.from)));
  const bubble = h('div', { class: 'bubble' });
  bubble.append(messageContent(r));
  const meta = h('div', { class: 'msg-meta' },
    h('time', { datetime: r.sentAt.toISOString(), title: formatFull(r.sentAt) }, formatTime(r.sentAt)));
  if (mine) {
    const label = { pending: 'Sending…', sent: 'Sent', failed: 'Not sent', error: 'Not sent' }[r.status];
    meta.append(h('span', { class: 'msg-status', 'data-testid': 'msg-status', title: label, 'aria-label': label },
      r.status === 'sent' ? '✓' : r.status === 'pending' ? '…' : '!'));
  }
  bubble.append(meta);
  li.append(bubble);
  if (r.localFile && r.status === 'pending') {
    const bar = h('progress', { class: 'upload-progress', max: '1', value: String(r.progress || 0), 'aria-label': `Uploading ${r.body}` });
    r.progressEl = bar;
    li.append(bar);
  }
  if (r.status === 'failed' || r.status === 'error') {
    const actions = h('div', { class: 'msg-error', role: 'alert' },
      h('span', null, r.status === 'failed' ? 'Not sent: no connection.' : `Not sent: ${r.error}`));
    if (r.status === 'failed' || r.retryable) {
      actions.append(h('button', {
        type: 'button', class: 'link-btn', 'data-testid': 'retry',
        onclick: () => actions.retry(r),
      }, 'Retry'));
    }
    actions.append(h('button', {
      type: 'button', class: 'link-btn', onclick: () => actions.remove(r),
    }, 'Remove'));
    li.append(actions);
  }
  r.el = li;
  return li;
}

function safeFileUrl(url) {
  try {
    const u = new URL(url, location.origin);
    if (u.origin !== location.origin || !u.pathname.startsWith('/api/files/')) return null;
    return u.pathname + u.search;
  } catch {
    return null;
  }
}

function messageContent(r) {
  const file = r.file;
  if (file) {
    const url = safeFileUrl(file.url);
    if (url && IMAGE_TYPES.has(file.content_type)) {
      const img = h('img', { class: 'thumb', src: url, alt: file.name, 'data-testid': 'thumbnail', loading: 'lazy' });
      img.addEventListener('load', onThumbLoad);
      return h('a', { class: 'thumb-link', href: url, target: '_blank', rel: 'noopener noreferrer', title: file.name }, img);
    }
    return fileLink(file.name, file.size, url);
  }
  if (r.localFile) {
    if (r.previewUrl) {
      const img = h('img', { class: 'thumb', src: r.previewUrl, alt: r.body });
      img.addEventListener('load', onThumbLoad);
      return h('span', { class: 'thumb-link' }, img);
    }
    return fileLink(r.body, r.localFile.size, null);
  }
  return h('div', { class: 'msg-body', 'data-testid': 'message-body' }, linkify(r.body));
}

function onThumbLoad() {
  const s = $('message-scroll');
  if (s.scrollHeight - s.scrollTop - s.clientHeight < this.height + 120) s.scrollTop = s.scrollHeight;
}

function fileLink(name, size, url) {
  const inner = [
    fileIcon(),
    h('span', { class: 'file-text' },
      h('span', { class: 'file-name' }, name),
      h('span', { class: 'file-size' }, formatSize(size))),
  ];
  if (!url) return h('span', { class: 'file-link' }, inner);
  return h('a', { class: 'file-link', href: url, download: name, 'data-testid': 'file-link', rel: 'noopener noreferrer' }, inner);
}

