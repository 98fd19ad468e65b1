// groups.js: group conversations, read state and typing (API.md, "Groups, read
// state and typing"). app.js keeps one conversation per key: a username for a
// 1:1 conversation, "g:ID" for a group; this module owns what only groups,
// read markers and typing need, and is called from app.js at a few places.

import { api } from './api.js';
import { h, avatar } from './dom.js';
import { state, nameOf, remember } from './state.js';

const $ = (id) => document.getElementById(id);

const TYPING_SHOWN = 6000; // ms "typing…" stays after the event (API.md)
const TYPING_EVERY = 2000; // the server sends at most one per 2 s; no use sending more

export const gstate = {
  groups: new Map(), // id -> group object
  peerRead: new Map(), // username -> how far they have read our 1:1 conversation
  typing: new Map(), // conversation key -> Map(username -> expiry ms)
  readSent: new Map(), // conversation key -> highest upto posted
  lastTyping: new Map(), // conversation key -> when we last told the server
};

export const isGroupKey = (key) => typeof key === 'string' && key.startsWith('g:');
export const groupKey = (id) => `g:${id}`;
export const groupIdOf = (key) => Number(key.slice(2));
export const groupOf = (key) => (isGroupKey(key) ? gstate.groups.get(groupIdOf(key)) : null);

let hooks = { render: () => {}, open: () => {}, toast: () => {}, conv: null, onError: () => {} };

// setupGroups wires the module to app.js and the page's controls.
export function setupGroups(h0) {
  hooks = { ...hooks, ...h0 };
  $('new-group-btn').addEventListener('click', openCreateDialog);
  $('create-group-form').addEventListener('submit', (e) => {
    e.preventDefault();
    createGroup();
  });
  $('create-group-cancel').addEventListener('click', () => $('create-group-dialog').close());
  $('members-btn').addEventListener('click', toggleMembers);
  $('members-close').addEventListener('click', () => { $('members-panel').hidden = true; $('members-btn').focus(); });
  $('rename-form').addEventListener('submit', (e) => {
    e.preventDefault();
    rename();
  });
  $('add-member-form').addEventListener('submit', (e) => {
    e.preventDefault();
    addMember();
  });
  $('leave-btn').addEventListener('click', () => removeMember(state.me.username));
  document.addEventListener('visibilitychange', () => { if (!document.hidden) hooks.render(); });
  setInterval(expireTyping, 1000);
}

export function resetGroups() {
  for (const m of Object.values(gstate)) m.clear();
  groupRows.clear();
  $('members-panel').hidden = true;
}

// loadGroups fetches the groups and every conversation's read state.
export async function loadGroups() {
  const [g, cv] = await Promise.all([api.groups(), api.conversations()]);
  gstate.groups = new Map(g.groups.map((x) => [x.id, rememberGroup(x)]));
  for (const c of cv.conversations) {
    const key = c.group ? groupKey(c.group.id) : c.with.username;
    if (c.with) remember(c.with);
    const k = hooks.conv(key);
    k.lastRead = Math.max(k.lastRead, c.read_upto || 0);
    gstate.readSent.set(key, Math.max(gstate.readSent.get(key) || 0, c.read_upto || 0));
    if (c.with) gstate.peerRead.set(c.with.username, c.peer_read_upto || 0);
  }
  hooks.render();
}

function rememberGroup(g) {
  for (const m of g.members) remember({ username: m.username, display_name: m.display_name });
  return g;
}

