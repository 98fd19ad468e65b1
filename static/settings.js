// settings.js: the account settings dialog: display name, password, push
// notifications and deleting the account (with the password to confirm).
// A native <dialog>: focus stays inside while it is open, Escape closes it.

import { pushSupported, pushEnabled, enablePush, disablePush } from './push.js';

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

async function call(method, path, body) {
  const res = await fetch(path, {
    method,
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!res.ok) {
    let msg = `The server answered ${res.status}.`;
    try { msg = (await res.json()).error.message || msg; } catch { /* keep the status */ }
    const err = new Error(msg);
    err.status = res.status;
    throw err;
  }
  return res.status === 204 ? null : res.json();
}

function field(id, label, attrs) {
  return el('div', { class: 'settings-field' },
    el('label', { for: id, text: label }),
    el('input', { id, ...attrs }));
}

// setupSettings builds the dialog. me() is the signed-in user; onRenamed(user)
// and onDeleted() tell the page.
export function setupSettings({ me, onRenamed, onDeleted }) {
  const status = (id) => el('p', { id, class: 'settings-status', role: 'status', 'aria-live': 'polite' });

  const nameForm = el('form', { class: 'settings-section', 'data-testid': 'settings-name-form' },
    el('h3', { text: 'Display name' }),
    field('settings-display-name', 'Display name', { type: 'text', maxlength: '64', required: '', autocomplete: 'nickname' }),
    el('button', { type: 'submit', class: 'btn', text: 'Save name' }),
    status('settings-name-status'));

  const pwForm = el('form', { class: 'settings-section', 'data-testid': 'settings-password-form' },
    el('h3', { text: 'Password' }),
    field('settings-current-password', 'Current password', { type: 'password', required: '', autocomplete: 'current-password' }),
    field('settings-new-password', 'New password (8 characters or more)', { type: 'password', required: '', minlength: '8', autocomplete: 'new-password' }),
    el('button', { type: 'submit', class: 'btn', text: 'Change password' }),
    status('settings-password-status'));

  const pushToggle = el('input', { type: 'checkbox', id: 'settings-push', 'data-testid': 'settings-push' });
  const pushSection = el('div', { class: 'settings-section' },
    el('h3', { text: 'Notifications' }),
    el('div', { class: 'settings-check' }, pushToggle, el('label', { for: 'settings-push', text: 'Notify me when this tab is closed' })),
    status('settings-push-status'));

  const delForm = el('form', { class: 'settings-section settings-danger', 'data-testid': 'settings-delete-form' },
    el('h3', { text: 'Delete account' }),
    el('p', { text: 'This deletes your account, your friendships and every message waiting for you. It cannot be undone.' }),
    el('button', { type: 'button', class: 'btn btn-danger', id: 'settings-delete-start', text: 'Delete account…' }));
  const confirmBox = el('div', { class: 'settings-confirm', hidden: '' },
    field('settings-delete-password', 'Type your password to confirm', { type: 'password', autocomplete: 'current-password' }),
    el('button', { type: 'submit', class: 'btn btn-danger', id: 'settings-delete-confirm', text: 'Delete my account for good' }),
    el('button', { type: 'button', class: 'btn btn-ghost', id: 'settings-delete-cancel', text: 'Cancel' }));
  delForm.append(confirmBox, status('settings-delete-status'));

  const closeBtn = el('button', { type: 'button', class: 'icon-btn settings-close', 'aria-label': 'Close settings', text: '×' });
  const dialog = el('dialog', { id: 'settings-dialog', class: 'settings-dialog', 'aria-labelledby': 'settings-title', 'data-testid': 'settings-dialog' },
    el('div', { class: 'settings-head' }, el('h2', { id: 'settings-title', text: 'Settings' }), closeBtn),
    nameForm, pwForm, pushSection, delForm);
  document.body.append(dialog);

  const $ = (id) => document.getElementById(id);
  const say = (id, text, bad) => {
    const p = $(id);
    p.textContent = text;
    p.classList.toggle('bad', Boolean(bad));
    p.setAttribute('role', bad ? 'alert' : 'status');
  };

  closeBtn.addEventListener('click', () => dialog.close());

  nameForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const { user } = await call('PATCH', '/api/me', { display_name: $('settings-display-name').value });
      onRenamed(user);
      say('settings-name-status', 'Saved.');
    } catch (err) {
      say('settings-name-status', err.message, true);
    }
  });

  pwForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      await call('POST', '/api/me/password', { password: $('settings-current-password').value, new_password: $('settings-new-password').value });
      pwForm.reset();
      say('settings-password-status', 'Password changed.');
    } catch (err) {
      say('settings-password-status', err.message, true);
    }
  });

  pushToggle.addEventListener('change', async () => {
    pushToggle.disabled = true;
    try {
      if (pushToggle.checked) {
        await enablePush();
        say('settings-push-status', 'You will be notified of messages while this tab is closed.');
      } else {
        await disablePush();
        say('settings-push-status', 'Notifications are off.');
      }
    } catch (err) {
      pushToggle.checked = !pushToggle.checked;
      say('settings-push-status', err.message, true);
    } finally {
      pushToggle.disabled = false;
    }
  });

  $('settings-delete-start').addEventListener('click', () => {
    confirmBox.hidden = false;
    $('settings-delete-start').hidden = true;
    $('settings-delete-password').focus();
  });
  $('settings-delete-cancel').addEventListener('click', () => {
    confirmBox.hidden = true;
    $('settings-delete-start').hidden = false;
    $('settings-delete-password').value = '';
    $('settings-delete-start').focus();
  });
  delForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const password = $('settings-delete-password').value;
    if (!password) {
      say('settings-delete-status', 'Type your password to confirm.', true);
      return;
    }
    try {
      await disablePush().catch(() => {});
      await call('DELETE', '/api/me', { password });
      dialog.close();
      onDeleted();
    } catch (err) {
      say('settings-delete-status', err.message, true);
    }
  });

  return {
    async open() {
      const u = me();
      $('settings-display-name').value = (u && u.display_name) || '';
      for (const id of ['settings-name-status', 'settings-password-status', 'settings-push-status', 'settings-delete-status']) say(id, '');
      confirmBox.hidden = true;
      $('settings-delete-start').hidden = false;
      pushSection.hidden = !pushSupported();
      dialog.showModal();
      $('settings-display-name').focus();
      try {
        pushToggle.checked = await pushEnabled();
      } catch {
        pushToggle.checked = false;
      }
    },
  };
}
