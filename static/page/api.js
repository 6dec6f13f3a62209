// The API client: fetch() on this origin, with a token when the server asks for one (kept in this tab only).
import { $ } from './dom.js';

const TOKEN_KEY = 'longjobs.token';

let token = sessionStorage.getItem(TOKEN_KEY);
let asking = null; // the one pending question for a token, shared by every request that met a 401

function askForToken(refused) {
  asking ??= new Promise((resolve) => {
    const input = $('token-input');
    $('token-why').textContent = refused
      ? 'That token was refused. Enter another one.'
      : 'This service needs an API token. It is kept in this tab only.';
    $('token').hidden = false;
    input.value = '';
    input.focus();
    $('token-form').onsubmit = (event) => {
      event.preventDefault();
      token = input.value.trim();
      sessionStorage.setItem(TOKEN_KEY, token);
      $('token').hidden = true;
      asking = null;
      resolve();
    };
  });
  return asking;
}

// fetch() with the token; a 401 asks for a token (again, if this one was refused) and sends the request again.
export async function request(path, options = {}) {
  for (;;) {
    const sent = token;
    const headers = new Headers(options.headers);
    if (sent) headers.set('Authorization', `Bearer ${sent}`);
    const response = await fetch(path, { ...options, headers });
    if (response.status !== 401) return response;
    if (token === sent) await askForToken(Boolean(sent)); // else a new token came while this one was out: retry
  }
}

export async function api(path, options) {
  const response = await request(path, options);
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = { error: text.slice(0, 500) };
  }
  return { status: response.status, ok: response.ok, headers: response.headers, body };
}

export function postJSON(path, data) {
  return api(path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(data) });
}

export function errorText(answer) {
  return answer.body?.error || `the service answered ${answer.status}`;
}

// Seconds to wait as the server's Retry-After says (a number or a date), within reason.
export function retryAfter(headers, fallback = 1) {
  const value = headers.get('Retry-After');
  let seconds = Number(value);
  if (!value || !Number.isFinite(seconds)) {
    seconds = value && Date.parse(value) ? (Date.parse(value) - Date.now()) / 1000 : fallback;
  }
  return Math.min(30, Math.max(0.2, seconds));
}
