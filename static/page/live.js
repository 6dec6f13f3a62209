// The task (or sweep) shown, one at a time (showing another stops watching this one): its live progress, read from its
// event stream (else by polling its result URL), then its outcome as a chart or readable JSON.
import { $, TERMINAL, el, wait } from './dom.js';
import { api, errorText, request, retryAfter } from './api.js';
import { fillForm, models } from './forms.js';
import { showEnkf, showSimulation } from './charts.js';
import { cancelTask } from './recent.js';
import { nav } from './nav.js';

const STREAM_TRIES = 5; // an event stream that drops (a proxy's idle timeout, a restart) is opened again this often

let view = null; // {controller, cancel, reuse, csvUrl, redraw}

export function currentView() {
  return view;
}

export function startView(title) {
  view?.controller.abort();
  if (view?.csvUrl) URL.revokeObjectURL(view.csvUrl);
  view = { controller: new AbortController(), cancel: null, csvUrl: null, redraw: null };
  $('task-empty').hidden = true;
  $('task-view').hidden = false;
  $('task-title').textContent = title;
  $('task-result').replaceChildren();
  renderProgress('', { percent: 0, message: 'asking the service…' });
  $('task-cancel').hidden = true;
  $('task-reuse').hidden = true;
  return view;
}

export function setHash(hash) {
  if (location.hash !== `#${hash}`) history.replaceState(null, '', `#${hash}`);
}

export function renderProgress(status, progress) {
  $('task-progress').value = progress?.percent ?? 0;
  $('task-progress').setAttribute('aria-valuetext', `${progress?.percent ?? 0}%`);
  const words = [status, `${progress?.percent ?? 0}%`, progress?.message].filter(Boolean);
  $('task-status').textContent = words.join(' · ');
}

export function showViewError(message) {
  $('task-result').replaceChildren(el('p', { class: 'error', role: 'alert', text: message }));
}

function seconds(start, end) {
  return start && end ? `${((Date.parse(end) - Date.parse(start)) / 1000).toFixed(1)} s` : '';
}

function renderTask(task, shown) {
  const ran = task.status === 'finished' ? seconds(task.started_at, task.ended_at) : '';
  $('task-title').textContent = `${task.type} · task ${task.task_id.slice(0, 8)}${ran ? ` · ran ${ran}` : ''}`;
  renderProgress(task.status, task.progress);
  const open = !TERMINAL.has(task.status);
  $('task-cancel').hidden = !open;
  shown.cancel = open ? () => cancelTask(task.task_id, `Task ${task.task_id.slice(0, 8)}`) : null;
  $('task-reuse').hidden = !(task.params && models.has(task.type));
  shown.reuse = () => fillForm(task.type, task.params);
  if (task.sweep_id && !$('task-title').querySelector('button')) {
    const sweep = el('button', {
      type: 'button', class: 'link', text: 'show its sweep', onclick: () => nav.showSweep(task.sweep_id),
    });
    $('task-title').append(' · ', sweep);
  }
}

async function getTask(id, signal) {
  const answer = await api(`/tasks/${id}`, { signal });
  if (answer.status !== 200) throw new Error(errorText(answer));
  return answer.body;
}

export async function showTask(id) {
  const shown = startView(`task ${id.slice(0, 8)}`);
  const { signal } = shown.controller;
  setHash(`task=${id}`);
  try {
    let task = await getTask(id, signal);
    renderTask(task, shown);
    const running = !TERMINAL.has(task.status);
    if (running) await followStream(task, shown);
    const outcome = await pollOutcome(task.result_url, signal);
    if (running) {
      task = await getTask(id, signal); // as it ended: its status, timings, progress
      nav.refreshRecent();
    }
    renderTask(task, shown);
    renderOutcome(outcome, shown);
  } catch (error) {
    if (!signal.aborted) showViewError(`Could not show the task: ${error.message}`);
  }
}

// The task's event stream, read with fetch() (EventSource cannot send a token), until its `end` event. Any trouble
// (no stream on this server, a refused or dropped one) just ends this: polling the result URL takes over.
async function followStream(task, shown) {
  for (let tries = 0; tries < STREAM_TRIES; tries++) {
    const ended = await readStream(task.task_id, shown);
    if (ended !== 'dropped') return;
  }
}

async function readStream(id, shown) {
  const { signal } = shown.controller;
  let response;
  try {
    response = await request(`/tasks/${id}/events`, { headers: { Accept: 'text/event-stream' }, signal });
  } catch (error) {
    if (signal.aborted) throw error;
    return 'unavailable';
  }
  if (!response.ok || !(response.headers.get('Content-Type') || '').startsWith('text/event-stream')) {
    response.body?.cancel().catch(() => {});
    return 'unavailable';
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let event = '';
  let data = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return 'dropped';
      buffer += value;
      const lines = buffer.split('\n');
      buffer = lines.pop(); // an unfinished line waits for the next chunk
      for (const raw of lines) {
        const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
        if (line === '') { // a blank line dispatches the event
          if (data.length && dispatch(event || 'message', data.join('\n'), shown)) return 'ended';
          event = '';
          data = [];
        } else if (!line.startsWith(':')) { // lines starting with ':' are keep-alives
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          const text = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
          if (field === 'event') event = text;
          else if (field === 'data') data.push(text);
        }
      }
    }
  } catch (error) {
    if (signal.aborted) throw error;
    return 'dropped';
  } finally {
    reader.cancel().catch(() => {});
  }
}

function dispatch(event, data, shown) {
  if (event !== 'status' && event !== 'end') return false;
  try {
    renderTask(JSON.parse(data), shown);
  } catch {
    return false;
  }
  return event === 'end';
}

// The result URL: 404 with the status and progress while the task runs (asked again as its Retry-After says), 200 once
// it ended.
async function pollOutcome(url, signal) {
  for (;;) {
    let answer;
    try {
      answer = await api(url, { signal });
    } catch (error) {
      if (signal.aborted) throw error;
      $('task-status').textContent = `The service did not answer (${error.message}); asking again…`;
      await wait(2000, signal);
      continue;
    }
    if (answer.status === 200) return answer.body;
    if (answer.status === 404 && answer.body?.status) renderProgress(answer.body.status, answer.body.progress);
    else if (answer.status !== 503) throw new Error(errorText(answer));
    await wait(1000 * retryAfter(answer.headers), signal);
  }
}

function renderOutcome(outcome, shown) {
  const box = $('task-result');
  const result = outcome.result;
  if (outcome.status !== 'finished') {
    const why = `Task ${outcome.status}: ${outcome.error || 'no reason was given'}`;
    box.replaceChildren(el('p', { class: 'error', text: why }));
  } else if (Array.isArray(result?.infectious?.median)) {
    showSimulation(result, shown);
  } else if (Array.isArray(result?.rt) && result.rt.every((day) => typeof day?.median === 'number')) {
    showEnkf(result, outcome.params, shown);
  } else {
    const text = JSON.stringify(result, null, 2);
    box.replaceChildren(el('pre', { class: 'json', tabindex: '0', 'aria-label': 'the result, as JSON', text }));
  }
}
