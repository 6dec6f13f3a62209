// Forms made from the models' parameter schemas: one per model, read into a task's parameters or a sweep's grid,
// with the server's 400 shown beside the field it names.
import { $, el, notify, wait } from './dom.js';
import { api, errorText, postJSON } from './api.js';
import { nav } from './nav.js';

export const models = new Map(); // name -> {info, fieldset, fields}

export async function loadModels() {
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

export function showModel(name) {
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
export function fillForm(type, params) {
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

export async function submitRun(event) {
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
      if (sweep) nav.showSweep(answer.body.sweep_id);
      else nav.showTask(answer.body.task_id);
      nav.refreshRecent();
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
