// The page for analysts: a form per model (made from its parameter schema), a task's live progress, its result as a
// chart, a table or JSON, and the recent tasks. Plain JavaScript, no framework and no build step; it talks to the API
// on this origin alone. The page's policy forbids inline scripts and style attributes: every node is built here, and
// text from the server only ever goes into textContent.
'use strict';

const TERMINAL = new Set(['finished', 'failed', 'canceled', 'stopped']);
const TOKEN_KEY = 'longjobs.token';
const REFRESH_MS = 3000;
const STREAM_TRIES = 5; // an event stream that drops (a proxy's idle timeout, a restart) is opened again this often
const $ = (id) => document.getElementById(id);
const SVG_NS = 'http://www.w3.org/2000/svg';
const compact = new Intl.NumberFormat('en', { notation: 'compact', maximumFractionDigits: 1 });
const plain = new Intl.NumberFormat('en', { maximumFractionDigits: 4 });
const twoDigits = new Intl.NumberFormat('en', { minimumFractionDigits: 2, maximumFractionDigits: 2 });

// ---- DOM helpers

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'text') node.textContent = value;
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function wait(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(timer); reject(signal.reason); }, { once: true });
  });
}

function notify(message) {
  $('notice').textContent = message;
  $('notice').hidden = !message;
}

// ---- The API, with a token when the server asks for one

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
async function request(path, options = {}) {
  for (;;) {
    const sent = token;
    const headers = new Headers(options.headers);
    if (sent) headers.set('Authorization', `Bearer ${sent}`);
    const response = await fetch(path, { ...options, headers });
    if (response.status !== 401) return response;
    if (token === sent) await askForToken(Boolean(sent)); // else a new token came while this one was out: retry
  }
}

async function api(path, options) {
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

function postJSON(path, data) {
  return api(path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(data) });
}

function errorText(answer) {
  return answer.body?.error || `the service answered ${answer.status}`;
}

// Seconds to wait as the server's Retry-After says (a number or a date), within reason.
function retryAfter(headers, fallback = 1) {
  const value = headers.get('Retry-After');
  let seconds = Number(value);
  if (!value || !Number.isFinite(seconds)) {
    seconds = value && Date.parse(value) ? (Date.parse(value) - Date.now()) / 1000 : fallback;
  }
  return Math.min(30, Math.max(0.2, seconds));
}

// ---- Forms made from the models' parameter schemas

const models = new Map(); // name -> {info, fieldset, fields}

async function loadModels() {
  let answer;
  try {
    answer = await api('/models');
  } catch (error) {
    answer = { status: 0, body: { error: `the service did not answer (${error.message})` } };
  }
  if (answer.status !== 200) {
    notify(`Could not load the models: ${errorText(answer)}. Trying again in a few seconds.`);
    await wait(5000);
    return loadModels();
  }
  notify('');
  const select = $('model');
  select.replaceChildren();
  for (const info of answer.body.models) {
    models.set(info.name, { info });
    select.append(el('option', { value: info.name, text: info.name }));
  }
  if (models.has('simulation')) select.value = 'simulation';
  showModel(select.value);
}

function showModel(name) {
  const entry = models.get(name);
  if (!entry) return;
  entry.fieldset ??= buildForm(entry);
  $('model-summary').textContent = entry.info.summary;
  $('fields').replaceChildren(entry.fieldset); // kept per model: switching back keeps what was typed
  $('form-error').hidden = true;
}

// The schema of one property, with a $ref or an Optional's anyOf [{...}, {type: null}] resolved.
function resolve(property, root) {
  let resolved = property;
  if (typeof resolved.$ref === 'string' && resolved.$ref.startsWith('#/$defs/')) {
    resolved = { ...root.$defs?.[resolved.$ref.slice(8)], ...resolved };
  }
  const options = (resolved.anyOf || resolved.oneOf || []).filter((option) => option.type !== 'null');
  if (options.length === 1) resolved = { ...resolved, ...resolve(options[0], root) };
  return resolved;
}

function typeOf(schema) {
  return Array.isArray(schema?.type) ? schema.type.find((type) => type !== 'null') : schema?.type;
}

function kindOf(schema) {
  const type = typeOf(schema);
  if (schema.enum || type === 'boolean') return 'choice';
  if (type === 'number' || type === 'integer') return 'number';
  if (type === 'string') return 'text';
  if (type === 'array' && ['number', 'integer'].includes(typeOf(schema.items))) return 'numbers';
  return 'json';
}

