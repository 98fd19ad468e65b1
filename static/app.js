// app.js: the webim chat page. State lives in `state` (state.js); render() draws it.
// Everything the server says arrives through one long-poll loop (poll.js). The
// sign-in screen is auth.js, one message's DOM is messageview.js, and every
// request goes through api.js.

import { api, uploadFile, ApiError, NetworkError, isRetryable } from './api.js';
import { h, dayLabel, dayKey, avatar } from './dom.js';
import { show, showAuth, setupAuth, loadServerConfig } from './auth.js';
import { setupEmojiPicker } from './emoji.js';
import { setupMenu } from './menu.js';
import { messageEl } from './messageview.js';
import { Poller } from './poll.js';
import { setupSettings } from './settings.js';
import { setupPush, openFromURL } from './push.js';
import {
  setupGroups, resetGroups, loadGroups, handleGroupEvent, messageArrived, typingInput, sendRead,
  renderTyping, decorateTick, renderGroupHeader, hideGroupHeader, renderGroupList, isGroupKey, groupKey,
  groupIdOf, groupOf,
} from './groups.js';
import {
  state, conv, storageGet, storageSet, saveLastRead, unreadOf, remember, nameOf, userOf, IMAGE_TYPES,
} from './state.js';

const $ = (id) => document.getElementById(id);

const APP_NAME = 'webim';
const MAX_BODY = 4000;
const SEND_ATTEMPTS = 5;

// ---------------------------------------------------------------- rendering

let renderQueued = false;

// render redraws on the next microtask; many changes in one batch draw once.
function render() {
  if (renderQueued) return;
  renderQueued = true;
  queueMicrotask(() => {
    renderQueued = false;
    if (!state.me) return;
    const focusKey = document.activeElement && document.activeElement.dataset
      ? document.activeElement.dataset.fkey : undefined;
    renderSidebar();
    renderMain();
    renderTitle();
    // Restore focus when the focused control was rebuilt.
    const lost = !document.activeElement || document.activeElement === document.body;
    if (focusKey && lost) {
      const again = document.querySelector(`[data-fkey="${CSS.escape(focusKey)}"]`);
      if (again) again.focus();
    }
  });
}

// syncChildren makes parent's children exactly els, moving as few nodes as it can.
function syncChildren(parent, els) {
  for (let i = 0; i < els.length; i++) {
    const cur = parent.children[i];
    if (cur !== els[i]) parent.insertBefore(els[i], cur || null);
  }
  while (parent.children.length > els.length) parent.lastElementChild.remove();
}

// cached returns the element built for key when its signature is unchanged.
function cached(cache, key, sig, build) {
  const hit = cache.get(key);
  if (hit && hit.sig === sig) return hit.el;
  const el = build();
  cache.set(key, { sig, el });
  return el;
}

const sideCache = new Map();

function renderSidebar() {
  const me = state.me;
  $('me-name').textContent = me.display_name || me.username;
  $('me-username').textContent = `@${me.username}`;
  const meSig = `${me.username}|${me.display_name}`;
  if ($('me-avatar').dataset.sig !== meSig) {
    $('me-avatar').dataset.sig = meSig;
    $('me-avatar').replaceChildren(avatar(me, { size: 'md' }));
  }

  // Search results.
  const s = state.search;
  $('search-section').hidden = s.results === null;
  if (s.results) {
    const items = s.results.map((u) => {
      const rel = relation(u.username);
      return cached(sideCache, `search:${u.username}`, `${u.display_name}|${rel}`, () => searchItem(u, rel));
    });
    syncChildren($('search-results'), items);
    $('search-empty').hidden = s.results.length > 0;
  }

  // Incoming requests.
  const incoming = [...state.incoming.values()].sort(byName);
  $('incoming-section').hidden = incoming.length === 0;
  syncChildren($('incoming-list'), incoming.map((u) =>
    cached(sideCache, `in:${u.username}`, `${u.display_name}`, () => incomingItem(u))));
  $('incoming-heading').textContent = `Friend requests (${incoming.length})`;

  // Friends, and anyone else we have messages with, most recent conversation first.
  const names = new Set([...state.friends.keys()]);
  for (const [name, c] of state.convs) if (c.items.length && !isGroupKey(name)) names.add(name);
  const rows = [...names].map((name) => {
    const c = state.convs.get(name);
    const last = c && c.items.length ? c.items[c.items.length - 1] : null;
    return { name, c, last, friend: state.friends.get(name) };
  });
  rows.sort((a, b) => {
    const ta = a.last ? a.last.sentAt.getTime() : 0;
    const tb = b.last ? b.last.sentAt.getTime() : 0;
    if (ta !== tb) return tb - ta;
    return nameOf(a.name).localeCompare(nameOf(b.name));
  });
  syncChildren($('friend-list'), rows.map((row) => {
    const unread = row.c ? unreadOf(row.c) : 0;
    const online = row.friend ? Boolean(row.friend.online) : null;
    const preview = row.last ? previewOf(row.last) : '';
    const sig = [nameOf(row.name), online, unread, preview, state.active === row.name,
      state.blocked.has(row.name)].join('|');
    return friendItem(row.name, online, unread, preview, sig);
  }));
  $('friends-empty').hidden = rows.length > 0;
  renderGroupList(unreadOf, previewOf);

  // Outgoing requests.
  const outgoing = [...state.outgoing.values()].sort(byName);
  $('outgoing-section').hidden = outgoing.length === 0;
  syncChildren($('outgoing-list'), outgoing.map((u) =>
    cached(sideCache, `out:${u.username}`, `${u.display_name}`, () => outgoingItem(u))));

  // Blocked users (shown in the main area).
  const blocked = [...state.blocked.values()].sort(byName);
  syncChildren($('blocked-list'), blocked.map((u) =>
    cached(sideCache, `blocked:${u.username}`, `${u.display_name}`, () => blockedItem(u))));
  $('blocks-empty').hidden = blocked.length > 0;

  // Notifications hint.
  const canAsk = 'Notification' in window && Notification.permission === 'default';
  $('notify-hint').hidden = !canAsk || storageGet('webim:notifyDismissed') === '1';
  $('notify-menu-btn').hidden = !canAsk;
}

