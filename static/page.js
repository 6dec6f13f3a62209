// The page for analysts (its entry module): a form per model (made from its parameter schema), a task's live progress,
// its result as a chart, a table or JSON, and the recent tasks. Plain JavaScript, no framework and no build step; it talks to the API
// on this origin alone. The page's policy forbids inline scripts and style attributes: every node is built here, and
// text from the server only ever goes into textContent.
// Its modules (static/page/) each hold one part: the API client, the forms, the task's live view and its charts, the
// sweep's table, the recent list; this one starts them and lets them ask for one another (nav.js).
import { $ } from './page/dom.js';
import { loadModels, showModel, submitRun } from './page/forms.js';
import { currentView, showTask } from './page/live.js';
import { showSweep } from './page/tables.js';
import { refreshRecent } from './page/recent.js';
import { nav } from './page/nav.js';

Object.assign(nav, { showTask, showSweep, refreshRecent });

function route() {
  const match = location.hash.match(/^#(task|sweep)=([0-9a-fA-F-]{36})$/);
  if (match) (match[1] === 'task' ? showTask : showSweep)(match[2]);
}

function start() {
  $('model').addEventListener('change', (event) => showModel(event.target.value));
  $('run-form').addEventListener('submit', submitRun);
  $('task-cancel').addEventListener('click', () => currentView()?.cancel?.());
  $('task-reuse').addEventListener('click', () => currentView()?.reuse?.());
  window.addEventListener('hashchange', route);
  let resizing = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => currentView()?.redraw?.(), 150);
  });
  document.addEventListener('visibilitychange', () => { if (!document.hidden) refreshRecent(); });
  route();
  Promise.all([loadModels(), refreshRecent()]).then(() => performance.mark('page-ready'));
}

start();