function formatBound(value) {
  return Math.abs(value) >= 1e15 ? Number(value.toPrecision(3)).toExponential().replace('e+', 'e') : String(value);
}

function boundsText(schema) {
  const { minimum: min, maximum: max, exclusiveMinimum: over, exclusiveMaximum: under } = schema;
  if (min !== undefined && max !== undefined) return `from ${formatBound(min)} to ${formatBound(max)}`;
  const parts = [];
  if (min !== undefined) parts.push(`at least ${formatBound(min)}`);
  if (over !== undefined) parts.push(`over ${formatBound(over)}`);
  if (max !== undefined) parts.push(`at most ${formatBound(max)}`);
  if (under !== undefined) parts.push(`under ${formatBound(under)}`);
  return parts.join(', ');
}

function hintText(schema, kind) {
  const parts = [];
  if (kind === 'number') {
    const integer = typeOf(schema) === 'integer';
    parts.push(`${integer ? 'A whole number' : 'A number'} ${boundsText(schema)}`.trim());
    if (schema.default !== undefined) parts.push(`default ${formatBound(schema.default)}`);
    parts.push(`several, comma-separated (${integer ? '1, 2, 3' : '1.5, 2, 2.5'}), make a sweep`);
    return `${parts.join('; ')}.`;
  } else if (kind === 'numbers') {
    const { minItems: few, maxItems: many } = schema;
    let count = 'Any number of';
    if (few !== undefined) count = many !== undefined ? `${few} to ${many}` : `At least ${few}`;
    else if (many !== undefined) count = `At most ${many}`;
    const items = schema.items || {};
    const what = typeOf(items) === 'integer' ? 'whole numbers' : 'numbers';
    const bounds = boundsText(items) ? ` (${boundsText(items)})` : '';
    parts.push(`${count} ${what}${bounds}, separated by commas, spaces or new lines: a pasted CSV column works.`);
  } else if (kind === 'json') {
    parts.push('JSON.');
  } else if (schema.default !== undefined) {
    parts.push(`Default ${JSON.stringify(schema.default)}.`);
  }
  return parts.join(' ');
}

function displayValue(kind, value) {
  if (kind === 'numbers' && Array.isArray(value)) return value.join(', ');
  if (kind === 'choice' || kind === 'json') return JSON.stringify(value);
  return String(value);
}

function sentence(text) {
  return `${text[0].toUpperCase()}${text.slice(1)}`.replace(/\.?$/, '.');
}

function buildField(model, name, schema, required, example) {
  const id = `f-${model}-${name}`;
  const kind = kindOf(schema);
  const marker = required ? el('span', { class: 'required', text: ' (required)' }) : null;
  const label = el('label', { for: id }, name, marker);
  let input;
  if (kind === 'numbers' || kind === 'json') {
    input = el('textarea', { id, name, rows: kind === 'numbers' ? 4 : 3, spellcheck: 'false' });
  } else if (kind === 'choice') {
    input = el('select', { id, name });
    if (!required) input.append(el('option', { value: '', text: '(not set)' }));
    for (const option of schema.enum || [true, false]) {
      input.append(el('option', { value: JSON.stringify(option), text: String(option) }));
    }
  } else {
    input = el('input', { id, name, type: 'text', autocomplete: 'off', spellcheck: 'false' });
  }
  if (example?.[name] !== undefined) input.value = displayValue(kind, example[name]);
  else if (schema.default !== undefined && kind !== 'choice') input.placeholder = displayValue(kind, schema.default);
  // The description, then what the field takes (bounds, default, sweeps), in one paragraph.
  const description = schema.description ? `${sentence(schema.description)} ` : '';
  const help = el('p', { id: `${id}-help`, class: 'help' }, description, hintText(schema, kind));
  const error = el('p', { id: `${id}-error`, class: 'error', hidden: true });
  input.setAttribute('aria-describedby', `${help.id} ${error.id}`);
  if (required) input.setAttribute('aria-required', 'true');
  return { name, kind, input, error, node: el('div', { class: 'field' }, label, input, error, help) };
}

// Required fields first, in the schema's order of `required` (the JSON of /models has its keys sorted), then the rest.
function fieldOrder(schema) {
  const names = Object.keys(schema.properties || {});
  const required = (schema.required || []).filter((name) => names.includes(name));
  return [...required, ...names.filter((name) => !required.includes(name)).sort()];
}

