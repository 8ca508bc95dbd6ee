// Rendering: keyed rows updated in place (no re-creation, so no flicker and focus survives), one
// <tbody> per VM, a bounded timeline. All text goes through textContent: nothing from the wire is
// ever parsed as HTML.
import { formatBytes, formatClock, formatDuration, formatPercent, formatRate } from './format.js';

const COLUMNS = 10;
const ACTIVE = new Set(['created', 'running', 'paused', 'ready', 'standby', 'waiting', 'pending', 'aborting']);
const CAN = {
  cancel: new Set(['created', 'running', 'paused', 'ready', 'standby', 'waiting', 'pending']),
  pause: new Set(['created', 'running', 'ready']),
  resume: new Set(['paused', 'standby']),
};

export function isActive(job) {
  return ACTIVE.has(job.state);
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function setClass(node, className) {
  if (node.className !== className) node.className = className;
}

export class JobsView {
  constructor(table) {
    this.table = table;
    this.emptyBody = table.querySelector('#empty-body');
    this.bodies = new Map(); // vm -> { tbody, header, rows: Map(key -> row) }
  }

  render(store) {
    const { filters } = store;
    let shown = 0;
    const vmNames = [...store.vms.keys()].sort(naturalCompare);
    for (const name of vmNames) {
      const vm = store.vms.get(name);
      const body = this.body(name);
      const visibleVm = !filters.vm || filters.vm === name;
      body.tbody.hidden = !visibleVm;
      const jobs = [...vm.jobs.values()].filter((job) => matches(job, filters)).sort(jobOrder);
      this.renderHeader(body.header, vm, jobs.length);
      const keep = new Set();
      let anchor = body.header;
      for (const job of jobs) {
        const key = `${job.id}#${job.incarnation}`;
        keep.add(key);
        let row = body.rows.get(key);
        if (!row) {
          row = createRow(name, job);
          body.rows.set(key, row);
        }
        updateRow(row, job, store);
        if (anchor.nextSibling !== row.tr) body.tbody.insertBefore(row.tr, anchor.nextSibling);
        anchor = row.tr;
      }
      for (const [key, row] of body.rows) {
        if (!keep.has(key)) {
          row.tr.remove();
          body.rows.delete(key);
        }
      }
      if (visibleVm) shown += jobs.length;
    }
    for (const [name, body] of this.bodies) {
      if (!store.vms.has(name)) {
        body.tbody.remove();
        this.bodies.delete(name);
      }
    }
    this.emptyBody.hidden = shown > 0;
    const emptyCell = this.emptyBody.querySelector('td');
    setText(emptyCell, store.vms.size === 0 ? 'Waiting for the gateway…' : 'No jobs match the filters yet: the driver starts new ones every few seconds.');
    return shown;
  }

  /** Cheap 1 s refresh of the ticking cells (time in state). */
  tick(store) {
    const now = Date.now();
    for (const [name, body] of this.bodies) {
      const vm = store.vms.get(name);
      if (!vm) continue;
      for (const [key, row] of body.rows) {
        const job = vm.jobs.get(key);
        if (job) setText(row.since, formatDuration((now - Date.parse(job.stateSince)) / 1000));
      }
    }
  }

  body(name) {
    let body = this.bodies.get(name);
    if (body) return body;
    const tbody = el('tbody', 'vm-group');
    tbody.dataset.vm = name;
    const header = el('tr', 'vm-row');
    const th = el('th');
    th.colSpan = COLUMNS;
    th.scope = 'rowgroup';
    header.append(th);
    tbody.append(header);
    // Keep VM groups in name order.
    const next = [...this.bodies.keys()].sort(naturalCompare).find((other) => naturalCompare(other, name) > 0);
    this.table.insertBefore(tbody, next ? this.bodies.get(next).tbody : this.emptyBody);
    body = { tbody, header, rows: new Map() };
    this.bodies.set(name, body);
    return body;
  }

  renderHeader(header, vm, count) {
    const th = header.firstChild;
    const text = `${vm.name}|${vm.status}|${vm.reason ?? ''}|${count}|${vm.activeCount}`;
    if (th.dataset.text === text) return;
    th.dataset.text = text;
    th.replaceChildren(
      el('span', 'vm-name', vm.name),
      el('span', `vm-status ${vm.status}`, vm.status === 'connected' ? '● monitor connected' : `● monitor ${vm.status}`),
      el('span', 'vm-meta', `${vm.activeCount} active · ${vm.jobs.size} listed${vm.reason ? ` · ${vm.reason}` : ''}`),
    );
  }
}

function createRow(vm, job) {
  const tr = el('tr', 'job-row');
  tr.dataset.vm = vm;
  tr.dataset.job = job.id;
  tr.dataset.incarnation = String(job.incarnation);
  const cell = () => tr.appendChild(el('td'));

  const jobCell = cell();
  const id = jobCell.appendChild(el('span', 'job-id', job.id));
  const incarnation = jobCell.appendChild(el('span', 'incarnation'));
  const result = jobCell.appendChild(el('span', 'row-result'));
  result.setAttribute('role', 'status');

  const type = cell();
  const stateCell = cell();
  const state = stateCell.appendChild(el('span', 'badge'));
  stateCell.classList.add('state-cell');

  const progressCell = cell();
  const progress = progressCell.appendChild(el('div', 'progress'));
  const bar = progress.appendChild(el('div', 'bar'));
  bar.setAttribute('role', 'progressbar');
  bar.setAttribute('aria-valuemin', '0');
  bar.setAttribute('aria-valuemax', '100');
  bar.setAttribute('aria-label', `progress of ${job.id}`);
  const fill = bar.appendChild(el('span'));
  const pct = progress.appendChild(el('span', 'pct'));
  const bytes = progressCell.appendChild(el('span', 'bytes'));

  const rate = cell();
  rate.className = 'num';
  const eta = cell();
  eta.className = 'num';
  const ready = cell();
  const outcomeCell = cell();
  const outcome = outcomeCell.appendChild(el('span'));
  const pivot = outcomeCell.appendChild(el('span', 'pivot'));
  const error = outcomeCell.appendChild(el('span', 'error-text'));
  const since = cell();
  since.className = 'num';

  const actionsCell = cell();
  actionsCell.className = 'actions-cell';
  const actions = actionsCell.appendChild(el('div', 'actions'));
  const button = (action, label, extra = '') => {
    const b = actions.appendChild(el('button', extra, label));
    b.type = 'button';
    b.dataset.action = action;
    b.setAttribute('aria-label', `${label} ${job.id} on ${vm}`);
    return b;
  };
  const buttons = {
    complete: button('complete', 'Complete', 'primary'),
    pause: button('pause', 'Pause'),
    resume: button('resume', 'Resume'),
    cancel: button('cancel', 'Cancel'),
  };
  return { tr, id, incarnation, result, type, state, bar, fill, pct, bytes, rate, eta, ready, outcome, pivot, error, since, buttons };
}

function updateRow(row, job, store) {
  const done = !isActive(job);
  setClass(row.tr, `job-row${job.stale ? ' is-stale' : ''}${done ? ' is-done' : ''}${job.ready ? ' is-ready' : ''}`);
  row.tr.dataset.state = job.state;
  setText(row.incarnation, job.incarnation > 1 ? `#${job.incarnation}` : '');
  // QEMU names the type in its first poll answer; until then say so quietly.
  setText(row.type, job.type === 'unknown' ? '…' : job.type);
  setClass(row.type, job.type === 'unknown' ? 'type-unknown' : '');
  row.type.title = job.type === 'unknown' ? 'type not reported by QEMU yet' : '';

  const reason = job.pauseReason ? ` (${job.pauseReason})` : '';
  setText(row.state, `${job.state}${reason}${job.stale ? ' · stale' : ''}`);
  setClass(row.state, `badge st-${job.state}`);

  const p = job.progress ?? { current: 0, total: 0, percent: 0, rate: null, etaSeconds: null };
  const percent = Math.max(0, Math.min(100, p.percent ?? 0));
  const width = `${percent}%`;
  if (row.fill.style.width !== width) row.fill.style.width = width;
  row.bar.setAttribute('aria-valuenow', String(Math.round(percent)));
  setText(row.pct, formatPercent(percent));
  const amount = p.total > 0 ? `${formatBytes(p.current)} of ${formatBytes(p.total)}` : 'starting…';
  setText(row.bytes, `${amount}${job.speed ? ` · limit ${formatRate(job.speed)}` : ''}`);
  setText(row.rate, done ? '–' : formatRate(p.rate));
  setText(row.eta, done || job.ready ? '–' : formatDuration(p.etaSeconds));

  setText(row.ready, job.ready === true ? '✓ ready' : job.ready === null ? '?' : '–');
  setClass(row.ready, job.ready === true ? 'ready-yes' : job.ready === null ? 'ready-unknown' : 'ready-no');
  row.ready.title = job.ready === null ? 'readiness unknown (old QEMU, event missed)' : '';

  setText(row.outcome, job.outcome ?? '');
  setClass(row.outcome, job.outcome ? `badge oc-${job.outcome}` : '');
  // Only a completed mirror/active commit has a pivot worth naming (a soft cancel completes without one).
  const completed = job.outcome === 'completed';
  setText(row.pivot, completed && job.pivoted === true ? 'pivoted' : completed && job.pivoted === false ? 'no pivot' : '');
  setText(row.error, job.error && job.outcome !== 'cancelled' ? job.error : '');

  setText(row.since, formatDuration((Date.now() - Date.parse(job.stateSince)) / 1000));

  const key = `${job.vm}/${job.id}#${job.incarnation}`;
  const result = store.results.get(key);
  setText(row.result, result?.text ?? '');
  setClass(row.result, `row-result${result ? (result.ok ? ' ok' : result.busy ? '' : ' bad') : ''}`);

  const busy = result?.busy === true;
  const completable = isActive(job) && (job.type === 'mirror' || job.ready === true) && !['waiting', 'pending', 'aborting'].includes(job.state);
  toggle(row.buttons.complete, completable, busy);
  row.buttons.complete.title = job.ready ? 'Pivot to the target now' : 'Completes as soon as QEMU says ready (never before)';
  toggle(row.buttons.pause, CAN.pause.has(job.state), busy);
  toggle(row.buttons.resume, CAN.resume.has(job.state), busy);
  toggle(row.buttons.cancel, CAN.cancel.has(job.state), busy);
}

function toggle(button, visible, busy) {
  if (button.hidden === visible) button.hidden = !visible;
  if (button.disabled !== busy) button.disabled = busy;
}

export function matches(job, filters) {
  if (filters.vm && job.vm !== filters.vm) return false;
  if (filters.type && job.type !== filters.type) return false;
  if (filters.state === 'active') return isActive(job);
  if (filters.state && job.state !== filters.state) return false;
  return true;
}

/** Active jobs first, newest first: stable while states change, so rows do not jump around. */
function jobOrder(a, b) {
  const activeDiff = Number(isActive(b)) - Number(isActive(a));
  if (activeDiff !== 0) return activeDiff;
  return (b.firstSeen ?? 0) - (a.firstSeen ?? 0) || naturalCompare(a.id, b.id);
}

function naturalCompare(a, b) {
  return a.localeCompare(b, undefined, { numeric: true });
}

export class TimelineView {
  constructor(list, limit = 150) {
    this.list = list;
    this.limit = limit;
  }

  add(entry) {
    const li = el('li');
    const time = li.appendChild(el('time', '', formatClock(entry.at)));
    time.dateTime = new Date(entry.at).toISOString();
    li.appendChild(el('span', 'what', entry.what));
    const change = li.appendChild(el('span', 'change'));
    if (entry.from) {
      change.append(el('span', `badge st-${entry.from}`, entry.from), el('span', 'arrow', '→'));
    }
    change.append(el('span', `badge ${entry.toClass}`, entry.to));
    if (entry.note) change.append(el('span', 'pivot', entry.note));
    this.list.prepend(li);
    while (this.list.childElementCount > this.limit) this.list.lastElementChild.remove();
  }
}
