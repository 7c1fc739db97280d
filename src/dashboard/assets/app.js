// The dashboard's page: polls the JSON API, draws tables and charts. Every text from the broker
// (task params, error messages, names) is set with textContent, never parsed as HTML.
'use strict';

const CSRF = document.querySelector('meta[name="csrf-token"]').getAttribute('content');
const SVG = 'http://www.w3.org/2000/svg';
const $ = (id) => document.getElementById(id);
let state = null;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v; else if (k.startsWith('on')) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c == null ? '' : String(c)));
  return e;
}

async function api(path) {
  const r = await fetch(path, { credentials: 'same-origin' });
  const body = await r.json().catch(() => ({ error: 'HTTP ' + r.status }));
  if (!r.ok) throw new Error(body.error || ('HTTP ' + r.status));
  return body;
}

async function post(path, data) {
  const r = await fetch(path, {
    method: 'POST', credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': CSRF },
    body: JSON.stringify(data),
  });
  const text = await r.text();
  let body; try { body = JSON.parse(text); } catch (e) { body = { error: text }; }
  if (!r.ok) throw new Error(body.error || ('HTTP ' + r.status));
  return body;
}

function confirmed(text) {
  return new Promise((resolve) => {
    $('confirm-text').textContent = text;
    $('confirm').hidden = false;
    const done = (v) => { $('confirm').hidden = true; $('confirm-yes').onclick = null; $('confirm-no').onclick = null; resolve(v); };
    $('confirm-yes').onclick = () => done(true);
    $('confirm-no').onclick = () => done(false);
  });
}

const num = (v) => (v == null ? '–' : (Math.round(v * 10) / 10).toLocaleString('en'));
const secs = (s) => (s == null ? '–' : s < 1 ? Math.round(s * 1000) + ' ms' : s < 120 ? s.toFixed(1) + ' s' : Math.round(s / 60) + ' min');
const bytes = (b) => (b == null ? '–' : (b / 1048576).toFixed(1) + ' MB');
const time = (ms) => (ms ? new Date(ms).toLocaleTimeString('en-GB') : '–');
const duration = (ms) => (ms == null ? '–' : secs(ms / 1000));

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

// A limit in force as text: "demo/send: 20/s +5, 4 at once (run time)".
function limitText(l) {
  const what = [];
  if (l.rate) what.push(l.rate + (l.burst ? ' +' + l.burst : ''));
  if (l.concurrency != null) what.push(l.concurrency + ' at once');
  return l.id + ': ' + what.join(', ') + ' (' + l.source + ')';
}

// The topics' rows; `full` (the Topics view) adds the limits, their counts and the pause button.
function topicRows(topics, full) {
  return topics.map((t) => el('tr', { 'data-topic': t.topic },
    el('td', {}, t.topic, ...(t.paused ? [' ', el('span', { class: 'paused' }, 'paused')] : []),
      ...(t.legacy || []).map((q) => el('div', { class: 'legacy' },
      'original\'s ' + q.queue + ': ' + num(q.messages)))),
    el('td', { class: 'num ready' }, num(t.ready)),
    el('td', { class: 'num in-flight' }, num(t.in_flight)),
    el('td', { class: 'num failed' }, num(t.failed)),
    el('td', { class: 'num consumers' }, num(t.consumers)),
    el('td', { class: 'num wait' }, secs(t.wait_s)),
    ...(full ? [
      el('td', { class: 'limits' }, ...(t.limits.length ? t.limits.map((l) => limitLine(t.topic, l)) : ['none']), limitForm(t.topic)),
      el('td', { class: 'num held-rate' }, num(t.held_back_rate)),
      el('td', { class: 'num held-concurrency' }, num(t.held_back_concurrency)),
      el('td', { class: 'num duplicates' }, num(t.duplicates)),
      el('td', { class: 'num given-back' }, num(t.given_back)),
      el('td', {}, pauseButton(t)),
    ] : [])));
}

// A limit in force; one set at run time has a button that clears it.
function limitLine(topic, l) {
  if (l.source !== 'run time') return el('div', { class: 'limit' }, limitText(l));
  const b = el('button', { type: 'button', class: 'clear-limit' }, 'clear');
  b.addEventListener('click', async () => {
    if (!(await confirmed('Clear the run-time limit ' + l.id + '? A limit set in the workers\' code applies again.'))) return;
    act($('topics-result'), () => post('/api/limits/clear', { topic, scope: { name: l.name, key: l.key } }),
      (x) => 'limit ' + l.id + (x.changed ? ' cleared' : ' was not set') + '; the workers show it within a few seconds',
      () => api('/api/state').then(renderState));
  });
  return el('div', { class: 'limit-line' }, el('span', { class: 'limit' }, limitText(l)), ' ', b);
}