function buildForm(entry) {
  const schema = entry.info.params;
  const example = (schema.examples || [])[0];
  const required = new Set(schema.required || []);
  entry.fields = fieldOrder(schema).map((name) =>
    buildField(entry.info.name, name, resolve(schema.properties[name], schema), required.has(name), example));
  const nodes = entry.fields.map((field) => field.node);
  if (!nodes.length) nodes.push(el('p', { class: 'help', text: 'This model takes no parameters.' }));
  return el('fieldset', {}, el('legend', { text: `Parameters of ${entry.info.name}` }), ...nodes);
}

// A number as typed, sent as typed where it is JSON's syntax (JSON.rawJSON), so a large integer keeps its digits.
const JSON_NUMBER = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/;
function toNumber(text) {
  const trimmed = text.trim().replace(/^\+/, '');
  if (JSON_NUMBER.test(trimmed)) return JSON.rawJSON ? JSON.rawJSON(trimmed) : Number(trimmed);
  const number = Number(trimmed);
  return trimmed !== '' && Number.isFinite(number) ? number : undefined;
}

function readNumbers(field, parts) {
  const numbers = parts.map(toNumber);
  const bad = parts.findIndex((_, index) => numbers[index] === undefined);
  if (bad < 0) return { numbers };
  if (!parts[bad]) return { error: `'${field.name}' has an empty value between commas` };
  const what = field.kind === 'numbers' ? 'numbers' : 'a number';
  return { error: `'${field.name}' must be ${what}, not "${parts[bad].slice(0, 40)}"` };
}

// {value} to send, {grid} for a sweep, {error} to show, or {} when it is left out.
function readField(field) {
  const raw = field.input.value;
  if (raw.trim() === '') return {};
  if (field.kind === 'number') {
    const read = readNumbers(field, raw.split(',').map((part) => part.trim()));
    if (read.error) return read;
    return read.numbers.length > 1 ? { grid: read.numbers } : { value: read.numbers[0] };
  }
  if (field.kind === 'numbers') {
    let parts = raw.split(/[\s,;]+/).map((part) => part.replace(/^"(.*)"$/, '$1')).filter(Boolean);
    if (parts.length > 1 && toNumber(parts[0]) === undefined) parts = parts.slice(1); // a CSV column's header
    const read = readNumbers(field, parts);
    return read.error ? read : { value: read.numbers };
  }
  if (field.kind === 'text') return { value: raw };
  try {
    return { value: JSON.parse(raw) };
  } catch {
    return { error: `'${field.name}' must be JSON` };
  }
}

// A task's parameters back in its model's form, to change and run again.
function fillForm(type, params) {
  const entry = models.get(type);
  $('model').value = type;
  showModel(type);
  for (const field of entry.fields) {
    field.input.value = params[field.name] === undefined ? '' : displayValue(field.kind, params[field.name]);
  }
  clearErrors(entry);
  $('model').focus();
}

function clearErrors(entry) {
  for (const field of entry.fields) {
    field.error.hidden = true;
    field.error.textContent = '';
    field.input.removeAttribute('aria-invalid');
  }
  $('form-error').hidden = true;
}

// The field a message names: messages quote field names ('r0' must be at most 20; key 'population' is required).
function fieldNamed(entry, message) {
  for (const [, quoted] of message.matchAll(/'([^']+)'/g)) {
    const field = entry.fields.find((candidate) => candidate.name === quoted.split('.')[0]);
    if (field) return field;
  }
  return null;
}

function showErrors(entry, message) {
  // A sweep's message names its run once, before all of that run's problems: give each problem the run's name.
  const run = message.match(/^run \d+ \([^)]*\): /)?.[0] || '';
  const parts = [...new Set(message.slice(run.length).split('; '))].map((part) => run + part);
  const general = [];
  for (const part of parts) {
    const field = fieldNamed(entry, part);
    if (!field) {
      general.push(part);
      continue;
    }
    field.error.textContent = field.error.textContent ? `${field.error.textContent}; ${part}` : part;
    field.error.hidden = false;
    field.input.setAttribute('aria-invalid', 'true');
  }
  $('form-error').textContent = general.join('; ');
  $('form-error').hidden = general.length === 0;
  entry.fields.find((field) => field.input.getAttribute('aria-invalid'))?.input.focus();
}

let submitting = false;

