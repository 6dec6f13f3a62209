// Sweeps: their progress, then their table of runs and its CSV.
import { $, el, plain, wait } from './dom.js';
import { api, errorText, request, retryAfter } from './api.js';
import { renderProgress, setHash, showViewError, startView } from './live.js';
import { cancelSweep } from './recent.js';
import { nav } from './nav.js';

export async function showSweep(id) {
  const shown = startView(`sweep ${id.slice(0, 8)}`);
  const { signal } = shown.controller;
  setHash(`sweep=${id}`);
  try {
    for (;;) {
      const answer = await api(`/sweeps/${id}`, { signal });
      if (answer.status === 200) return renderSweep(answer.body, shown);
      if (answer.status === 404 && answer.body?.progress) {
        const { ended, total, percent } = answer.body.progress;
        renderProgress('running', { percent, message: `${ended} of ${total} runs ended` });
        $('task-cancel').hidden = false;
        shown.cancel = () => cancelSweep(id);
      } else if (answer.status !== 503) {
        throw new Error(errorText(answer));
      }
      await wait(1000 * retryAfter(answer.headers), signal);
    }
  } catch (error) {
    if (!signal.aborted) showViewError(`Could not show the sweep: ${error.message}`);
  }
}

function flatten(value, prefix, into) {
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    for (const [name, inner] of Object.entries(value)) flatten(inner, prefix ? `${prefix}.${name}` : name, into);
  } else if (['number', 'string', 'boolean'].includes(typeof value)) {
    into[prefix || 'result'] = value;
  }
  return into;
}

function cell(value) {
  if (value === undefined || value === null) return '';
  return typeof value === 'number' ? plain.format(value) : typeof value === 'string' ? value : JSON.stringify(value);
}

async function renderSweep(table, shown) {
  const counts = Object.entries(table.counts).filter(([, n]) => n).map(([status, n]) => `${n} ${status}`);
  $('task-title').textContent = `${table.model} · sweep ${table.sweep_id.slice(0, 8)} · ${table.runs.length} runs`;
  renderProgress('ended', { percent: 100, message: counts.join(', ') });
  $('task-cancel').hidden = true;
  const names = Object.keys(table.runs[0]?.params || {});
  const flat = table.runs.map((run) => flatten(run.result, '', {}));
  const every = [...new Set(flat.flatMap(Object.keys))];
  // A band's median says enough on screen; the CSV has its low and high too.
  const edge = /\.(low|high)$/;
  const columns = every.filter((column) => !edge.test(column) || !every.includes(column.replace(edge, '.median')));
  columns.sort((a, b) => b.endsWith('.median') - a.endsWith('.median')); // the medians first: what runs differ by
  const errors = table.runs.some((run) => run.error);
  const titles = ['run', ...names, 'status', ...columns, ...(errors ? ['error'] : [])];
  const head = el('tr', {}, ...titles.map((text) => el('th', { scope: 'col', text })));
  const rows = table.runs.map((run, index) => {
    const show = el('button', {
      type: 'button', class: 'link', text: String(run.index), 'aria-label': `Show run ${run.index}`,
      onclick: () => nav.showTask(run.task_id),
    });
    return el('tr', {}, el('td', {}, show),
      ...names.map((name) => el('td', { text: cell(run.params[name]) })),
      el('td', { class: `status ${run.status}`, text: run.status }),
      ...columns.map((column) => el('td', { class: 'number', text: cell(flat[index][column]) })),
      ...(errors ? [el('td', { text: run.error || '' })] : []));
  });
  const link = el('p', { class: 'help', text: 'Preparing the CSV…' });
  $('task-result').replaceChildren(
    el('div', { class: 'scroll', tabindex: '0', role: 'region', 'aria-label': 'the sweep’s runs' },
      el('table', { id: 'sweep-table' }, el('thead', {}, head), el('tbody', {}, ...rows))),
    link);
  try {
    const response = await request(`/sweeps/${table.sweep_id}?format=csv`, { signal: shown.controller.signal });
    if (!response.ok) throw new Error(`the service answered ${response.status}`);
    shown.csvUrl = URL.createObjectURL(await response.blob());
    const download = el('a', {
      id: 'sweep-csv', href: shown.csvUrl, download: `sweep-${table.sweep_id}.csv`, text: 'Download the table as CSV',
    });
    link.replaceChildren(download, columns.length < every.length ? ' (every column: the bands’ low and high too)' : '');
  } catch (error) {
    if (!shown.controller.signal.aborted) link.textContent = `Could not fetch the CSV: ${error.message}`;
  }
}