// The form that sets a run-time limit of a topic, kept across refreshes so what is typed stays.
const limitForms = new Map();
function limitForm(topic) {
  if (limitForms.has(topic)) return limitForms.get(topic);
  const input = (cls, placeholder, size) => el('input', { type: 'text', class: cls, placeholder, size: String(size) });
  const f = el('form', { class: 'limit-form' }, input('rate', 'rate 20/s', 7), input('burst', 'burst', 4),
    input('concurrency', 'at once', 5), input('name', 'task name', 8), input('key', 'key {id}', 8),
    el('button', { type: 'submit', class: 'set-limit' }, 'set'));
  f.addEventListener('submit', (e) => {
    e.preventDefault();
    document.activeElement.blur();
    const spec = {};
    for (const k of ['rate', 'name', 'key']) { const v = f.querySelector('.' + k).value.trim(); if (v !== '') spec[k] = v; }
    for (const k of ['burst', 'concurrency']) {
      const v = f.querySelector('.' + k).value.trim();
      if (v !== '') spec[k] = /^-?\d+$/.test(v) ? Number(v) : v;
    }
    act($('topics-result'), () => post('/api/limits/set', { topic, limit: spec }),
      (x) => 'limit of ' + topic + (x.changed ? ' set' : ' was set already') + '; the workers show it within a few seconds',
      () => api('/api/state').then(renderState));
  });
  limitForms.set(topic, f);
  return f;
}

function pauseButton(t) {
  const [what, label] = t.paused ? ['resume', 'Resume'] : ['pause', 'Pause'];
  const b = el('button', { type: 'button', class: what }, label);
  b.addEventListener('click', async () => {
    const text = t.paused ? 'Resume topic ' + t.topic + ' on every host?'
      : 'Pause topic ' + t.topic + '? Its workers on every host stop starting its tasks (they stay in the broker).';
    if (!(await confirmed(text))) return;
    act($('topics-result'), () => post('/api/topics/' + what, { topic: t.topic }),
      (x) => 'topic ' + t.topic + (what === 'pause' ? ' paused' : ' resumed') + (x.changed ? '' : ' (it was already)') + '; the workers show it within a few seconds',
      () => api('/api/state').then(renderState));
  });
  return b;
}

function renderState(s) {
  state = s;
  const o = s.overview;
  $('prefix').textContent = 'prefix ' + s.prefix;
  $('status').textContent = (s.broker_up ? 'broker up' : 'broker unreachable') + ' · sampled ' + time(s.sampled_at_ms);
  $('ov-per-min').textContent = num(o.tasks_per_min);
  $('ov-failed-1h').textContent = num(o.failed_1h);
  $('ov-failed-1h-note').textContent = o.failed_1h_from === 'history' ? 'from the execution history'
    : 'from the workers\' metrics over the last ' + duration(Math.min(o.failed_1h_covers_ms, 3600000));
  $('ov-failed-7d').textContent = num(o.failed_7d);
  $('ov-failed-7d-note').textContent = s.history ? 'from the execution history' : 'execution history is off';
  $('ov-wait').textContent = o.longest_wait ? secs(o.longest_wait.seconds) : '–';
  $('ov-wait-topic').textContent = o.longest_wait ? 'topic ' + o.longest_wait.topic : 'no task started in the last minute';
  $('ov-procs').textContent = String(o.processes);
  $('ov-in-flight').textContent = num(o.in_flight);
  $('ov-delayed').textContent = num(o.delayed);
  $('topics-delayed').textContent = num(o.delayed);
  fill($('ov-topics').tBodies[0], topicRows(s.topics, false));
  // Not while a limit is being typed (the rows are drawn again, and the field would lose its focus).
  if (!$('topics').contains(document.activeElement) || document.activeElement.tagName !== 'INPUT') {
    fill($('topics').tBodies[0], topicRows(s.topics, true));
  }
  fill($('processes').tBodies[0], s.processes.map((p) => el('tr', { 'data-pid': p.pid },
    el('td', {}, p.source), el('td', {}, p.topic || ''), el('td', {}, p.role + (p.slot != null ? ' ' + p.slot : '')),
    el('td', { class: 'num' }, p.pid), el('td', { class: 'num' }, secs(p.uptime_seconds)),
    el('td', { class: 'num' }, p.cpu_percent == null ? '–' : p.cpu_percent.toFixed(1) + ' %'),
    el('td', { class: 'num' }, bytes(p.rss_bytes)), el('td', {}, p.task ? p.task.name : '–'), el('td', { class: 'num' }, secs(p.task && p.task.running_seconds)))));
  $('processes-note').textContent = s.metrics.length
    ? 'From the /status.json of ' + s.metrics.join(', ') + (s.discovers ? ' (found through the broker).' : '.')
    : s.discovers ? 'No process announced itself through the broker in the last minute.'
      : 'No metrics addresses given (--metrics=host:port,...): no processes to show.';
  const errors = s.errors.length ? 'Not answering: ' + s.errors.join('; ') : '';
  $('errors').textContent = errors;
  $('errors').hidden = !errors;
  for (const id of ['exec-topic', 'failed-topic']) {
    const sel = $(id);
    const have = Array.from(sel.options).map((x) => x.value);
    for (const t of s.topics) if (!have.includes(t.topic)) sel.append(el('option', { value: t.topic }, t.topic));
  }
}