async function submitRun(event) {
  event.preventDefault();
  const entry = models.get($('model').value);
  if (!entry?.fields || submitting) return;
  clearErrors(entry);
  const params = {};
  const grid = {}; // in form order: the last field varies fastest
  const problems = [];
  for (const field of entry.fields) {
    const read = readField(field);
    if (read.error) problems.push(read.error);
    else if (read.grid) grid[field.name] = read.grid;
    else if (read.value !== undefined) params[field.name] = read.value;
  }
  if (problems.length) return showErrors(entry, problems.join('; '));
  const sweep = Object.keys(grid).length > 0;
  submitting = true;
  try {
    const answer = await (sweep
      ? postJSON('/sweeps', { model: entry.info.name, params, grid })
      : postJSON(entry.info.url, params));
    if (answer.status === 202) {
      $('task').scrollIntoView({ block: 'nearest' }); // on a phone the result is below the form
      if (sweep) showSweep(answer.body.sweep_id);
      else showTask(answer.body.task_id);
      refreshRecent();
    } else if (answer.status === 400) {
      showErrors(entry, errorText(answer));
    } else {
      showErrors(entry, `Not accepted: ${errorText(answer)}`);
    }
  } catch (error) {
    showErrors(entry, `The service did not answer (${error.message}); nothing was sent.`);
  } finally {
    submitting = false;
  }
}

// ---- The task (or sweep) shown: one at a time; showing another stops watching this one

let view = null; // {controller, cancel, csvUrl, redraw}

function startView(title) {
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

function setHash(hash) {
  if (location.hash !== `#${hash}`) history.replaceState(null, '', `#${hash}`);
}

function renderProgress(status, progress) {
  $('task-progress').value = progress?.percent ?? 0;
  $('task-progress').setAttribute('aria-valuetext', `${progress?.percent ?? 0}%`);
  const words = [status, `${progress?.percent ?? 0}%`, progress?.message].filter(Boolean);
  $('task-status').textContent = words.join(' · ');
}

function showViewError(message) {
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
      type: 'button', class: 'link', text: 'show its sweep', onclick: () => showSweep(task.sweep_id),
    });
    $('task-title').append(' · ', sweep);
  }
}

async function getTask(id, signal) {
  const answer = await api(`/tasks/${id}`, { signal });
  if (answer.status !== 200) throw new Error(errorText(answer));
  return answer.body;
}

