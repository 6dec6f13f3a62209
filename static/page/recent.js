// The recent tasks, refreshed every few seconds (rows are kept, not rebuilt, so focus stays where it was), and
// canceling a task or a sweep.
import { $, TERMINAL, el, wait } from './dom.js';
import { api, errorText, retryAfter } from './api.js';
import { nav } from './nav.js';

const REFRESH_MS = 3000;

// Canceling a task or a sweep: what came of it is said above the recent list.

export async function cancelTask(id, label) {
  await cancel(`/tasks/${id}`, { 200: `${label} canceled.`, 202: `${label} is stopping.` });
}

export async function cancelSweep(id) {
  await cancel(`/sweeps/${id}`, { 202: `Sweep ${id.slice(0, 8)}: its runs are canceled or stopping.` });
}

// DELETE, asking again (as its Retry-After says) while a task is being handed to a worker.
async function cancel(path, done) {
  const say = (text) => { $('recent-status').textContent = text; };
  for (let attempt = 0; attempt < 5; attempt++) {
    let answer;
    try {
      answer = await api(path, { method: 'DELETE' });
    } catch (error) {
      say(`The service did not answer (${error.message}).`);
      break;
    }
    if (done[answer.status]) {
      say(done[answer.status]);
      break;
    }
    if (answer.status !== 503) {
      say(errorText(answer));
      break;
    }
    say('It is being handed to a worker: asking again…');
    await wait(1000 * retryAfter(answer.headers));
  }
  refreshRecent();
}

// ---- Recent tasks, refreshed every few seconds; rows are kept (not rebuilt), so focus stays where it was

const rows = new Map(); // task id -> {tr, status, progress, cancel}
let refreshTimer = null;
let refreshCount = 0;

function makeRow(task) {
  const name = `${task.type} task ${task.task_id.slice(0, 8)}`;
  const row = {
    status: el('td', { class: 'status' }),
    progress: el('td', { class: 'progress' }),
    cancel: el('button', {
      type: 'button', class: 'secondary', 'aria-label': `Cancel ${name}`, text: 'Cancel',
      onclick: () => cancelTask(task.task_id, name),
    }),
  };
  const show = el('button', {
    type: 'button', class: 'link', 'aria-label': `Show ${name}`, onclick: () => nav.showTask(task.task_id),
  }, el('span', { class: 'type', text: task.type }), ' ', el('code', { text: task.task_id.slice(0, 8) }));
  const queued = task.enqueued_at ? new Date(task.enqueued_at).toLocaleTimeString() : '';
  row.tr = el('tr', { 'data-task-id': task.task_id }, el('td', {}, show), row.status, row.progress,
    el('td', { text: queued }), el('td', {}, row.cancel));
  return row;
}

function updateRow(row, task) {
  row.status.textContent = task.status;
  row.status.className = `status ${task.status}`;
  row.progress.textContent = [`${task.progress.percent}%`, task.progress.message].filter(Boolean).join(' · ');
  row.cancel.hidden = TERMINAL.has(task.status);
}

function renderRecent(tasks) {
  const body = $('recent-list');
  tasks.forEach((task, index) => {
    if (!rows.has(task.task_id)) rows.set(task.task_id, makeRow(task));
    const row = rows.get(task.task_id);
    updateRow(row, task);
    if (body.children[index] !== row.tr) body.insertBefore(row.tr, body.children[index] || null);
  });
  const listed = new Set(tasks.map((task) => task.task_id));
  for (const [id, row] of rows) {
    if (!listed.has(id)) {
      row.tr.remove();
      rows.delete(id);
    }
  }
  const none = 'No tasks yet.';
  if (!tasks.length) $('recent-status').textContent = none;
  else if ($('recent-status').textContent === none) $('recent-status').textContent = '';
}

export async function refreshRecent() {
  clearTimeout(refreshTimer);
  const count = ++refreshCount;
  let answer;
  try {
    answer = await api('/tasks?limit=20');
  } catch (error) {
    answer = { body: { error: `the service did not answer (${error.message})` } };
  }
  if (count !== refreshCount) return; // a later refresh is under way, and sets the next one
  if (answer.ok) renderRecent(answer.body.tasks);
  else $('recent-status').textContent = `Could not list the tasks: ${errorText(answer)}`;
  refreshTimer = setTimeout(refreshRecent, document.hidden ? REFRESH_MS * 5 : REFRESH_MS);
}