function byName(a, b) {
  return (a.display_name || a.username).localeCompare(b.display_name || b.username);
}

function relation(username) {
  if (state.friends.has(username)) return 'friend';
  if (state.blocked.has(username)) return 'blocked';
  if (state.outgoing.has(username)) return 'outgoing';
  if (state.incoming.has(username)) return 'incoming';
  return 'none';
}

function previewOf(r) {
  const mine = r.from === state.me.username;
  const type = r.file ? r.file.content_type : (r.localFile ? r.localFile.type : '');
  const text = r.file || r.localFile ? `${IMAGE_TYPES.has(type) ? 'Photo' : 'File'}: ${r.body}` : r.body;
  return (mine ? 'You: ' : '') + text.replace(/\s+/g, ' ').slice(0, 80);
}

function personLabel(u) {
  return h('span', { class: 'person-text' },
    h('span', { class: 'person-name' }, u.display_name || u.username),
    h('span', { class: 'person-sub' }, `@${u.username}`));
}

function searchItem(u, rel) {
  let action;
  switch (rel) {
    case 'friend':
      action = h('button', {
        type: 'button', class: 'btn btn-small btn-ghost', 'data-fkey': `msg:${u.username}`,
        'data-testid': 'message-user', onclick: () => openConversation(u.username),
      }, 'Message');
      break;
    case 'outgoing':
      action = h('span', { class: 'tag' }, 'Requested');
      break;
    case 'incoming':
      action = h('button', {
        type: 'button', class: 'btn btn-small btn-primary', 'data-fkey': `saccept:${u.username}`,
        'data-testid': 'accept', onclick: (e) => acceptRequest(u, e.currentTarget),
      }, 'Accept');
      break;
    case 'blocked':
      action = h('span', { class: 'tag' }, 'Blocked');
      break;
    default:
      action = h('button', {
        type: 'button', class: 'btn btn-small btn-primary', 'data-fkey': `add:${u.username}`,
        'data-testid': 'add-friend', 'aria-label': `Add ${u.display_name || u.username} as a friend`,
        onclick: (e) => addFriend(u, e.currentTarget),
      }, 'Add friend');
  }
  return h('li', { class: 'person', 'data-username': u.username, 'data-testid': 'search-result' },
    avatar(u, { size: 'sm' }), personLabel(u), action);
}

function incomingItem(u) {
  const name = u.display_name || u.username;
  return h('li', { class: 'person request', 'data-username': u.username, 'data-testid': 'incoming-request' },
    avatar(u, { size: 'sm' }), personLabel(u),
    h('span', { class: 'actions' },
      h('button', {
        type: 'button', class: 'btn btn-small btn-primary', 'data-fkey': `accept:${u.username}`,
        'data-testid': 'accept', 'aria-label': `Accept friend request from ${name}`,
        onclick: (e) => acceptRequest(u, e.currentTarget),
      }, 'Accept'),
      h('button', {
        type: 'button', class: 'btn btn-small btn-ghost', 'data-fkey': `refuse:${u.username}`,
        'data-testid': 'refuse', 'aria-label': `Refuse friend request from ${name}`,
        onclick: (e) => refuseRequest(u, e.currentTarget),
      }, 'Refuse')));
}

function outgoingItem(u) {
  const name = u.display_name || u.username;
  return h('li', { class: 'person', 'data-username': u.username, 'data-testid': 'outgoing-request' },
    avatar(u, { size: 'sm' }), personLabel(u),
    h('span', { class: 'actions' },
      h('span', { class: 'tag' }, 'Pending'),
      h('button', {
        type: 'button', class: 'btn btn-small btn-ghost', 'data-fkey': `cancel:${u.username}`,
        'aria-label': `Cancel friend request to ${name}`,
        onclick: (e) => cancelRequest(u, e.currentTarget),
      }, 'Cancel')));
}

function blockedItem(u) {
  const name = u.display_name || u.username;
  return h('li', { class: 'person', 'data-username': u.username, 'data-testid': 'blocked-user' },
    avatar(u, { size: 'sm' }), personLabel(u),
    h('button', {
      type: 'button', class: 'btn btn-small btn-ghost', 'data-fkey': `unblock:${u.username}`,
      'data-testid': 'unblock', 'aria-label': `Unblock ${name}`,
      onclick: (e) => unblockUser(u.username, e.currentTarget),
    }, 'Unblock'));
}