// handleGroupEvent handles the events of this section; false for any other.
export function handleGroupEvent(ev) {
  switch (ev.type) {
    case 'group_joined':
    case 'group_updated':
      if (ev.group) {
        const fresh = !gstate.groups.has(ev.group.id);
        gstate.groups.set(ev.group.id, rememberGroup(ev.group));
        if (ev.type === 'group_joined' && fresh && state.caughtUp) hooks.toast(`You were added to ${ev.group.name}.`);
      }
      return true;
    case 'group_left':
      if (ev.group) {
        gstate.groups.delete(ev.group.id);
        if (state.caughtUp) hooks.toast(`You were removed from ${ev.group.name}.`);
      }
      return true;
    case 'read': {
      if (!ev.user) return true;
      if (ev.group) {
        const g = gstate.groups.get(ev.group);
        const m = g && g.members.find((x) => x.username === ev.user.username);
        if (m) m.read_upto = Math.max(m.read_upto || 0, ev.upto);
      } else {
        const u = ev.user.username;
        gstate.peerRead.set(u, Math.max(gstate.peerRead.get(u) || 0, ev.upto));
      }
      return true;
    }
    case 'typing': {
      if (!ev.user) return true;
      const key = ev.group ? groupKey(ev.group) : ev.user.username;
      remember(ev.user);
      if (!gstate.typing.has(key)) gstate.typing.set(key, new Map());
      gstate.typing.get(key).set(ev.user.username, Date.now() + TYPING_SHOWN);
      return true;
    }
    default:
      return false;
  }
}

// messageArrived clears the sender's "typing…": their message is here.
export function messageArrived(key, from) {
  const t = gstate.typing.get(key);
  if (t) t.delete(from);
}

function expireTyping() {
  const now = Date.now();
  let changed = false;
  for (const t of gstate.typing.values()) {
    for (const [u, until] of t) {
      if (until <= now) {
        t.delete(u);
        changed = true;
      }
    }
  }
  if (changed) hooks.render();
}

// typingInput tells the server we are typing in key, at most every 2 s.
export function typingInput(key) {
  if (!key || !$('message-input').value.trim()) return;
  const now = Date.now();
  if (now - (gstate.lastTyping.get(key) || 0) < TYPING_EVERY) return;
  gstate.lastTyping.set(key, now);
  const body = isGroupKey(key) ? { group: groupIdOf(key) } : { to: key };
  api.typing(body).catch(() => {});
}

// sendRead posts the read marker of key once it moved past what was posted.
export function sendRead(key, upto) {
  if (!upto || upto <= (gstate.readSent.get(key) || 0)) return;
  gstate.readSent.set(key, upto);
  const body = isGroupKey(key) ? { group: groupIdOf(key), upto } : { with: key, upto };
  api.read(body).catch(() => gstate.readSent.set(key, 0));
}

// renderTyping shows who is typing in the open conversation.
export function renderTyping(key) {
  const el = $('typing-indicator');
  const t = gstate.typing.get(key);
  const names = t ? [...t.keys()].map(nameOf) : [];
  const text = names.length === 0 ? ''
    : names.length === 1 ? `${names[0]} is typing…`
      : `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]} are typing…`;
  if (el.textContent !== text) el.textContent = text;
  el.hidden = !text;
}

// statusOf is the tick of one of our sent messages: ✓ sent, ✓✓ read (1:1), or
// "read by k of n" in a group.
export function tickOf(key, r) {
  if (r.status !== 'sent' || !r.id) return null;
  const g = groupOf(key);
  if (g) {
    const others = g.members.filter((m) => m.username !== state.me.username);
    const k = others.filter((m) => (m.read_upto || 0) >= r.id).length;
    return { text: `✓ read by ${k} of ${others.length}`, label: `Read by ${k} of ${others.length}`, read: k > 0 && k === others.length };
  }
  const read = (gstate.peerRead.get(key) || 0) >= r.id;
  return read ? { text: '✓✓', label: 'Read', read: true } : { text: '✓', label: 'Sent', read: false };
}

// decorateTick updates the status mark of a rendered message in place.
export function decorateTick(el, key, r) {
  const tick = tickOf(key, r);
  const s = el.querySelector('.msg-status');
  if (!tick || !s) return;
  if (s.textContent !== tick.text) s.textContent = tick.text;
  s.title = tick.label;
  s.setAttribute('aria-label', tick.label);
  s.dataset.read = String(tick.read);
}