function chart(svg, points, key, cls) {
  const w = 600, h = 180, pad = 30;
  const vals = points.map((p) => p[key]).filter((v) => v != null);
  const max = Math.max(1, ...vals);
  const now = Date.now(), from = now - 3600000;
  const x = (t) => pad + ((t - from) / 3600000) * (w - pad - 5);
  const y = (v) => h - 18 - (v / max) * (h - 30);
  const kids = [];
  const line = (x1, y1, x2, y2) => { const l = document.createElementNS(SVG, 'line'); for (const [k, v] of Object.entries({ x1, y1, x2, y2 })) l.setAttribute(k, v); l.setAttribute('class', 'axis'); return l; };
  const text = (tx, ty, s) => { const t = document.createElementNS(SVG, 'text'); t.setAttribute('x', tx); t.setAttribute('y', ty); t.textContent = s; return t; };
  kids.push(line(pad, h - 18, w - 5, h - 18), line(pad, 8, pad, h - 18));
  kids.push(text(2, 14, num(max)), text(2, h - 20, '0'), text(pad, h - 4, '-60 min'), text(w - 40, h - 4, 'now'));
  const d = points.filter((p) => p[key] != null).map((p, i) => (i ? 'L' : 'M') + x(p.at_ms).toFixed(1) + ' ' + y(p[key]).toFixed(1)).join(' ');
  if (d) { const path = document.createElementNS(SVG, 'path'); path.setAttribute('d', d); path.setAttribute('class', 'line ' + (cls || '')); kids.push(path); }
  svg.setAttribute('data-points', String(vals.length));
  svg.replaceChildren(...kids);
}

async function refreshState() {
  try { renderState(await api('/api/state')); } catch (e) { $('status').textContent = 'error: ' + e.message; }
}

async function refreshCharts() {
  try {
    const s = await api('/api/series');
    chart($('chart-throughput'), s.points, 'per_min');
    chart($('chart-runtime'), s.points, 'avg_run_ms');
  } catch (e) { /* shown by the state poll */ }
}

async function loadExecutions() {
  const q = new URLSearchParams({ topic: $('exec-topic').value, task: $('exec-task').value, status: $('exec-status').value });
  const r = await api('/api/executions?' + q);
  $('history-off').hidden = r.history;
  fill($('executions').tBodies[0], r.executions.map((x) => el('tr', { 'data-id': x.id, 'data-status': x.status },
    el('td', {}, time(x.ended_ms)), el('td', {}, x.topic), el('td', { class: 'task' }, x.task),
    el('td', { class: 'status-' + x.status }, x.status), el('td', { class: 'num' }, num(x.ms)), el('td', { class: 'num' }, x.attempt),
    el('td', {}, x.host + ' / ' + x.pid), el('td', { class: 'msg' }, x.message), el('td', { class: 'msg' }, JSON.stringify(x.params)))));
}

function failedError(t) {
  const f = t.failed || {};
  return (f.class ? f.class + ': ' : '') + (f.message || '');
}