const friendRows = new Map(); // username -> { li, btn, sig }

// friendItem returns the row of a friend (or past correspondent). The row and its
// button stay the same elements across updates, so focus and clicks are never lost.
function friendItem(username, online, unread, preview, sig) {
  let row = friendRows.get(username);
  if (!row) {
    const btn = h('button', {
      type: 'button', class: 'friend-btn', 'data-fkey': `friend:${username}`,
      onclick: () => openConversation(username),
    });
    const li = h('li', { class: 'friend', 'data-username': username, 'data-testid': 'friend' }, btn);
    row = { li, btn, sig: null };
    friendRows.set(username, row);
  }
  if (row.sig === sig) return row.li;
  row.sig = sig;
  const { li, btn } = row;
  const u = userOf(username);
  const name = nameOf(username);
  const status = online === null ? (state.blocked.has(username) ? 'blocked' : 'not a friend')
    : (online ? 'online' : 'offline');
  if (online === null) delete li.dataset.online;
  else li.dataset.online = String(online);
  // The name comes from the visible text (WCAG 2.5.3: a spoken label must
  // contain it), with the status and the count spelled out beside it.
  if (state.active === username) btn.setAttribute('aria-current', 'true');
  else btn.removeAttribute('aria-current');
  btn.replaceChildren(
    avatar(u, { size: 'md', online: online === null ? undefined : online }),
    h('span', { class: 'person-text' },
      h('span', { class: 'person-name' }, name),
      preview ? h('span', { class: 'visually-hidden' }, `, ${status}, `) : h('span', { class: 'visually-hidden' }, ', '),
      h('span', { class: 'person-sub' }, preview || (online === null ? status : (online ? 'Online' : 'Offline')))),
    unread ? h('span', { class: 'badge', 'data-testid': 'unread-count' }, String(unread)) : '',
    unread ? h('span', { class: 'visually-hidden' }, ' unread') : '');
  return li;
}

function renderTitle() {
  let total = 0;
  for (const c of state.convs.values()) total += unreadOf(c);
  const title = total > 0 ? `(${total}) ${APP_NAME}` : APP_NAME;
  if (document.title !== title) document.title = title;
}

// renderMain shows the welcome panel, a conversation or the block list.
function renderMain() {
  const app = $('app-screen');
  app.dataset.view = state.view;
  $('welcome').hidden = !(state.view === 'list' || (state.view === 'conversation' && !state.active));
  $('conversation').hidden = !(state.view === 'conversation' && state.active);
  $('blocks-view').hidden = state.view !== 'blocks';
  if (state.view === 'conversation' && state.active) renderConversation(conv(state.active));
}

let shownConv = null;

function renderConversation(c) {
  const peer = c.username;
  const group = isGroupKey(peer);
  const friend = group ? null : state.friends.get(peer);
  const blocked = !group && state.blocked.has(peer);
  const switched = shownConv !== peer;
  shownConv = peer;
  $('app-screen').dataset.conv = group ? 'group' : 'direct';
  if (group) {
    renderGroupConversation(c, switched);
    return;
  }
  hideGroupHeader();

  $('conv-title').textContent = nameOf(peer);
  const avSig = `${peer}|${nameOf(peer)}|${friend ? friend.online : 'x'}`;
  if ($('conv-avatar').dataset.sig !== avSig) {
    $('conv-avatar').dataset.sig = avSig;
    $('conv-avatar').replaceChildren(avatar(userOf(peer), { size: 'md', online: friend ? Boolean(friend.online) : undefined }));
  }
  const statusEl = $('conv-status');
  if (friend) {
    statusEl.textContent = friend.online ? 'Online' : 'Offline';
    statusEl.dataset.online = String(Boolean(friend.online));
  } else {
    statusEl.textContent = blocked ? 'Blocked' : `@${peer} · not a friend`;
    delete statusEl.dataset.online;
  }
  $('friend-menu-btn').hidden = false;
  $('unfriend-btn').hidden = !friend;
  $('block-btn').hidden = blocked;
  $('unblock-btn').hidden = !blocked;

  // Composer: only friends can be messaged.
  const canSend = Boolean(friend);
  const note = $('composer-note');
  if (!canSend) {
    note.hidden = false;
    note.textContent = blocked
      ? `You blocked ${nameOf(peer)}. Unblock them to talk again.`
      : `You can message ${nameOf(peer)} once you are friends.`;
  } else {
    note.hidden = true;
  }
  for (const id of ['message-input', 'send-btn', 'emoji-btn', 'attach-btn']) $(id).disabled = !canSend;
  renderMessages(c, switched);
}

// renderGroupConversation is renderConversation for a group: its header, and
// a composer open to members.
function renderGroupConversation(c, switched) {
  const member = renderGroupHeader(c.username);
  $('friend-menu-btn').hidden = true;
  const note = $('composer-note');
  note.hidden = member;
  note.textContent = member ? '' : 'You are no longer in this group.';
  for (const id of ['message-input', 'send-btn', 'emoji-btn', 'attach-btn']) $(id).disabled = !member;
  renderMessages(c, switched);
}