// groupHeader fills the conversation header for a group and reports whether
// the caller may send there.
export function renderGroupHeader(key) {
  const g = groupOf(key);
  $('conv-title').textContent = g ? g.name : 'Group';
  const status = $('conv-status');
  status.textContent = g ? `${g.members.length} member${g.members.length === 1 ? '' : 's'}` : 'You are no longer in this group';
  delete status.dataset.online;
  const sig = `g|${g ? g.name : ''}`;
  if ($('conv-avatar').dataset.sig !== sig) {
    $('conv-avatar').dataset.sig = sig;
    $('conv-avatar').replaceChildren(avatar({ username: key, display_name: g ? g.name : '#' }, { size: 'md' }));
  }
  $('members-btn').hidden = !g;
  if (!g) $('members-panel').hidden = true;
  else if (!$('members-panel').hidden) renderMembers(g);
  return Boolean(g);
}

export function hideGroupHeader() {
  $('members-btn').hidden = true;
  $('members-panel').hidden = true;
}

// ---- the sidebar's groups

const groupRows = new Map();

export function renderGroupList(unreadOf, previewOf) {
  const items = [...gstate.groups.values()].map((g) => {
    const key = groupKey(g.id);
    const c = hooks.conv(key);
    const last = c.items.length ? c.items[c.items.length - 1] : null;
    return { g, key, c, last, unread: unreadOf(c) };
  });
  items.sort((a, b) => {
    const ta = a.last ? a.last.sentAt.getTime() : 0;
    const tb = b.last ? b.last.sentAt.getTime() : 0;
    return tb - ta || b.g.id - a.g.id;
  });
  const els = items.map(({ g, key, last, unread }) => {
    let row = groupRows.get(key);
    if (!row) {
      const btn = h('button', { type: 'button', class: 'friend-btn', 'data-fkey': `group:${g.id}`, onclick: () => hooks.open(key) });
      row = { li: h('li', { class: 'friend group-row', 'data-group': String(g.id), 'data-testid': 'group' }, btn), btn, sig: null };
      groupRows.set(key, row);
    }
    const preview = last ? `${last.from === state.me.username ? 'You' : nameOf(last.from)}: ${previewOf(last)}` : `${g.members.length} members`;
    const sig = [g.name, unread, preview, state.active === key].join('|');
    if (row.sig !== sig) {
      row.sig = sig;
      // Named by its visible text, as the friend rows are (WCAG 2.5.3).
      if (state.active === key) row.btn.setAttribute('aria-current', 'true');
      else row.btn.removeAttribute('aria-current');
      row.btn.replaceChildren(
        avatar({ username: key, display_name: g.name }, { size: 'md' }),
        h('span', { class: 'person-text' },
          h('span', { class: 'person-name' }, g.name),
          h('span', { class: 'visually-hidden' }, ', group, '),
          h('span', { class: 'person-sub' }, preview)),
        unread ? h('span', { class: 'badge', 'data-testid': 'unread-count' }, String(unread)) : '',
        unread ? h('span', { class: 'visually-hidden' }, ' unread') : '');
    }
    return row.li;
  });
  const list = $('group-list');
  for (let i = 0; i < els.length; i++) {
    if (list.children[i] !== els[i]) list.insertBefore(els[i], list.children[i] || null);
  }
  while (list.children.length > els.length) list.lastElementChild.remove();
  $('groups-empty').hidden = els.length > 0;
}

// ---- creating a group

function openCreateDialog() {
  const list = $('create-group-friends');
  const friends = [...state.friends.values()].sort((a, b) => nameOf(a.username).localeCompare(nameOf(b.username)));
  list.replaceChildren(...friends.map((u) => h('li', null,
    h('label', { class: 'check-row' },
      h('input', { type: 'checkbox', name: 'member', value: u.username, 'data-testid': 'group-friend' }),
      avatar(u, { size: 'sm' }),
      h('span', null, nameOf(u.username))))));
  $('create-group-none').hidden = friends.length > 0;
  $('create-group-error').textContent = '';
  $('create-group-name').value = '';
  $('create-group-dialog').showModal();
  $('create-group-name').focus();
}