async function showTask(id) {
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
      refreshRecent();
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

// ---- Charts: plain SVG, drawn at the container's width so that text keeps its size on a phone

const MARGIN = { left: 56, right: 24, top: 12, bottom: 40 };

function niceStep(raw) {
  const power = 10 ** Math.floor(Math.log10(raw));
  const fraction = raw / power;
  return (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * power;
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const step = niceStep(value / 5);
  return Math.ceil(value / step) * step;
}

function ticks(min, max, count) {
  const step = niceStep((max - min) / Math.max(1, count));
  const values = [];
  for (let value = Math.ceil(min / step) * step; value <= max + step * 1e-9; value += step) {
    values.push(+value.toFixed(10)); // 0.30000000000000004 is 0.3
  }
  return values;
}

// Labels of one axis in one style: 10K, 20K (compact) once its numbers are long, else as they are.
function tickLabels(values) {
  const format = maxOf(values.map(Math.abs)) >= 10000 ? compact : plain;
  return values.map((value) => format.format(value));
}

function maxOf(values) {
  let most = -Infinity;
  for (const value of values) if (value > most) most = value;
  return most;
}

// An empty chart: axes, ticks, labels; the data-to-pixel mapping is on the SVG for anyone (a test) to read back.
function chart({ name, width, height, xMin, xMax, yMin, yMax, xLabel, yLabel, label }) {
  const plot = {
    left: MARGIN.left, top: MARGIN.top,
    width: width - MARGIN.left - MARGIN.right, height: height - MARGIN.top - MARGIN.bottom,
  };
  const root = svg('svg', {
    class: 'chart', viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', 'aria-label': label,
    'data-chart': name, 'data-x-min': xMin, 'data-x-max': xMax, 'data-y-min': yMin, 'data-y-max': yMax,
    'data-plot-left': plot.left, 'data-plot-top': plot.top,
    'data-plot-width': plot.width, 'data-plot-height': plot.height,
  });
  const bottom = plot.top + plot.height;
  const x = (value) => plot.left + ((value - xMin) / (xMax - xMin)) * plot.width;
  const y = (value) => plot.top + (1 - (value - yMin) / (yMax - yMin)) * plot.height;
  const axes = svg('g', { class: 'axes', 'aria-hidden': 'true' });
  const yTicks = ticks(yMin, yMax, Math.floor(plot.height / 45));
  tickLabels(yTicks).forEach((text, index) => {
    const at = y(yTicks[index]);
    axes.append(svg('line', { class: 'grid', x1: plot.left, x2: plot.left + plot.width, y1: at, y2: at }));
    axes.append(svg('text', { x: plot.left - 6, y: at, 'text-anchor': 'end', 'dominant-baseline': 'middle' }, text));
  });
  const xTicks = ticks(Math.max(0, xMin), xMax, Math.floor(plot.width / 70));
  tickLabels(xTicks).forEach((text, index) => {
    const at = x(xTicks[index]);
    axes.append(svg('line', { class: 'tick', x1: at, x2: at, y1: bottom, y2: bottom + 5 }));
    axes.append(svg('text', { x: at, y: bottom + 18, 'text-anchor': 'middle' }, text));
  });
  axes.append(svg('line', { class: 'axis', x1: plot.left, x2: plot.left + plot.width, y1: bottom, y2: bottom }));
  axes.append(svg('line', { class: 'axis', x1: plot.left, x2: plot.left, y1: plot.top, y2: bottom }));
  const middle = { x: plot.left + plot.width / 2, y: plot.top + plot.height / 2 };
  axes.append(svg('text', { class: 'label', x: middle.x, y: height - 4, 'text-anchor': 'middle' }, xLabel));
  const upright = `translate(14 ${middle.y}) rotate(-90)`;
  axes.append(svg('text', { class: 'label', transform: upright, 'text-anchor': 'middle' }, yLabel));
  root.append(axes);
  return { root, x, y, plot };
}

const pixel = (value) => Math.round(value * 10) / 10;

function linePath(x, y, values) {
  let d = '';
  for (let day = 0; day < values.length; day++) {
    d += `${day ? 'L' : 'M'}${pixel(x(day))},${pixel(y(values[day]))}`;
  }
  return d;
}

// The band's outline: along `high` left to right, then back along `low`.
function bandPath(x, y, low, high) {
  let d = linePath(x, y, high);
  for (let day = low.length - 1; day >= 0; day--) d += `L${pixel(x(day))},${pixel(y(low[day]))}`;
  return `${d}Z`;
}

// Draw the chart(s) into a figure in the page, timed as the `chart` performance measure, and again on resize.
function drawInto(container, shown, draw) {
  const redraw = () => {
    const start = performance.now();
    const width = Math.max(280, Math.floor(container.clientWidth));
    container.replaceChildren(...draw(width, width < 520 ? 240 : 320));
    container.getBoundingClientRect(); // lay it out: part of drawing it
    performance.measure('chart', { start, end: performance.now() });
    return width;
  };
  let drawnAt = redraw();
  shown.redraw = () => {
    if (Math.floor(container.clientWidth) !== drawnAt) drawnAt = redraw();
  };
}

function legend(...items) {
  const keys = items.map(([kind, text]) => el('span', { class: `key ${kind}`, text }));
  return el('p', { class: 'legend', 'aria-hidden': 'true' }, ...keys);
}

function band(values, format = plain) {
  return `${format.format(values.median)} (90%: ${format.format(values.low)} to ${format.format(values.high)})`;
}

function summary(rows) {
  const pairs = rows.flatMap(([term, value]) => [el('dt', { text: term }), el('dd', { text: value })]);
  return el('dl', { class: 'summary' }, ...pairs);
}

function showSimulation(result, shown) {
  const { low, median, high } = result.infectious;
  const figure = el('figure', { class: 'figure' });
  $('task-result').replaceChildren(
    figure,
    legend(['line', 'median'], ['band', '90% of runs']),
    summary([
      ['peak day', band(result.peak_day)],
      ['peak size', band(result.peak_size)],
      ['final size', band(result.final_size)],
      ['runs', `${plain.format(result.runs)} over ${plain.format(result.days)} days (seed ${result.seed})`],
      ['died out', `${plain.format(100 * result.died_out)}% of runs`],
    ].filter(([, value]) => !value.includes('undefined'))),
  );
  drawInto(figure, shown, (width, height) => {
    const c = chart({
      name: 'infectious', width, height, xMin: 0, xMax: Math.max(1, median.length - 1), yMin: 0,
      yMax: niceMax(maxOf(high)), xLabel: 'day', yLabel: 'infectious people',
      label: 'Infectious people by day: the median of the runs and its 90% band',
    });
    c.root.append(svg('path', { class: 'band', 'data-series': 'band', d: bandPath(c.x, c.y, low, high) }));
    c.root.append(svg('path', { class: 'line', 'data-series': 'median', d: linePath(c.x, c.y, median) }));
    return [c.root];
  });
}

function showEnkf(result, params, shown) {
  const rt = result.rt;
  const cases = Array.isArray(params?.cases) ? params.cases : [];
  const figure = el('figure', { class: 'figure' });
  const last = rt[rt.length - 1];
  $('task-result').replaceChildren(
    figure,
    legend(['line', 'R(t) median'], ['band', '90% band'], ['reference', 'R = 1'], ['bar', 'cases']),
    summary([
      ['R(t) on the last day', band(last, twoDigits)],
      ['days with a median R(t) over 1', `${rt.filter((day) => day.median > 1).length} of ${result.days ?? rt.length}`],
    ]),
  );
  const low = rt.map((day) => day.low);
  const median = rt.map((day) => day.median);
  const high = rt.map((day) => day.high);
  // The day axis runs half a day past each end, so that the first and last bars of cases fit.
  const xMin = -0.5;
  const xMax = rt.length - 0.5;
  drawInto(figure, shown, (width, height) => {
    const r = chart({
      name: 'rt', width, height, xMin, xMax, yMin: 0, yMax: niceMax(Math.max(1.5, maxOf(high))),
      xLabel: 'day', yLabel: 'R(t)', label: 'R(t) by day: the median estimate, its 90% band, and R = 1',
    });
    const one = pixel(r.y(1));
    r.root.append(svg('path', { class: 'band', 'data-series': 'band', d: bandPath(r.x, r.y, low, high) }));
    r.root.append(svg('line', {
      class: 'reference', 'data-series': 'reference', x1: r.plot.left, x2: r.plot.left + r.plot.width, y1: one, y2: one,
    }));
    r.root.append(svg('path', { class: 'line', 'data-series': 'median', d: linePath(r.x, r.y, median) }));
    const c = chart({
      name: 'cases', width, height: Math.round(height * 0.6), xMin, xMax, yMin: 0, yMax: niceMax(maxOf(cases)),
      xLabel: 'day', yLabel: 'cases', label: 'Cases by day, as given',
    });
    const bars = svg('g', { class: 'bars', 'data-series': 'cases' });
    const barWidth = pixel(Math.max(1, (c.plot.width / rt.length) * 0.7));
    const base = c.plot.top + c.plot.height;
    cases.forEach((count, day) => {
      const top = pixel(c.y(count));
      const left = pixel(c.x(day) - barWidth / 2);
      bars.append(svg('rect', { x: left, y: top, width: barWidth, height: pixel(base - top) }));
    });
    c.root.append(bars);
    return [r.root, c.root];
  });
}

// ---- Sweeps: their progress, then their table and its CSV

async function showSweep(id) {
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
      onclick: () => showTask(run.task_id),
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

// ---- Canceling

async function cancelTask(id, label) {
  await cancel(`/tasks/${id}`, { 200: `${label} canceled.`, 202: `${label} is stopping.` });
}

async function cancelSweep(id) {
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
    type: 'button', class: 'link', 'aria-label': `Show ${name}`, onclick: () => showTask(task.task_id),
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

async function refreshRecent() {
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

// ---- Start

function route() {
  const match = location.hash.match(/^#(task|sweep)=([0-9a-fA-F-]{36})$/);
  if (match) (match[1] === 'task' ? showTask : showSweep)(match[2]);
}

function start() {
  $('model').addEventListener('change', (event) => showModel(event.target.value));
  $('run-form').addEventListener('submit', submitRun);
  $('task-cancel').addEventListener('click', () => view?.cancel?.());
  $('task-reuse').addEventListener('click', () => view?.reuse?.());
  window.addEventListener('hashchange', route);
  let resizing = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => view?.redraw?.(), 150);
  });
  document.addEventListener('visibilitychange', () => { if (!document.hidden) refreshRecent(); });
  route();
  Promise.all([loadModels(), refreshRecent()]).then(() => performance.mark('page-ready'));
}

start();