function renderMessages(c, switched) {
  const peer = c.username;
  const scroller = $('message-scroll');
  const nearBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
  const els = [];
  let prev = null;
  for (const r of c.items) {
    const d = r.sentAt;
    if (!prev || dayKey(prev.sentAt) !== dayKey(d)) {
      els.push(cached(msgCache, `day:${peer}:${dayKey(d)}`, dayLabel(d), () =>
        h('li', { class: 'day-divider' }, h('span', null, dayLabel(d)))));
    }
    const first = !prev || prev.from !== r.from || dayKey(prev.sentAt) !== dayKey(d) ||
      d - prev.sentAt > 5 * 60 * 1000;
    const el = messageEl(r, messageActions);
    el.classList.toggle('first', first);
    if (r.from === state.me.username) decorateTick(el, peer, r);
    els.push(el);
    prev = r;
  }
  syncChildren($('message-list'), els);
  $('conv-empty').hidden = c.items.length > 0;
  if (switched || nearBottom || c.stick) {
    scroller.scrollTop = scroller.scrollHeight;
    c.stick = false;
    c.newBelow = false;
  }
  $('new-below').hidden = !c.newBelow;
  renderTyping(peer);

  // Reading: the open conversation counts as read while the page is visible.
  if (!document.hidden) markRead(c);
}

function markRead(c) {
  let max = c.lastRead;
  for (const r of c.items) if (r.id && r.from !== state.me.username && r.id > max) max = r.id;
  if (max !== c.lastRead) {
    c.lastRead = max;
    saveLastRead(c);
    render();
  }
  // The server's marker: the other side's ticks and every device's counts.
  sendRead(c.username, max);
}

const msgCache = new Map(); // day dividers

const messageActions = {
  retry: (r) => { r.attempts = 0; deliver(r); },
  remove: (r) => discardLocal(r),
};

// ---------------------------------------------------------------- toasts

let toastTimer = 0;

function toast(text, ms = 5000) {
  const t = $('toast');
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, ms);
}

// ---------------------------------------------------------------- messages

// addRecord inserts a record keeping stored messages in id order, pending ones last.
function addRecord(c, r) {
  r.conv = c;
  if (r.id) {
    c.byId.set(r.id, r);
    let i = c.items.length;
    while (i > 0 && (!c.items[i - 1].id || c.items[i - 1].id > r.id)) i--;
    c.items.splice(i, 0, r);
  } else {
    c.items.push(r);
  }
}

function removeRecord(r) {
  const c = r.conv;
  const i = c.items.indexOf(r);
  if (i >= 0) c.items.splice(i, 1);
  if (r.id && c.byId.get(r.id) === r) c.byId.delete(r.id);
  if (r.previewUrl) URL.revokeObjectURL(r.previewUrl);
}

function recordFrom(m, seq) {
  return {
    id: m.id, seq, from: m.from, to: m.to, body: m.body, file: m.file || null,
    sentAt: new Date(m.sent_at), status: 'sent',
  };
}

// onMessageEvent files a message from the queue into its conversation, once.
function onMessageEvent(m, seq) {
  const me = state.me.username;
  const peer = m.group ? groupKey(m.group) : (m.from === me ? m.to : m.from);
  const c = conv(peer);
  messageArrived(peer, m.from);
  const known = c.byId.get(m.id);
  if (known) {
    known.seq = seq;
    return;
  }
  // Our own send whose answer has not come (or was lost): the event carries
  // its client_msg_id, so the pending copy becomes this message.
  const pending = m.from === me && m.client_msg_id && c.items.find((r) => !r.id && r.cid === m.client_msg_id);
  if (pending) {
    pending.seq = seq;
    confirmSent(pending, m);
    return;
  }
  const r = recordFrom(m, seq);
  addRecord(c, r);
  if (m.from !== me) {
    if (state.active === peer) {
      c.stick = isNearBottom();
      if (!c.stick) c.newBelow = true;
    }
    if (document.hidden && state.caughtUp && r.id > c.lastRead) notify(peer, r);
  }
}

function isNearBottom() {
  const s = $('message-scroll');
  return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
}

// confirmSent marks a local record sent, or drops it if the queue already delivered the same id.
function confirmSent(r, m) {
  const c = r.conv;
  const twin = c.byId.get(m.id);
  if (twin && twin !== r) {
    removeRecord(r);
  } else {
    const i = c.items.indexOf(r);
    if (i >= 0) c.items.splice(i, 1);
    if (r.previewUrl && m.file) {
      URL.revokeObjectURL(r.previewUrl);
      r.previewUrl = null;
    }
    Object.assign(r, { id: m.id, body: m.body, file: m.file || null, sentAt: new Date(m.sent_at), status: 'sent' });
    r.localFile = null;
    addRecord(c, r);
  }
  render();
}

function newCid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
}

function sendText() {
  const input = $('message-input');
  const text = input.value;
  const peer = state.active;
  if (!peer || !text.trim()) return;
  if ([...text].length > MAX_BODY) {
    toast(`A message can be at most ${MAX_BODY.toLocaleString('en')} characters.`);
    return;
  }
  const c = conv(peer);
  const r = {
    cid: newCid(), from: state.me.username, to: peer, body: text,
    sentAt: new Date(), status: 'pending', attempts: 0,
  };
  addRecord(c, r);
  c.stick = true;
  input.value = '';
  autosize();
  showLength();
  render();
  deliver(r);
}