async function loadFailed() {
  const topic = $('failed-topic').value;
  if (!topic) return;
  const r = await api('/api/failed?topic=' + encodeURIComponent(topic));
  // The detail shown stays while its task is still listed.
  if (!r.entries.some((t) => t.id === $('fd-id').textContent)) $('failed-detail').hidden = true;
  fill($('failed').tBodies[0], r.entries.map((t) => {
    const f = t.failed || {};
    const replay = el('button', { type: 'button', class: 'replay' }, 'Replay');
    replay.addEventListener('click', async (ev) => {
      ev.stopPropagation();
      if (!(await confirmed('Replay task ' + t.id + ' of topic ' + topic + '?'))) return;
      act($('failed-result'), () => post('/api/failed/replay', { topic, id: t.id }), (x) => x.moved + ' task(s) moved back to the ready queue', loadFailed);
    });
    const row = el('tr', { class: 'clickable', 'data-id': t.id },
      el('td', {}, t.id), el('td', {}, t.unreadable ? '(unreadable)' : t.name), el('td', { class: 'num' }, f.attempts == null ? t.attempt : f.attempts),
      el('td', {}, f.failed_at ? new Date(f.failed_at * 1000).toLocaleString('en-GB') : '–'), el('td', { class: 'msg error' }, failedError(t)),
      el('td', {}, t.unreadable ? '' : replay));
    row.addEventListener('click', () => {
      $('fd-id').textContent = t.id;
      $('fd-error').textContent = failedError(t);
      $('fd-params').textContent = JSON.stringify(t.unreadable ? t.body : t.params, null, 2);
      $('failed-detail').hidden = false;
    });
    return row;
  }));
}

async function act(out, call, say, then) {
  out.textContent = 'working…';
  try { out.textContent = say(await call()); } catch (e) { out.textContent = 'refused: ' + e.message; }
  if (then) then().catch((e) => { out.textContent = e.message; });
}

async function loadSchedules() {
  const r = await api('/api/schedules');
  const out = $('schedules-result');
  fill($('schedules').tBodies[0], r.schedules.map((s) => {
    const button = (what, label) => {
      const b = el('button', { type: 'button', class: what }, label);
      b.addEventListener('click', async () => {
        if (!(await confirmed(label + ' schedule ' + s.name + '?'))) return;
        act(out, () => post('/api/schedules/' + what, { name: s.name }), (x) => label + ': done' + (x.event_id ? ' (event ' + x.event_id + ')' : ''), loadSchedules);
      });
      return b;
    };
    return el('tr', { 'data-schedule': s.name },
      el('td', {}, s.name), el('td', {}, s.expression), el('td', {}, s.event), el('td', {}, s.timezone),
      el('td', { class: s.paused ? 'state paused' : 'state' }, s.paused ? 'paused' : 'active'),
      el('td', {}, s.next[0] || '–'), el('td', {}, s.last_fired_at || '–'),
      el('td', {}, s.paused ? button('resume', 'Resume') : button('pause', 'Pause'), ' ', button('trigger', 'Trigger now')));
  }));
}

// A group's progress: done of total, with a bar.
function progress(g) {
  const bar = el('progress', { max: String(g.total || 1), value: String(g.done) });
  return el('span', { class: 'progress' }, bar, ' ' + g.done + '/' + g.total);
}

function groupState(g) {
  return g.completed ? 'completed' : g.complete ? 'ended, follow-ups due' : 'in flight';
}

async function loadGroups() {
  const r = await api('/api/groups');
  $('groups-result').textContent = r.total > r.groups.length ? 'the newest ' + r.groups.length + ' of ' + r.total + ' groups' : '';
  fill($('groups').tBodies[0], r.groups.map((g) => {
    const row = el('tr', { class: 'clickable', 'data-group': g.id },
      el('td', {}, el('a', { href: '#group/' + encodeURIComponent(g.id) }, g.id)), el('td', {}, g.origin || '(by hand)'),
      el('td', {}, progress(g)), el('td', { class: 'num done' }, g.done), el('td', { class: 'num succeeded' }, g.succeeded),
      el('td', { class: 'num failed' }, g.failed), el('td', { class: 'num cancelled' }, g.cancelled),
      el('td', { class: 'num pending' }, g.pending), el('td', { class: 'num total' }, g.total),
      el('td', {}, time(g.opened_at)), el('td', { class: 'state' }, groupState(g)));
    row.addEventListener('click', () => { location.hash = '#group/' + encodeURIComponent(g.id); });
    return row;
  }));
}

