// auth.js: the sign-in screen (log in and sign up on one screen) and the
// switch between splash, sign-in and chat screens.

import { api, NetworkError } from './api.js';

const $ = (id) => document.getElementById(id);

// show displays one screen: splash, auth or app.
export function show(screen) {
  $('splash').hidden = screen !== 'splash';
  $('auth-screen').hidden = screen !== 'auth';
  $('app-screen').hidden = screen !== 'app';
}

// signupClosed comes from GET /api/config: the server then only takes
// accounts made on its shell ("webim user add"), so the tab is hidden.
let signupClosed = false;

// loadServerConfig asks GET /api/config (an extension of version 1) whether
// sign-up is open.
export async function loadServerConfig() {
  try {
    signupClosed = (await api.config()).signup === 'closed';
  } catch {
    return; // unknown: sign-up stays offered, and the server still decides
  }
  $('show-signup').hidden = signupClosed;
  if (signupClosed && !$('signup-form').hidden) setAuthTab('login');
}

function setAuthTab(tab) {
  const login = tab === 'login' || signupClosed;
  $('login-form').hidden = !login;
  $('signup-form').hidden = login;
  $('login-panel').hidden = !login;
  $('signup-panel').hidden = login;
  $('show-login').setAttribute('aria-selected', String(login));
  $('show-signup').setAttribute('aria-selected', String(!login));
  $('show-login').tabIndex = login ? 0 : -1;
  $('show-signup').tabIndex = login ? -1 : 0;
  $('login-error').textContent = '';
  $('signup-error').textContent = '';
}

// showAuth shows the sign-in screen, with the username filled in and a notice if given.
export function showAuth(tab = 'login', { username = '', notice = '' } = {}) {
  document.title = 'webim';
  setAuthTab(tab);
  const n = $('auth-notice');
  n.textContent = notice;
  n.hidden = !notice;
  show('auth');
  if (username) {
    $('login-username').value = username;
    $('login-password').value = '';
    $('login-password').focus();
  } else {
    $(tab === 'login' ? 'login-username' : 'signup-username').focus();
  }
}

function authErrorText(e) {
  if (e instanceof NetworkError) return 'Cannot reach the server. Check your connection and try again.';
  return e.message;
}

// setupAuth wires the forms; onSignedIn(user) gets the user after a log-in.
export function setupAuth(onSignedIn) {
  $('show-login').addEventListener('click', () => { setAuthTab('login'); $('login-username').focus(); });
  $('show-signup').addEventListener('click', () => { setAuthTab('signup'); $('signup-username').focus(); });
  for (const id of ['show-login', 'show-signup']) {
    $(id).addEventListener('keydown', (e) => {
      if (e.key === 'ArrowLeft' || e.key === 'ArrowRight') {
        e.preventDefault();
        const to = id === 'show-login' ? 'signup' : 'login';
        setAuthTab(to);
        $(`show-${to}`).focus();
      }
    });
  }

  $('login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const username = $('login-username').value.trim();
    const password = $('login-password').value;
    const err = $('login-error');
    if (!username || !password) {
      err.textContent = 'Enter your username and password.';
      return;
    }
    const btn = $('login-submit');
    btn.disabled = true;
    btn.textContent = 'Logging in…';
    err.textContent = '';
    try {
      const res = await api.login(username, password);
      $('login-password').value = '';
      onSignedIn(res.user);
    } catch (ex) {
      err.textContent = authErrorText(ex);
    } finally {
      btn.disabled = false;
      btn.textContent = 'Log in';
    }
  });

  $('signup-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const username = $('signup-username').value.trim();
    const password = $('signup-password').value;
    const displayName = $('signup-display-name').value.trim();
    const err = $('signup-error');
    if (!username || !password) {
      err.textContent = 'Choose a username and a password.';
      return;
    }
    const btn = $('signup-submit');
    btn.disabled = true;
    btn.textContent = 'Creating account…';
    err.textContent = '';
    try {
      await api.signup(username, password, displayName);
      const res = await api.login(username, password);
      $('signup-password').value = '';
      onSignedIn(res.user);
    } catch (ex) {
      err.textContent = authErrorText(ex);
    } finally {
      btn.disabled = false;
      btn.textContent = 'Create account';
    }
  });
}