function sendFile(file) {
  const peer = state.active;
  if (!peer || !(state.friends.has(peer) || groupOf(peer))) {
    toast('Open a conversation with a friend or a group to send files.');
    return;
  }
  const c = conv(peer);
  const r = {
    cid: newCid(), from: state.me.username, to: peer, body: file.name || 'file',
    sentAt: new Date(), status: 'pending', attempts: 0, localFile: file, progress: 0,
    previewUrl: IMAGE_TYPES.has(file.type) ? URL.createObjectURL(file) : null,
  };
  addRecord(c, r);
  c.stick = true;
  render();
  deliver(r);
}

// deliver sends a local record, retrying network errors with the same client_msg_id.
async function deliver(r) {
  // Gone, or already confirmed by its event from the queue.
  if (!r.conv.items.includes(r) || r.id) return;
  r.status = 'pending';
  r.error = null;
  render();
  try {
    const res = r.localFile
      ? await uploadFile(r.to, r.localFile, r.cid, (p) => {
        r.progress = p;
        if (r.progressEl) r.progressEl.value = p;
      })
      : isGroupKey(r.to)
        ? await api.sendGroupMessage(groupIdOf(r.to), r.body, r.cid)
        : await api.sendMessage(r.to, r.body, r.cid);
    confirmSent(r, res.message);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      r.status = 'failed';
      render();
      onUnauthorized(e);
      return;
    }
    if (isRetryable(e) && r.attempts < SEND_ATTEMPTS) {
      r.attempts++;
      const delay = Math.min(15000, 1000 * 2 ** (r.attempts - 1));
      setTimeout(() => deliver(r), delay);
      return;
    }
    r.status = e instanceof NetworkError ? 'failed' : 'error';
    r.retryable = isRetryable(e);
    r.error = e.message;
    render();
  }
}

// retryFailed sends again every message that gave up on a network error, once
// the connection is back (same client_msg_id, so nothing doubles).
function retryFailed() {
  for (const c of state.convs.values()) {
    for (const r of c.items) {
      if (r.status === 'failed') {
        r.attempts = 0;
        deliver(r);
      }
    }
  }
}

function discardLocal(r) {
  if (r.id) return;
  removeRecord(r);
  render();
}

// ---------------------------------------------------------------- notifications

function notify(peer, r) {
  if (!('Notification' in window) || Notification.permission !== 'granted') return;
  try {
    const g = groupOf(peer);
    const n = new Notification(g ? `${nameOf(r.from)} in ${g.name}` : nameOf(peer), {
      body: r.file ? `Sent a file: ${r.body}` : r.body.slice(0, 200),
      tag: `webim-${peer}`,
    });
    n.addEventListener('click', () => {
      window.focus();
      openConversation(peer);
      n.close();
    });
  } catch {
    // Some platforms only allow notifications from a service worker.
  }
}

async function askNotifications() {
  if (!('Notification' in window)) return;
  try {
    const p = await Notification.requestPermission();
    if (p === 'granted') toast('Desktop notifications are on.');
    else if (p === 'denied') toast('Notifications are blocked in your browser settings.');
  } catch {
    // Ignore: the browser refused to ask.
  }
  render();
}

// ---------------------------------------------------------------- events from the queue

function handleEvent(ev) {
  if (typeof ev.seq === 'number' && ev.seq > state.maxSeq) state.maxSeq = ev.seq;
  if (ev.type !== 'message') listGen++;
  switch (ev.type) {
    case 'message':
      if (ev.message) onMessageEvent(ev.message, ev.seq);
      break;
    case 'presence': {
      const u = ev.user && remember(ev.user);
      if (u && state.friends.has(u.username)) {
        state.friends.set(u.username, { ...state.friends.get(u.username), online: Boolean(u.online) });
      }
      break;
    }
    case 'friend_request': {
      const u = remember(ev.user);
      if (u && !state.friends.has(u.username)) {
        state.incoming.set(u.username, u);
        if (state.caughtUp) toast(`${u.display_name || u.username} wants to be your friend.`);
      }
      break;
    }
    case 'friend_accepted': {
      const u = remember(ev.user);
      if (u) {
        state.incoming.delete(u.username);
        state.outgoing.delete(u.username);
        state.friends.set(u.username, { ...u, online: Boolean(u.online) });
        if (state.caughtUp) toast(`You and ${u.display_name || u.username} are now friends.`);
      }
      refreshFriendsSoon();
      break;
    }
    case 'friend_removed': {
      const u = ev.user;
      if (u) {
        state.friends.delete(u.username);
        state.incoming.delete(u.username);
        state.outgoing.delete(u.username);
      }
      refreshFriendsSoon();
      break;
    }
    case 'user_updated': {
      const u = ev.user && remember(ev.user);
      if (u && state.friends.has(u.username)) {
        state.friends.set(u.username, { ...state.friends.get(u.username), display_name: u.display_name });
      }
      break;
    }
    case 'session_replaced':
      showReplaced();
      return false;
    default:
      handleGroupEvent(ev);
      break;
  }
  return true;
}

