// The xray-local console: the trace list, a trace's timeline and the service map, read from
// the daemon's own X-Ray read API (GetTraceSummaries, BatchGetTraces, GetServiceGraph).
//
// Every string that comes from a document is put on the page as text (textContent, SVG text
// nodes, attribute values), never as markup: a name such as `<img onerror=...>` is shown as
// those characters.
'use strict';

const POLL_MS = 2000;
const LIST_MAX = 10000;

const $ = (id) => document.getElementById(id);

/** An element with a class and text, all optional. */
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  return node;
}

/** POST to the read API; resolves to the parsed answer, rejects with the service's message. */
async function api(path, body) {
  const response = await fetch(path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  let value = null;
  try { value = text ? JSON.parse(text) : {}; } catch (_) { value = null; }
  if (!response.ok) {
    const message = value && (value.message || value.Message);
    throw new Error(message || `${path} answered ${response.status}`);
  }
  return value;
}

function pad(n, width) { return String(n).padStart(width || 2, '0'); }

/** Epoch seconds as local `YYYY-MM-DD HH:MM:SS.mmm`. */
function clock(seconds) {
  if (typeof seconds !== 'number') return '';
  const d = new Date(seconds * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.` +
    `${pad(d.getMilliseconds(), 3)}`;
}

/** Seconds as a short duration. */
function took(seconds) {
  if (typeof seconds !== 'number' || !isFinite(seconds)) return '';
  if (seconds < 1) return `${(seconds * 1000).toFixed(seconds < 0.01 ? 2 : 1)} ms`;
  return `${seconds.toFixed(seconds < 10 ? 3 : 1)} s`;
}

function percent(part, whole) {
  return whole ? `${((100 * part) / whole).toFixed(1)} %` : '0 %';
}

function setStatus(text, isError) {
  const status = $('status');
  status.textContent = text;
  status.className = isError ? 'error' : '';
}

/** The time range the form asks for, in epoch seconds. */
function timeRange() {
  const now = Date.now() / 1000;
  const span = Number($('range').value);
  return { StartTime: span > 0 ? now - span : 0, EndTime: now + 3600 };
}

// ===== the trace list =====

// `filter` is the expression last searched for: a refresh for new traces uses it, not what
// is half typed in the box.
const list = { token: null, shown: 0, filter: '' };

function flags(container, summary) {
  const add = (name) => container.appendChild(el('span', `flag ${name}`, name));
  if (summary.HasFault) add('fault');
  if (summary.HasError) add('error');
  if (summary.HasThrottle) add('throttle');
  if (!summary.HasFault && !summary.HasError && !summary.HasThrottle) add('ok');
  if (summary.IsPartial) add('partial');
}

function summaryRow(summary) {
  const row = el('tr');
  row.dataset.traceId = summary.Id;
  const http = summary.Http || {};
  const entry = summary.EntryPoint ? summary.EntryPoint.Name : '';
  const services = (summary.ServiceIds || []).map((s) => s.Name).join(', ');
  const cells = [
    ['id', summary.Id], ['', clock(summary.StartTime)], ['', entry],
    ['', http.HttpMethod], ['', http.HttpURL], ['', http.HttpStatus],
    ['', took(summary.ResponseTime)], ['', took(summary.Duration)],
  ];
  for (const [className, text] of cells) {
    const cell = el('td', className, text);
    if (text !== undefined && text !== null) cell.title = String(text);
    row.appendChild(cell);
  }
  const flagCell = el('td');
  flags(flagCell, summary);
  row.appendChild(flagCell);
  const serviceCell = el('td', '', services);
  serviceCell.title = services;
  row.appendChild(serviceCell);
  return row;
}

async function loadList(more) {
  const request = { ...timeRange(), TimeRangeType: 'TraceId', MaxResults: LIST_MAX };
  const filter = list.filter;
  if (filter) request.FilterExpression = filter;
  if (more && list.token) request.NextToken = list.token;
  const body = $('trace-list').tBodies[0];
  let answer;
  try {
    answer = await api('/TraceSummaries', request);
  } catch (err) {
    if (!more) body.replaceChildren();
    list.token = null;
    $('more').hidden = true;
    setStatus(`${err.message}`, true);
    return;
  }
  const fragment = document.createDocumentFragment();
  for (const summary of answer.TraceSummaries || []) fragment.appendChild(summaryRow(summary));
  if (more) {
    body.appendChild(fragment);
    list.shown += (answer.TraceSummaries || []).length;
  } else {
    body.replaceChildren(fragment);
    list.shown = (answer.TraceSummaries || []).length;
  }
  list.token = answer.NextToken || null;
  $('more').hidden = !list.token;
  const of = answer.TracesProcessedCount;
  setStatus(`${list.shown} trace${list.shown === 1 ? '' : 's'} shown` +
    (list.token ? ', more held' : '') + ` (${of} in the time range)`);
}

// ===== a trace =====

/** Every entity of the trace's documents as a tree: segments under the subsegment that
 *  called them, by `parent_id`; children by start time. */
function entityTree(documents) {
  const byId = new Map();
  const nodes = [];
  const visit = (doc, parent, segment) => {
    const node = { doc, children: [], parent, segment, isSegment: !parent };
    nodes.push(node);
    if (typeof doc.id === 'string') byId.set(doc.id, node);
    for (const sub of Array.isArray(doc.subsegments) ? doc.subsegments : []) {
      if (sub && typeof sub === 'object') node.children.push(visit(sub, node, segment || doc));
    }
    return node;
  };
  const tops = documents.map((doc) => visit(doc, null, null));
  const roots = [];
  for (const top of tops) {
    const caller = typeof top.doc.parent_id === 'string' ? byId.get(top.doc.parent_id) : null;
    if (caller && caller !== top) {
      top.parent = caller;
      caller.children.push(top);
    } else {
      roots.push(top);
    }
  }
  const byStart = (a, b) => (Number(a.doc.start_time) || 0) - (Number(b.doc.start_time) || 0);
  const flat = [];
  const seen = new Set();
  const walk = (node, depth) => {
    if (seen.has(node)) return;
    seen.add(node);
    node.depth = depth;
    flat.push(node);
    node.children.sort(byStart);
    for (const child of node.children) walk(child, depth + 1);
  };
  roots.sort(byStart);
  for (const root of roots) walk(root, 0);
  return flat;
}

function statusOf(doc) {
  if (doc.in_progress === true) return 'in-progress';
  if (doc.fault === true) return 'fault';
  if (doc.throttle === true) return 'throttle';
  if (doc.error === true) return 'error';
  return 'ok';
}

async function openTrace(id) {
  show('trace-view');
  $('trace-title').textContent = `Trace ${id}`;
  $('trace-summary').textContent = '';
  $('rows').replaceChildren();
  $('axis').replaceChildren();
  $('details').replaceChildren(el('p', 'hint', 'Select a segment or subsegment to see its details.'));
  let answer;
  try {
    answer = await api('/Traces', { TraceIds: [id] });
  } catch (err) {
    setStatus(err.message, true);
    return;
  }
  const trace = (answer.Traces || [])[0];
  if (!trace) {
    setStatus(`no trace ${id} is held`, true);
    return;
  }
  const documents = [];
  for (const segment of trace.Segments || []) {
    try {
      const doc = JSON.parse(segment.Document);
      if (doc && typeof doc === 'object') documents.push(doc);
    } catch (_) { /* a document the daemon held is JSON; skip anything else */ }
  }
  const flat = entityTree(documents);
  let first = Infinity;
  let last = -Infinity;
  for (const node of flat) {
    const start = Number(node.doc.start_time);
    const end = Number(node.doc.end_time);
    if (isFinite(start)) { first = Math.min(first, start); last = Math.max(last, start); }
    if (isFinite(end)) last = Math.max(last, end);
  }
  const total = last > first ? last - first : 0;
  const segments = flat.filter((n) => n.isSegment).length;
  $('trace-summary').textContent = `${segments} segment${segments === 1 ? '' : 's'}, ` +
    `${flat.length - segments} subsegment${flat.length - segments === 1 ? '' : 's'}, ` +
    `${took(total)}, started ${clock(first)}`;
  setStatus('');
  drawAxis(total);
  const rows = $('rows');
  waterfall.flat = flat;
  waterfall.first = first;
  waterfall.total = total;
  waterfall.selected = 0;
  rows.dataset.count = String(flat.length);
  rows.scrollTop = 0;
  rows.onclick = (event) => {
    const row = event.target.closest('.row');
    if (!row) return;
    waterfall.selected = Number(row.dataset.index);
    for (const old of rows.querySelectorAll('.row.selected')) old.classList.remove('selected');
    row.classList.add('selected');
    showDetails(flat[waterfall.selected]);
  };
  rows.onscroll = () => {
    if (waterfall.pending) return;
    waterfall.pending = true;
    requestAnimationFrame(() => { waterfall.pending = false; drawRows(); });
  };
  drawRows();
  if (flat.length > 0) showDetails(flat[0]);
}

// The waterfall draws only the rows in view (and some on either side), so that a trace of
// 10,000 entities opens as fast as one of ten; the scroll height is every row's.
const ROW_HEIGHT = 22;
const ROWS_AROUND = 30;
const waterfall = { flat: [], first: 0, total: 0, selected: 0, pending: false };

function drawRows() {
  const rows = $('rows');
  const count = waterfall.flat.length;
  const from = Math.max(0, Math.floor(rows.scrollTop / ROW_HEIGHT) - ROWS_AROUND);
  const visible = Math.ceil((rows.clientHeight || 600) / ROW_HEIGHT);
  const to = Math.min(count, from + visible + 2 * ROWS_AROUND);
  const spacer = el('div', 'spacer');
  spacer.style.height = `${count * ROW_HEIGHT}px`;
  for (let index = from; index < to; index += 1) {
    const row = waterfallRow(waterfall.flat[index], index, waterfall.first, waterfall.total);
    row.style.top = `${index * ROW_HEIGHT}px`;
    if (index === waterfall.selected) row.classList.add('selected');
    spacer.appendChild(row);
  }
  rows.replaceChildren(spacer);
}

function drawAxis(total) {
  const axis = $('axis');
  for (let i = 0; i <= 4; i += 1) {
    const tick = el('span', '', took((total * i) / 4) || '0 ms');
    tick.style.left = `${i * 25}%`;
    tick.style.transform = `translateX(${i === 0 ? 0 : i === 4 ? -100 : -50}%)`;
    axis.appendChild(tick);
  }
}

function waterfallRow(node, index, first, total) {
  const doc = node.doc;
  const row = el('div', `row ${node.isSegment ? 'segment' : 'subsegment'}`);
  row.dataset.index = String(index);
  row.dataset.id = typeof doc.id === 'string' ? doc.id : '';
  const label = el('span', 'label', doc.name);
  label.style.paddingLeft = `${4 + 14 * Math.min(node.depth, 40)}px`;
  label.title = String(doc.name);
  row.appendChild(label);
  const track = el('div', 'track');
  const start = Number(doc.start_time);
  const end = Number(doc.end_time);
  const bar = el('div', `bar ${statusOf(doc)}`);
  const left = total > 0 && isFinite(start) ? ((start - first) / total) * 100 : 0;
  const width = total > 0 && isFinite(end) && isFinite(start) ? ((end - start) / total) * 100 : 0;
  bar.style.left = `${left}%`;
  bar.style.width = `${Math.max(width, 0)}%`;
  track.appendChild(bar);
  const label2 = el('span', 'took', isFinite(end) && isFinite(start) ? took(end - start) : 'in progress');
  const right = left + Math.max(width, 0);
  if (right > 85) {
    // No room after the bar: inside its end.
    label2.classList.add('inside');
    label2.style.right = `${Math.max(100 - right, 0)}%`;
  } else {
    label2.style.left = `${right}%`;
  }
  track.appendChild(label2);
  row.appendChild(track);
  return row;
}

function section(container, title) {
  container.appendChild(el('h3', '', title));
}

function pairs(container, title, object) {
  if (!object || typeof object !== 'object' || Object.keys(object).length === 0) return;
  section(container, title);
  const table = el('table', `pairs ${title.toLowerCase()}`);
  for (const [key, value] of Object.entries(object)) {
    const row = el('tr');
    row.appendChild(el('td', 'key', key));
    row.appendChild(el('td', 'value', typeof value === 'object' ? JSON.stringify(value) : value));
    table.appendChild(row);
  }
  container.appendChild(table);
}

function block(container, title, value) {
  if (value === undefined || value === null) return;
  section(container, title);
  container.appendChild(el('pre', `block ${title.toLowerCase()}`, JSON.stringify(value, null, 2)));
}

function exceptions(container, cause) {
  if (!cause || typeof cause !== 'object') return;
  section(container, 'Exceptions');
  if (typeof cause.working_directory === 'string') {
    container.appendChild(el('p', 'hint', `working directory ${cause.working_directory}`));
  }
  const list = Array.isArray(cause.exceptions) ? cause.exceptions : [];
  if (list.length === 0 && typeof cause.id === 'string') {
    container.appendChild(el('p', '', `recorded in another entity (${cause.id})`));
  }
  for (const exception of list) {
    if (!exception || typeof exception !== 'object') continue;
    const box = el('div', 'exception');
    const head = [exception.type, exception.message].filter((t) => t !== undefined).join(': ');
    box.appendChild(el('strong', 'exception-head', head || '(no message)'));
    if (exception.remote === true) box.appendChild(el('span', 'hint', ' (remote)'));
    const stack = Array.isArray(exception.stack) ? exception.stack : [];
    if (stack.length > 0) {
      const lines = stack.map((frame) => {
        if (!frame || typeof frame !== 'object') return String(frame);
        const where = [frame.path, frame.line].filter((p) => p !== undefined).join(':');
        return `  at ${frame.label || '?'} (${where})`;
      });
      if (exception.truncated) lines.push(`  … ${exception.truncated} more`);
      box.appendChild(el('pre', 'stack', lines.join('\n')));
    }
    container.appendChild(box);
  }
}

function showDetails(node) {
  const doc = node.doc;
  const details = $('details');
  details.replaceChildren();
  details.appendChild(el('h2', 'entity-name', doc.name));
  const facts = {
    kind: node.isSegment ? 'segment' : 'subsegment',
    id: doc.id,
    parent_id: doc.parent_id,
    namespace: doc.namespace,
    origin: doc.origin,
    user: doc.user,
    start: clock(Number(doc.start_time)),
    end: doc.in_progress === true ? 'in progress' : clock(Number(doc.end_time)),
    duration: took(Number(doc.end_time) - Number(doc.start_time)),
    status: statusOf(doc),
  };
  for (const key of Object.keys(facts)) {
    if (facts[key] === undefined || facts[key] === '') delete facts[key];
  }
  pairs(details, 'Overview', facts);
  pairs(details, 'Annotations', doc.annotations);
  block(details, 'Metadata', doc.metadata);
  block(details, 'HTTP', doc.http);
  block(details, 'AWS', doc.aws);
  block(details, 'SQL', doc.sql);
  exceptions(details, doc.cause);
  const raw = { ...doc };
  if (Array.isArray(raw.subsegments)) {
    raw.subsegments = `${raw.subsegments.length} subsegments, shown as their own rows`;
  }
  block(details, 'Raw', raw);
}

// ===== the service map =====

/** client, service, aws (an AWS resource) or remote. */
function nodeKind(service) {
  if (service.Type === 'client') return 'client';
  if (service.Type === 'remote') return 'remote';
  if (service.State === 'active') return 'service';
  return 'aws';
}

const KIND_COLOR = {
  client: 'var(--client)', service: 'var(--service)', aws: 'var(--aws)', remote: 'var(--remote)',
};
const KIND_LABEL = {
  client: 'client', service: 'service', aws: 'AWS resource', remote: 'remote service',
};

function edgeFigures(stats) {
  const total = stats.TotalCount || 0;
  const errors = (stats.ErrorStatistics || {}).TotalCount || 0;
  const throttles = (stats.ErrorStatistics || {}).ThrottleCount || 0;
  const faults = (stats.FaultStatistics || {}).TotalCount || 0;
  return {
    total,
    average: total ? (stats.TotalResponseTime || 0) / total : 0,
    errors: percent(errors, total),
    faults: percent(faults, total),
    throttles: percent(throttles, total),
  };
}

async function loadMap() {
  show('map-view');
  let answer;
  try {
    answer = await api('/ServiceGraph', timeRange());
  } catch (err) {
    setStatus(err.message, true);
    return;
  }
  const services = answer.Services || [];
  setStatus(`${services.length} node${services.length === 1 ? '' : 's'}`);
  drawMap(services);
}

function drawMap(services) {
  const byRef = new Map(services.map((s) => [s.ReferenceId, s]));
  const incoming = new Map(services.map((s) => [s.ReferenceId, 0]));
  for (const s of services) {
    for (const edge of s.Edges || []) {
      incoming.set(edge.ReferenceId, (incoming.get(edge.ReferenceId) || 0) + 1);
    }
  }
  // Columns by distance from the nodes nothing calls.
  const depth = new Map();
  const queue = services.filter((s) => !incoming.get(s.ReferenceId)).map((s) => s.ReferenceId);
  if (queue.length === 0 && services.length > 0) queue.push(services[0].ReferenceId);
  for (const ref of queue) depth.set(ref, 0);
  for (let i = 0; i < queue.length; i += 1) {
    const from = byRef.get(queue[i]);
    for (const edge of (from && from.Edges) || []) {
      if (!depth.has(edge.ReferenceId) && byRef.has(edge.ReferenceId)) {
        depth.set(edge.ReferenceId, depth.get(queue[i]) + 1);
        queue.push(edge.ReferenceId);
      }
    }
  }
  for (const s of services) if (!depth.has(s.ReferenceId)) depth.set(s.ReferenceId, 0);
  const columns = new Map();
  const position = new Map();
  for (const s of services) {
    const d = depth.get(s.ReferenceId);
    const row = columns.get(d) || 0;
    columns.set(d, row + 1);
    position.set(s.ReferenceId, { x: 90 + d * 240, y: 70 + row * 120 });
  }
  const width = 180 + 240 * Math.max(0, ...columns.keys());
  const height = 140 + 120 * Math.max(0, ...[...columns.values()].map((n) => n - 1));
  const map = $('map');
  map.replaceChildren();
  map.setAttribute('viewBox', `0 0 ${Math.max(width, 400)} ${Math.max(height, 200)}`);
  map.appendChild(svgArrowHead());
  const edgeRows = document.createDocumentFragment();
  for (const s of services) {
    for (const edge of s.Edges || []) {
      const to = byRef.get(edge.ReferenceId);
      const a = position.get(s.ReferenceId);
      const b = position.get(edge.ReferenceId);
      if (!to || !a || !b) continue;
      const figures = edgeFigures(edge.SummaryStatistics || {});
      const group = svg('g', { class: 'edge', 'data-from': s.Name, 'data-to': to.Name });
      group.appendChild(svg('line', {
        x1: a.x + 28, y1: a.y, x2: b.x - 30, y2: b.y, 'marker-end': 'url(#arrow)',
      }));
      const label = svg('text', { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 - 6 });
      label.textContent = `${took(figures.average)} · ${figures.total} calls`;
      group.appendChild(label);
      const rates = svg('text', { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 + 8 });
      rates.textContent = `err ${figures.errors} · fault ${figures.faults} · thr ${figures.throttles}`;
      group.appendChild(rates);
      map.appendChild(group);
      const row = el('tr');
      for (const text of [s.Name || KIND_LABEL[nodeKind(s)], to.Name, figures.total,
        took(figures.average), figures.errors, figures.faults, figures.throttles]) {
        row.appendChild(el('td', '', text));
      }
      edgeRows.appendChild(row);
    }
  }
  for (const s of services) {
    const p = position.get(s.ReferenceId);
    const kind = nodeKind(s);
    const group = svg('g', { class: `node ${kind}`, 'data-name': s.Name || kind });
    const circle = svg('circle', { cx: p.x, cy: p.y, r: 26 });
    circle.style.fill = KIND_COLOR[kind];
    group.appendChild(circle);
    const title = svg('title');
    title.textContent = `${s.Name || kind} (${s.Type || KIND_LABEL[kind]})`;
    group.appendChild(title);
    const name = svg('text', { x: p.x, y: p.y + 44 });
    name.textContent = kind === 'client' ? 'Client' : s.Name;
    group.appendChild(name);
    const kindText = svg('text', { x: p.x, y: p.y + 58, class: 'kind' });
    kindText.textContent = s.Type && kind !== 'client' ? s.Type : KIND_LABEL[kind];
    group.appendChild(kindText);
    map.appendChild(group);
  }
  $('edge-list').tBodies[0].replaceChildren(edgeRows);
}

function svgArrowHead() {
  const defs = svg('defs');
  const marker = svg('marker', {
    id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 8, markerHeight: 8,
    orient: 'auto-start-reverse',
  });
  marker.appendChild(svg('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: '#8c959f' }));
  defs.appendChild(marker);
  return defs;
}

function legend() {
  const box = $('legend');
  for (const kind of ['client', 'service', 'aws', 'remote']) {
    const item = el('span');
    const dot = el('span', 'dot');
    dot.style.background = KIND_COLOR[kind];
    item.appendChild(dot);
    item.appendChild(document.createTextNode(KIND_LABEL[kind]));
    box.appendChild(item);
  }
}

// ===== views, navigation and live updates =====

function show(view) {
  for (const id of ['traces-view', 'trace-view', 'map-view']) $(id).hidden = id !== view;
  $('nav-traces').className = view === 'map-view' ? '' : 'current';
  $('nav-map').className = view === 'map-view' ? 'current' : '';
}

function route() {
  let hash = location.hash.replace(/^#\/?/, '');
  try { hash = decodeURIComponent(hash); } catch (_) { /* shown as typed */ }
  if (hash.startsWith('trace/')) return openTrace(hash.slice('trace/'.length));
  if (hash === 'map') return loadMap();
  show('traces-view');
  return loadList(false);
}

let lastAccepted = null;

async function poll() {
  try {
    const response = await fetch('/stats');
    const stats = await response.json();
    $('live').className = '';
    $('live').textContent = `live · ${stats.accepted} documents`;
    const changed = lastAccepted !== null && stats.accepted !== lastAccepted;
    lastAccepted = stats.accepted;
    if (changed && !$('traces-view').hidden) await loadList(false);
    else if (changed && !$('map-view').hidden) await loadMap();
  } catch (_) {
    $('live').className = 'off';
    $('live').textContent = 'daemon unreachable';
  }
  setTimeout(poll, POLL_MS);
}

function start() {
  legend();
  $('query').addEventListener('submit', (event) => {
    event.preventDefault();
    list.filter = $('filter').value.trim();
    if (!$('map-view').hidden) loadMap();
    else if (location.hash.startsWith('#/trace/')) location.hash = '#/traces';
    else loadList(false);
  });
  $('range').addEventListener('change', () => $('query').requestSubmit());
  $('more').addEventListener('click', () => loadList(true));
  $('trace-list').tBodies[0].addEventListener('click', (event) => {
    const row = event.target.closest('tr');
    if (row && row.dataset.traceId) location.hash = `#/trace/${row.dataset.traceId}`;
  });
  window.addEventListener('hashchange', route);
  route();
  poll();
}

// For scripts driving the page (the console's browser tests and benches): each resolves once
// its view is drawn.
window.xrayConsole = Object.freeze({
  list: () => loadList(false),
  trace: (id) => openTrace(id),
  map: () => loadMap(),
});

start();
