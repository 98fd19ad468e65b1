// push.js: Web Push for the page. Registers the service worker (/sw.js),
// subscribes with the server's VAPID key when the user turns the toggle on,
// unsubscribes when off, answers the worker's "which conversation is open?"
// and opens the conversation a notification was clicked for.

export function pushSupported() {
  return 'serviceWorker' in navigator && 'PushManager' in window && 'Notification' in window;
}

let registration = null;

async function ready() {
  if (!registration) {
    await navigator.serviceWorker.register('/sw.js', { scope: '/' });
    registration = await navigator.serviceWorker.ready;
  }
  return registration;
}

function keyBytes(b64url) {
  const s = b64url.replace(/-/g, '+').replace(/_/g, '/');
  const bin = atob(s + '='.repeat((4 - (s.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

async function call(method, path, body) {
  const res = await fetch(path, {
    method,
    credentials: 'same-origin',
    headers: body ? { 'Content-Type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  if (!res.ok) {
    let msg = `The server answered ${res.status}.`;
    try { msg = (await res.json()).error.message || msg; } catch { /* keep the status */ }
    throw new Error(msg);
  }
  return res.status === 204 ? null : res.json();
}

// pushEnabled says whether this browser has a subscription the page made.
export async function pushEnabled() {
  if (!pushSupported() || Notification.permission !== 'granted') return false;
  const reg = await ready();
  return Boolean(await reg.pushManager.getSubscription());
}

// enablePush asks for permission, subscribes and tells the server.
export async function enablePush() {
  if (!pushSupported()) throw new Error('This browser cannot receive push notifications.');
  const perm = await Notification.requestPermission();
  if (perm !== 'granted') throw new Error('Notifications are blocked in your browser settings.');
  const { public_key: key } = await call('GET', '/api/push/key');
  const reg = await ready();
  let sub = await reg.pushManager.getSubscription();
  if (sub) {
    // A subscription made with another key (a new server) cannot be reused.
    const had = sub.options && sub.options.applicationServerKey;
    const want = keyBytes(key);
    if (had && !equal(new Uint8Array(had), want)) {
      await sub.unsubscribe();
      sub = null;
    }
  }
  if (!sub) {
    sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(key) });
  }
  await call('POST', '/api/push/subscriptions', sub.toJSON());
}

function equal(a, b) {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

// disablePush unsubscribes the browser and tells the server.
export async function disablePush() {
  if (!pushSupported()) return;
  const reg = await ready();
  const sub = await reg.pushManager.getSubscription();
  if (!sub) return;
  const endpoint = sub.endpoint;
  await sub.unsubscribe();
  await call('DELETE', '/api/push/subscriptions', { endpoint });
}

// setupPush registers the worker and wires it to the page: activeKey()
// names the conversation on screen ("u:username", or null), open(username)
// shows one.
export function setupPush({ activeKey, open }) {
  if (!('serviceWorker' in navigator)) return;
  navigator.serviceWorker.addEventListener('message', (e) => {
    const d = e.data || {};
    if (d.type === 'webim:active?' && e.ports[0]) {
      e.ports[0].postMessage({ active: document.visibilityState === 'visible' ? activeKey() : null });
    } else if (d.type === 'webim:open') {
      openFromKey(d.conv, open);
    }
  });
  ready().catch(() => { /* no worker: no pushes, the page works the same */ });
}

function openFromKey(key, open) {
  if (typeof key === 'string' && key.startsWith('u:')) open(key.slice(2));
}

// openFromURL opens the conversation a notification's new tab was made for
// (/#conv=u:username), once the user is signed in.
export function openFromURL(open) {
  const m = /^#conv=(.*)$/.exec(location.hash);
  if (!m) return;
  history.replaceState(null, '', location.pathname + location.search);
  openFromKey(decodeURIComponent(m[1]), open);
}