let refreshTimer = 0;

function refreshFriendsSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => refreshLists().catch(() => {}), 300);
}

// refreshLists reloads friends, requests and blocks (events are transient, so after a gap
// in the connection the lists are fetched again).
// listGen counts local changes to those lists; a fetch that a change overtook is
// stale, so it is dropped and made again.
let listGen = 0;

async function refreshLists() {
  const me = state.me;
  const gen = listGen;
  const [f, b] = await Promise.all([api.friends(), api.blocks()]);
  if (state.me !== me) return;
  if (gen !== listGen) {
    refreshFriendsSoon();
    return;
  }
  state.friends = new Map(f.friends.map((u) => [u.username, remember(u)]));
  state.incoming = new Map(f.incoming.map((u) => [u.username, remember(u)]));
  state.outgoing = new Map(f.outgoing.map((u) => [u.username, remember(u)]));
  state.blocked = new Map(b.blocked.map((u) => [u.username, remember(u)]));
  render();
}

// ---------------------------------------------------------------- actions

async function withButton(btn, fn) {
  if (btn) btn.disabled = true;
  try {
    await fn();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      onUnauthorized(e);
      return;
    }
    toast(e.message);
  } finally {
    if (btn && btn.isConnected) btn.disabled = false;
  }
  render();
}

function addFriend(u, btn) {
  return withButton(btn, async () => {
    try {
      const res = await api.requestFriend(u.username);
      listGen++;
      // 200 (a body) would mean it completed a friendship; 201 means a pending request.
      void res;
    } catch (e) {
      if (!(e instanceof ApiError && (e.code === 'already_requested' || e.code === 'already_friends'))) throw e;
    }
    state.outgoing.set(u.username, remember(u));
    await refreshLists();
    if (state.friends.has(u.username)) toast(`You and ${u.display_name || u.username} are now friends.`);
    else toast(`Friend request sent to ${u.display_name || u.username}.`);
  });
}

function acceptRequest(u, btn) {
  return withButton(btn, async () => {
    await api.acceptFriend(u.username);
    listGen++;
    state.incoming.delete(u.username);
    state.friends.set(u.username, { ...remember(u), online: Boolean(u.online) });
    await refreshLists();
  });
}

function refuseRequest(u, btn) {
  return withButton(btn, async () => {
    await api.refuseFriend(u.username);
    listGen++;
    state.incoming.delete(u.username);
  });
}

function cancelRequest(u, btn) {
  return withButton(btn, async () => {
    await api.removeFriend(u.username);
    listGen++;
    state.outgoing.delete(u.username);
  });
}

function unfriend(username) {
  return withButton($('unfriend-btn'), async () => {
    await api.removeFriend(username);
    listGen++;
    state.friends.delete(username);
    toast(`You are no longer friends with ${nameOf(username)}.`);
  });
}

function blockUser(username) {
  return withButton($('block-btn'), async () => {
    await api.block(username);
    listGen++;
    state.friends.delete(username);
    state.incoming.delete(username);
    state.outgoing.delete(username);
    state.blocked.set(username, userOf(username));
    toast(`You blocked ${nameOf(username)}.`);
  });
}

function unblockUser(username, btn) {
  return withButton(btn, async () => {
    await api.unblock(username);
    listGen++;
    state.blocked.delete(username);
    toast(`You unblocked ${nameOf(username)}.`);
  });
}

async function clean() {
  const btn = $('clean-btn');
  const upto = state.maxSeq;
  btn.disabled = true;
  try {
    const res = await api.clean(upto);
    for (const c of state.convs.values()) {
      for (const r of [...c.items]) {
        if (r.seq !== undefined && r.seq <= upto) {
          removeRecord(r);
          if (r.el) r.el.remove();
        }
      }
    }
    const n = res.removed;
    toast(n === 0 ? 'Nothing to clean.' : `Removed ${n} ${n === 1 ? 'message' : 'messages'}.`);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) onUnauthorized(e);
    else toast(`Could not clean: ${e.message}`);
  } finally {
    btn.disabled = false;
    render();
  }
}

// The open conversation is kept per tab (sessionStorage), so that a reload
// (a pull-to-refresh, an upgrade) brings its reader back to it, not to the list.
const OPEN_KEY = 'webim:open';

function keepOpen(username) {
  try {
    if (username) sessionStorage.setItem(OPEN_KEY, `${state.me.username}\n${username}`);
    else sessionStorage.removeItem(OPEN_KEY);
  } catch {
    // Without storage a reload shows the list.
  }
}

function keptOpen() {
  try {
    const [me, peer] = (sessionStorage.getItem(OPEN_KEY) || '').split('\n');
    return state.me && me === state.me.username ? peer : '';
  } catch {
    return '';
  }
}

function openConversation(username) {
  keepOpen(username);
  state.active = username;
  state.view = 'conversation';
  const c = conv(username);
  c.stick = true;
  closeSearchOnMobile();
  render();
  queueMicrotask(() => {
    if (!$('message-input').disabled && window.matchMedia('(min-width: 721px)').matches) {
      $('message-input').focus();
    }
  });
}

function closeSearchOnMobile() {
  if (window.matchMedia('(max-width: 720px)').matches && state.search.q) {
    $('user-search').value = '';
    setSearch('');
  }
}