async function createGroup() {
  const name = $('create-group-name').value.trim();
  const members = [...document.querySelectorAll('#create-group-friends input:checked')].map((i) => i.value);
  if (!name) {
    $('create-group-error').textContent = 'Give the group a name.';
    return;
  }
  const btn = $('create-group-submit');
  btn.disabled = true;
  try {
    const res = await api.createGroup(name, members);
    gstate.groups.set(res.group.id, rememberGroup(res.group));
    $('create-group-dialog').close();
    hooks.open(groupKey(res.group.id));
  } catch (e) {
    $('create-group-error').textContent = e.message;
    hooks.onError(e);
  } finally {
    btn.disabled = false;
  }
}

// ---- the members panel

function toggleMembers() {
  const panel = $('members-panel');
  const g = groupOf(state.active);
  if (!g) return;
  panel.hidden = !panel.hidden;
  $('members-btn').setAttribute('aria-expanded', String(!panel.hidden));
  if (!panel.hidden) {
    renderMembers(g);
    $('members-close').focus();
  }
}

function renderMembers(g) {
  const me = state.me.username;
  const owner = g.owner === me;
  $('members-title').textContent = `${g.name} · ${g.members.length} members`;
  $('rename-form').hidden = !owner;
  if (owner && document.activeElement !== $('rename-input')) $('rename-input').value = g.name;
  $('member-list').replaceChildren(...g.members.map((m) => h('li', { class: 'member', 'data-testid': 'member', 'data-username': m.username },
    avatar(m, { size: 'sm', online: m.online }),
    h('span', { class: 'person-text' },
      h('span', { class: 'person-name' }, m.username === me ? `${nameOf(me)} (you)` : nameOf(m.username)),
      h('span', { class: 'person-sub' }, m.username === g.owner ? 'Owner' : `@${m.username}`)),
    owner && m.username !== me ? h('button', {
      type: 'button', class: 'btn btn-ghost btn-small', 'data-testid': 'remove-member',
      'aria-label': `Remove ${nameOf(m.username)}`, onclick: () => removeMember(m.username),
    }, 'Remove') : '')));
  const select = $('add-member-select');
  const candidates = [...state.friends.keys()].filter((u) => !g.members.some((m) => m.username === u));
  const sig = candidates.join(',');
  if (select.dataset.sig !== sig) {
    select.dataset.sig = sig;
    select.replaceChildren(...candidates.map((u) => h('option', { value: u }, nameOf(u))));
  }
  $('add-member-form').hidden = candidates.length === 0;
}

async function groupAction(fn) {
  try {
    await fn();
  } catch (e) {
    hooks.toast(e.message);
    hooks.onError(e);
  }
  hooks.render();
}

function rename() {
  const g = groupOf(state.active);
  const name = $('rename-input').value.trim();
  if (!g || !name || name === g.name) return;
  groupAction(async () => {
    const res = await api.renameGroup(g.id, name);
    gstate.groups.set(g.id, rememberGroup(res.group));
  });
}

function addMember() {
  const g = groupOf(state.active);
  const u = $('add-member-select').value;
  if (!g || !u) return;
  groupAction(async () => {
    const res = await api.addGroupMember(g.id, u);
    gstate.groups.set(g.id, rememberGroup(res.group));
  });
}

function removeMember(username) {
  const g = groupOf(state.active);
  if (!g) return;
  const leaving = username === state.me.username;
  groupAction(async () => {
    await api.removeGroupMember(g.id, username);
    if (leaving) {
      gstate.groups.delete(g.id);
      $('members-panel').hidden = true;
      hooks.toast(`You left ${g.name}.`);
    } else {
      g.members = g.members.filter((m) => m.username !== username);
    }
  });
}
