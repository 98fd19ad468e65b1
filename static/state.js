// state.js: what the page knows. The one state object, the conversations in it,
// and small lookups over them. Nothing here touches the DOM.

// IMAGE_TYPES are the sniffed content types the server serves inline (API.md).
export const IMAGE_TYPES = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp']);

export const state = {
  me: null, // user object of the signed-in user
  people: new Map(), // username -> latest user object seen
  friends: new Map(), // username -> user (with online)
  incoming: new Map(),
  outgoing: new Map(),
  blocked: new Map(),
  convs: new Map(), // username -> conversation
  active: null, // username of the open conversation
  view: 'list', // list | conversation | blocks
  maxSeq: 0, // highest seq received: what Clean acknowledges
  poller: null,
  caughtUp: false,
  search: { q: '', results: null, timer: 0, ctrl: null },
};

// A conversation with one user. items are message records, oldest first;
// records without an id (still sending) stay after the stored ones.
export function conv(username) {
  let c = state.convs.get(username);
  if (!c) {
    c = { username, items: [], byId: new Map(), lastRead: loadLastRead(username), stick: true };
    state.convs.set(username, c);
  }
  return c;
}

// storageGet and storageSet use localStorage, which may be unavailable (private modes).
export function storageGet(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

export function storageSet(key, value) {
  try {
    localStorage.setItem(key, value);
  } catch {
    // Without storage the page still works; it just forgets this.
  }
}

function lastReadKey(peer) {
  return `webim:lastRead:${state.me.username}:${peer}`;
}

// The last message id read in each conversation is kept in localStorage, so
// unread counts survive a reload.
function loadLastRead(peer) {
  return Number(storageGet(lastReadKey(peer))) || 0;
}

export function saveLastRead(c) {
  storageSet(lastReadKey(c.username), String(c.lastRead));
}

export function unreadOf(c) {
  let n = 0;
  for (const r of c.items) if (r.id && r.from !== state.me.username && r.id > c.lastRead) n++;
  return n;
}

export function remember(user) {
  if (!user || !user.username) return user;
  const old = state.people.get(user.username) || {};
  const merged = { ...old, ...user };
  state.people.set(user.username, merged);
  return merged;
}

export function nameOf(username) {
  if (state.me && username === state.me.username) return state.me.display_name || username;
  const u = state.people.get(username);
  return (u && u.display_name) || username;
}

export function userOf(username) {
  return state.people.get(username) || { username, display_name: username };
}