function showList() {
  keepOpen('');
  state.view = 'list';
  state.active = null;
  shownConv = null;
  render();
  const f = document.querySelector('.friend-btn');
  if (f) f.focus();
}

// ---------------------------------------------------------------- search

function setSearch(q) {
  const s = state.search;
  s.q = q.trim();
  clearTimeout(s.timer);
  if (s.ctrl) s.ctrl.abort();
  if (!s.q) {
    s.results = null;
    render();
    return;
  }
  s.timer = setTimeout(async () => {
    const ctrl = new AbortController();
    s.ctrl = ctrl;
    try {
      const res = await api.searchUsers(s.q, 20, ctrl.signal);
      if (ctrl.signal.aborted) return;
      s.results = res.users.map(remember);
      render();
    } catch (e) {
      if (e.name === 'AbortError') return;
      if (e instanceof ApiError && e.status === 401) onUnauthorized(e);
    }
  }, 250);
}

// ---------------------------------------------------------------- composer

function autosize() {
  const t = $('message-input');
  t.style.height = 'auto';
  t.style.height = `${Math.min(t.scrollHeight, 160)}px`;
}

// showLength counts characters once a message nears the 4000 limit.
function showLength() {
  const n = [...$('message-input').value].length;
  const el = $('char-count');
  el.hidden = n < MAX_BODY - 500;
  el.textContent = `${n.toLocaleString('en')} / ${MAX_BODY.toLocaleString('en')}`;
  el.classList.toggle('over', n > MAX_BODY);
}

function setupComposer() {
  const input = $('message-input');
  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    sendText();
    input.focus();
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      sendText();
    }
  });
  input.addEventListener('input', autosize);
  input.addEventListener('input', () => typingInput(state.active));
  input.addEventListener('input', showLength);
  input.addEventListener('paste', (e) => {
    const files = e.clipboardData ? [...e.clipboardData.files] : [];
    if (files.length) {
      e.preventDefault();
      files.forEach(sendFile);
    }
  });
  setupEmojiPicker($('emoji-btn'), $('emoji-picker'), input);

  $('attach-btn').addEventListener('click', () => $('file-input').click());
  $('file-input').addEventListener('change', (e) => {
    [...e.target.files].forEach(sendFile);
    e.target.value = '';
  });

  // Drag and drop onto the conversation.
  const zone = $('conversation');
  const overlay = $('drop-overlay');
  let depth = 0;
  const hasFiles = (e) => e.dataTransfer && [...e.dataTransfer.types].includes('Files');
  zone.addEventListener('dragenter', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth++;
    overlay.hidden = !(state.friends.has(state.active) || groupOf(state.active));
  });
  zone.addEventListener('dragover', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = state.friends.has(state.active) || groupOf(state.active) ? 'copy' : 'none';
  });
  zone.addEventListener('dragleave', () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) overlay.hidden = true;
  });
  zone.addEventListener('drop', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth = 0;
    overlay.hidden = true;
    [...e.dataTransfer.files].forEach(sendFile);
  });
  // Dropping a file elsewhere must not navigate away from the chat.
  window.addEventListener('dragover', (e) => e.preventDefault());
  window.addEventListener('drop', (e) => e.preventDefault());
}

// ---------------------------------------------------------------- connection

function setConnState(s) {
  const el = $('conn-status');
  el.dataset.state = s;
  el.hidden = s === 'online';
  $('conn-text').textContent = s === 'online' ? 'Connected' : 'Reconnecting…';
}

function startPolling() {
  stopPolling();
  state.caughtUp = false;
  const p = new Poller({
    poll: (cursor, timeout, signal) => api.poll(cursor, timeout, signal),
    onEvents: (events, full) => {
      for (const ev of events) {
        if (handleEvent(ev) === false) return false;
      }
      if (!full) state.caughtUp = true;
      render();
      return true;
    },
    onState: (s, wasDown) => {
      setConnState(s);
      if (s === 'online' && wasDown) {
        refreshLists().catch(() => {});
        loadGroups().catch(() => {});
        retryFailed();
      }
    },
    onFatal: (e) => onUnauthorized(e),
    isCaughtUp: () => state.caughtUp,
  });
  state.poller = p;
  p.start();
}

function stopPolling() {
  if (state.poller) state.poller.stop();
  state.poller = null;
  setConnState('online');
}

// onUnauthorized handles a 401 from any request.
function onUnauthorized(e) {
  if (!state.me) return;
  if (e && e.code === 'session_replaced') {
    showReplaced();
    return;
  }
  const username = state.me.username;
  signOutLocally();
  showAuth('login', { username, notice: 'Your session has ended. Please log in again.' });
}

function showReplaced() {
  if (!state.me) return;
  const username = state.me.username;
  stopPolling();
  state.replacedUser = username;
  $('replaced-notice').hidden = false;
  $('signin-again-btn').focus();
}

// ---------------------------------------------------------------- session

