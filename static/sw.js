// sw.js: the service worker. It is served at /sw.js so that its scope is the
// whole page. It shows a notification for each push the server sends while
// the page is closed (API.md: {"type":"message","from","group"?,"id","preview"?})
// and, on a click, brings a tab of the page to that conversation.

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

// askActive asks a visible page which conversation it shows (null for none),
// answering undefined when it does not answer in time.
function askActive(client) {
  return new Promise((resolve) => {
    const ch = new MessageChannel();
    const timer = setTimeout(() => resolve(undefined), 500);
    ch.port1.onmessage = (e) => { clearTimeout(timer); resolve(e.data && e.data.active); };
    client.postMessage({ type: 'webim:active?' }, [ch.port2]);
  });
}

// displayName looks the sender up among the user's friends; the username
// does when the server cannot tell (signed out, offline).
async function displayName(username) {
  try {
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), 1500);
    const res = await fetch('/api/friends', { credentials: 'same-origin', signal: ctrl.signal });
    clearTimeout(timer);
    if (!res.ok) return username;
    const data = await res.json();
    const f = (data.friends || []).find((u) => u.username === username);
    return (f && f.display_name) || username;
  } catch {
    return username;
  }
}

function convKey(p) {
  return p.group != null ? `g:${p.group}` : `u:${p.from}`;
}

async function onPush(data) {
  if (!data || data.type !== 'message' || !data.from) return;
  const wins = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
  for (const w of wins) {
    if (w.visibilityState !== 'visible') continue;
    const active = await askActive(w);
    if (active && active === convKey(data)) return; // the user is looking at it
  }
  const name = await displayName(data.from);
  await self.registration.showNotification(name, {
    body: data.preview != null && data.preview !== '' ? data.preview : 'New message',
    tag: convKey(data),
    renotify: true,
    icon: '/static/icon.svg',
    data: { conv: convKey(data), from: data.from, group: data.group, id: data.id },
  });
}

self.addEventListener('push', (event) => {
  let data = null;
  try {
    data = event.data ? event.data.json() : null;
  } catch {
    data = null;
  }
  event.waitUntil(onPush(data));
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const conv = (event.notification.data && event.notification.data.conv) || '';
  const url = new URL('/#conv=' + encodeURIComponent(conv), self.location.origin).href;
  event.waitUntil((async () => {
    const wins = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    for (const w of wins) {
      if (new URL(w.url).origin !== self.location.origin) continue;
      w.postMessage({ type: 'webim:open', conv });
      return w.focus();
    }
    return self.clients.openWindow(url);
  })());
});