// The group shown on its page (the part of the hash after "#group/").
const shownGroup = () => decodeURIComponent((location.hash.match(/^#group\/(.*)$/) || [])[1] || '');

async function loadGroup() {
  const id = shownGroup();
  $('group-id').textContent = id;
  const g = (await api('/api/group?id=' + encodeURIComponent(id))).group;
  if (shownGroup() !== id) return;
  for (const k of ['done', 'succeeded', 'failed', 'cancelled', 'pending']) $('group-' + k).textContent = k === 'done' ? g.done + '/' + g.total : g[k];
  $('group-state').textContent = groupState(g) + (g.origin ? ' · tasks of the event ' + g.origin : ' · made by hand')
    + (g.opened_at ? ' · opened ' + time(g.opened_at) : '') + (g.completed_at ? ' · completed ' + time(g.completed_at) : '');
  $('group-cancel').hidden = g.pending === 0;
  fill($('group-follow-ups').tBodies[0], g.follow_ups.map((f) => el('tr', {},
    el('td', {}, f.when), el('td', {}, f.event), el('td', {}, f.published ? 'yes' : 'no'))));
  const members = g.members || [];
  $('group-members-note').textContent = g.members == null ? 'Done over ten minutes ago: only its counts are kept.'
    : g.members_total > members.length ? 'The first ' + members.length + ' of ' + g.members_total + ' members.' : '';
  fill($('group-members').tBodies[0], members.map((m) => el('tr', { 'data-member': m.id },
    el('td', {}, m.id), el('td', { class: 'state member-' + m.state }, m.state))));
}

function show() {
  let view = (location.hash || '#overview').slice(1);
  if (view.startsWith('group/')) view = 'group';
  for (const s of document.querySelectorAll('.view')) s.hidden = s.id !== 'view-' + view;
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.view === view);
  for (const a of document.querySelectorAll('#nav a')) if (view === 'group' && a.dataset.view === 'groups') a.classList.add('active');
  const load = { executions: loadExecutions, failed: loadFailed, schedules: loadSchedules, groups: loadGroups, group: loadGroup }[view];
  if (load) load().catch((e) => { $('status').textContent = 'error: ' + e.message; });
}

document.addEventListener('DOMContentLoaded', () => {
  window.addEventListener('hashchange', show);
  $('exec-filter').addEventListener('submit', (e) => { e.preventDefault(); loadExecutions().catch(() => {}); });
  $('failed-topic').addEventListener('change', () => loadFailed().catch(() => {}));
  $('failed-reload').addEventListener('click', () => loadFailed().catch(() => {}));
  $('failed-replay-all').addEventListener('click', async () => {
    const topic = $('failed-topic').value;
    if (!topic || !(await confirmed('Replay every failed task of topic ' + topic + '?'))) return;
    act($('failed-result'), () => post('/api/failed/replay', { topic }), (x) => x.moved + ' task(s) moved back to the ready queue', loadFailed);
  });
  $('failed-purge').addEventListener('click', async () => {
    const topic = $('failed-topic').value;
    if (!topic || !(await confirmed('Delete every failed task of topic ' + topic + '? This cannot be undone.'))) return;
    act($('failed-result'), () => post('/api/failed/purge', { topic }), (x) => x.purged + ' failed task(s) deleted', loadFailed);
  });
  $('group-cancel').addEventListener('click', async () => {
    const id = shownGroup();
    if (!id || !(await confirmed('Cancel every member of group ' + id + ' not started? They end as cancelled, counted by the group.'))) return;
    act($('group-result'), () => post('/api/groups/cancel', { id }),
      () => 'group ' + id + ' cancelled: its members not started end as cancelled when a worker takes them', loadGroup);
  });
  refreshState().then(show);
  refreshCharts();
  setInterval(refreshState, 3000);
  setInterval(refreshCharts, 5000);
  setInterval(() => { if (location.hash === '#schedules') loadSchedules().catch(() => {}); }, 5000);
  setInterval(() => {
    if (location.hash === '#groups') loadGroups().catch(() => {});
    else if (location.hash.startsWith('#group/')) loadGroup().catch(() => {});
  }, 3000);
});