function startApp(user) {
  signOutLocally();
  state.me = remember(user);
  $('replaced-notice').hidden = true;
  show('app');
  render();
  const me = state.me;
  refreshLists().then(() => {
    // Reopened only while it is still a friend's and nothing else was opened.
    const peer = keptOpen();
    if (state.me === me && state.view === 'list' && state.friends.has(peer)) openConversation(peer);
  }, (e) => {
    if (e instanceof ApiError && e.status === 401) onUnauthorized(e);
  });
  loadGroups().catch(() => {});
  startPolling();
  openFromURL(openConversation);
}

// signOutLocally forgets everything about the current user on this page.
function signOutLocally() {
  stopPolling();
  for (const c of state.convs.values()) {
    for (const r of c.items) if (r.previewUrl) URL.revokeObjectURL(r.previewUrl);
  }
  Object.assign(state, {
    me: null, people: new Map(), friends: new Map(), incoming: new Map(), outgoing: new Map(),
    blocked: new Map(), convs: new Map(), active: null, view: 'list', maxSeq: 0, caughtUp: false,
  });
  state.search.q = '';
  state.search.results = null;
  $('user-search').value = '';
  sideCache.clear();
  friendRows.clear();
  resetGroups();
  msgCache.clear();
  shownConv = null;
  for (const id of ['search-results', 'incoming-list', 'friend-list', 'outgoing-list', 'blocked-list', 'message-list', 'group-list']) {
    $(id).replaceChildren();
  }
  $('message-input').value = '';
  document.title = APP_NAME;
}

async function logout() {
  try {
    await api.logout();
  } catch (e) {
    if (e instanceof NetworkError) {
      toast('Could not log out: the server cannot be reached.');
      return;
    }
    // A 401 means the session is already gone: carry on.
  }
  const username = state.me ? state.me.username : '';
  keepOpen('');
  signOutLocally();
  showAuth('login', { username: '', notice: username ? 'You have logged out.' : '' });
}

function setupApp() {
  $('signin-again-btn').addEventListener('click', () => {
    const username = state.replacedUser || (state.me && state.me.username) || '';
    signOutLocally();
    $('replaced-notice').hidden = true;
    showAuth('login', { username });
  });

  setupComposer();
  setupGroups({ render, open: openConversation, toast, conv, onError: (e) => { if (e instanceof ApiError && e.status === 401) onUnauthorized(e); } });
  // "New messages" appears when one arrives while reading further up.
  $('new-below').addEventListener('click', () => {
    const sc = $('message-scroll');
    sc.scrollTop = sc.scrollHeight;
    if (state.active) conv(state.active).newBelow = false;
    $('new-below').hidden = true;
    $('message-input').focus();
  });
  $('message-scroll').addEventListener('scroll', () => {
    if (state.active && !$('new-below').hidden && isNearBottom()) {
      conv(state.active).newBelow = false;
      $('new-below').hidden = true;
    }
  }, { passive: true });
  $('user-search').addEventListener('input', (e) => setSearch(e.target.value));
  $('user-search').addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      e.target.value = '';
      setSearch('');
    }
  });
  $('clean-btn').addEventListener('click', clean);
  $('back-btn').addEventListener('click', showList);
  $('blocks-back-btn').addEventListener('click', showList);
  $('blocks-close-btn').addEventListener('click', showList);

  const account = setupMenu($('account-menu-btn'), $('account-menu'));
  $('logout-btn').addEventListener('click', () => { account.close(); logout(); });
  $('blocks-btn').addEventListener('click', () => {
    account.close();
    keepOpen('');
    state.view = 'blocks';
    state.active = null;
    render();
    $('blocks-close-btn').focus();
  });
  const settings = setupSettings({
    me: () => state.me,
    onRenamed: (user) => { state.me = remember(user); render(); },
    onDeleted: () => { signOutLocally(); showAuth('login'); },
  });
  $('settings-btn').addEventListener('click', () => { account.close(); settings.open(); });
  setupPush({
    activeKey: () => (state.me && state.view === 'conversation' && state.active ? `u:${state.active}` : null),
    open: (username) => { if (state.me) openConversation(username); },
  });
  $('notify-menu-btn').addEventListener('click', () => { account.close(); askNotifications(); });
  $('notify-btn').addEventListener('click', askNotifications);
  $('notify-dismiss').addEventListener('click', () => {
    storageSet('webim:notifyDismissed', '1');
    render();
  });

  const friendMenu = setupMenu($('friend-menu-btn'), $('friend-menu'));
  $('unfriend-btn').addEventListener('click', () => { friendMenu.close(); unfriend(state.active); });
  $('block-btn').addEventListener('click', () => { friendMenu.close(); blockUser(state.active); });
  $('unblock-btn').addEventListener('click', () => { friendMenu.close(); unblockUser(state.active, $('unblock-btn')); });

  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) render();
  });
  window.addEventListener('focus', () => render());
}

// boot asks the server whether the cookie still holds a session.
async function boot() {
  setupAuth(startApp);
  loadServerConfig();
  setupApp();
  let delay = 1000;
  for (;;) {
    try {
      // GET /api/session, not /api/me: a visitor without a session gets
      // {"user": null}, not a 401 that the console would show as an error.
      const res = await api.session();
      if (res.user) startApp(res.user);
      else showAuth('login');
      return;
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        showAuth('login');
        return;
      }
      $('splash-text').textContent = 'Cannot reach the server. Retrying…';
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 30000);
    }
  }
}

boot();
