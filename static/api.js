// api.js: the only place that talks to the webim HTTP API (API.md, version 1).

// ApiError is an error answer from the server: status plus the API's code and message.
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || `Request failed (${status})`);
    this.name = 'ApiError';
    this.status = status;
    this.code = code || 'unknown';
  }
}

// NetworkError means the request never got an answer (offline, server down, aborted by timeout).
export class NetworkError extends Error {
  constructor(message) {
    super(message || 'Cannot reach the server');
    this.name = 'NetworkError';
  }
}

// isRetryable tells whether repeating the same request later may succeed.
export function isRetryable(err) {
  if (err instanceof NetworkError) return true;
  if (err instanceof ApiError) return err.status === 429 || err.status >= 500;
  return false;
}

async function errorFrom(res) {
  let code = '';
  let message = '';
  try {
    const data = await res.json();
    if (data && data.error) {
      code = data.error.code || '';
      message = data.error.message || '';
    }
  } catch {
    // Not JSON (a proxy error page, for example): keep the generic message.
  }
  if (!message) {
    message = res.status >= 500
      ? 'The server had a problem. Please try again.'
      : `Request failed (${res.status}).`;
  }
  return new ApiError(res.status, code, message);
}

// request sends one API request and returns the decoded JSON body (null for 204).
async function request(method, path, body, { signal, timeoutMs = 20000, priority = 'auto' } = {}) {
  const ctrl = new AbortController();
  const onAbort = () => ctrl.abort();
  if (signal) {
    if (signal.aborted) ctrl.abort();
    else signal.addEventListener('abort', onAbort, { once: true });
  }
  const timer = setTimeout(() => ctrl.abort(), timeoutMs);
  const init = { method, credentials: 'same-origin', signal: ctrl.signal, headers: {}, priority };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    if (signal && signal.aborted) throw new DOMException('Aborted', 'AbortError');
    throw new NetworkError();
  } finally {
    clearTimeout(timer);
    if (signal) signal.removeEventListener('abort', onAbort);
  }
  if (!res.ok) throw await errorFrom(res);
  if (res.status === 204) return null;
  try {
    return await res.json();
  } catch {
    throw new NetworkError('The server sent an unreadable answer');
  }
}

const enc = encodeURIComponent;

export const api = {
  signup: (username, password, displayName) => {
    const body = { username, password };
    if (displayName) body.display_name = displayName;
    return request('POST', '/api/signup', body);
  },
  login: (username, password) => request('POST', '/api/login', { username, password }),
  logout: () => request('POST', '/api/logout'),
  me: () => request('GET', '/api/me'),
  session: () => request('GET', '/api/session'),
  config: () => request('GET', '/api/config'),

  searchUsers: (q, limit = 20, signal) =>
    request('GET', `/api/users?q=${enc(q)}&limit=${limit}`, undefined, { signal }),
  friends: () => request('GET', '/api/friends'),
  requestFriend: (u) => request('POST', `/api/friends/${enc(u)}/request`),
  acceptFriend: (u) => request('POST', `/api/friends/${enc(u)}/accept`),
  refuseFriend: (u) => request('POST', `/api/friends/${enc(u)}/refuse`),
  removeFriend: (u) => request('DELETE', `/api/friends/${enc(u)}`),
  blocks: () => request('GET', '/api/blocks'),
  block: (u) => request('POST', `/api/blocks/${enc(u)}`),
  unblock: (u) => request('DELETE', `/api/blocks/${enc(u)}`),

  sendMessage: (to, body, clientMsgId) =>
    request('POST', '/api/messages', { to, body, client_msg_id: clientMsgId }),
  clean: (upto) => request('POST', '/api/clean', { upto }),

  groups: () => request('GET', '/api/groups'),
  createGroup: (name, members) => request('POST', '/api/groups', { name, members }),
  renameGroup: (id, name) => request('PATCH', `/api/groups/${id}`, { name }),
  addGroupMember: (id, u) => request('POST', `/api/groups/${id}/members/${enc(u)}`),
  removeGroupMember: (id, u) => request('DELETE', `/api/groups/${id}/members/${enc(u)}`),
  sendGroupMessage: (group, body, clientMsgId) =>
    request('POST', '/api/messages', { group, body, client_msg_id: clientMsgId }),
  read: (body) => request('POST', '/api/read', body),
  conversations: () => request('GET', '/api/conversations'),
  typing: (body) => request('POST', '/api/typing', body),

  // poll waits up to timeout seconds for events after cursor.
  poll: (cursor, timeout, signal) =>
    request('GET', `/api/poll?cursor=${cursor}&timeout=${timeout}`, undefined, {
      signal,
      timeoutMs: (timeout + 15) * 1000,
      // A poll that waits is always in flight: at fetch's default (high)
      // priority it would hold back what the page loads meanwhile, and it
      // keeps the page from ever looking loaded to tools such as Lighthouse.
      priority: timeout > 0 ? 'low' : 'auto',
    }),
};

// uploadFile posts a file with XMLHttpRequest so upload progress can be shown.
// onProgress gets a fraction from 0 to 1. Resolves to the decoded JSON answer.
export function uploadFile(to, file, clientMsgId, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    // A group conversation's key is "g:ID" (groups.js).
    if (String(to).startsWith('g:')) form.append('group', to.slice(2));
    else form.append('to', to);
    form.append('client_msg_id', clientMsgId);
    form.append('file', file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/api/files');
    xhr.responseType = 'text';
    xhr.upload.addEventListener('progress', (e) => {
      if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total);
    });
    xhr.addEventListener('load', () => {
      let data = null;
      try {
        data = JSON.parse(xhr.responseText);
      } catch {
        data = null;
      }
      if (xhr.status >= 200 && xhr.status < 300 && data) {
        resolve(data);
        return;
      }
      const err = data && data.error ? data.error : {};
      reject(new ApiError(xhr.status, err.code, err.message ||
        (xhr.status === 413 ? 'The file is too large.' : `Upload failed (${xhr.status}).`)));
    });
    xhr.addEventListener('error', () => reject(new NetworkError()));
    xhr.addEventListener('abort', () => reject(new NetworkError('Upload cancelled')));
    xhr.addEventListener('timeout', () => reject(new NetworkError('Upload timed out')));
    xhr.send(form);
  });
}
