// Rendering: keyed rows updated in place (no re-creation, so no flicker and focus survives), one
// <tbody> per VM, a bounded timeline. All text goes through textContent: nothing from the wire is
// ever parsed as HTML.
import { formatBytes, formatClock, formatDuration, formatPercent, formatRate } from './format.js';
import { isEnded, VERB_STATES } from './lib/client/index.js';

const COLUMNS = 10;
/** A paused job (standby = a paused ready one) offers Resume, a running one Pause; QEMU accepts both in either. */
const PAUSED = new Set(['paused', 'standby']);
const offers = (verb, state) => VERB_STATES[verb].includes(state) && (verb === 'pause' ? !PAUSED.has(state) : verb === 'resume' ? PAUSED.has(state) : true);

/** Why a rate can exceed the speed limit (issue: 17.6 MiB/s beside limit 4.0 MiB/s). */
const RATE_VS_LIMIT =
  'Progress rate. QEMU counts areas it skips (unallocated in the source) as progress, so this can exceed the write limit, which caps only the bytes actually written.';
const CONVERGING =
  'All data is copied (100%), but QEMU has not declared the job ready yet: it is converging (flushing the last writes, settling). A complete sent now would be refused; Complete waits for ready.';

/** 100% copied, still running, not ready: there is no ETA, the job is converging. */
export function isConverging(job) {
  const p = job.progress;
  return job.state === 'running' && job.ready === false && p?.total > 0 && p.current >= p.total;
}

export function isActive(job) {
  return !isEnded(job);
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

/**
 * The jobs table: every VM's active jobs first (one <tbody class="vm-group"> per VM), then one toggle
 * row, then the finished jobs (one <tbody class="vm-finished"> per VM), collapsed unless asked for, so
 * fifty finished rows of one VM never push another VM's active jobs out of sight.
 */
export class JobsView {
  constructor(table, onToggleFinished) {
    this.table = table;
    this.emptyBody = table.querySelector('#empty-body');
    this.bodies = new Map(); // `${section}\0${vm}` -> { tbody, header, rows: Map(key -> row) }
    this.showFinished = false;
    this.finishedToggle = el('tbody', 'finished-toggle');
    const row = this.finishedToggle.appendChild(el('tr'));
    const cell = row.appendChild(el('td'));
    cell.colSpan = COLUMNS;
    this.toggleButton = cell.appendChild(el('button', 'toggle-finished'));
    this.toggleButton.type = 'button';
    this.toggleButton.id = 'toggle-finished';
    this.toggleButton.addEventListener('click', () => {
      this.showFinished = !this.showFinished;
      onToggleFinished?.();
    });
    table.insertBefore(this.finishedToggle, this.emptyBody);
  }

  render(store) {
    const { filters } = store;
    let shown = 0;
    let finishedCount = 0;
    // A state filter that picks finished jobs shows them without the toggle.
    const finishedOpen = this.showFinished || filters.state === 'concluded' || filters.state === 'dismissed';
    const vmNames = store.vmOrder;
    for (const section of ['active', 'finished']) {
      // VM groups in name order within their section: each placed after the one before it.
      let anchor = null;
      for (const name of vmNames) {
        const vm = store.vms.get(name);
        const jobs = [...vm.jobs.values()].filter((job) => matches(job, filters) && isActive(job) === (section === 'active')).sort(jobOrder);
        const visibleVm = !filters.vm || filters.vm === name;
        if (section === 'finished' && visibleVm) finishedCount += jobs.length;
        // An active group is there for every VM (its status is news); a finished one only with jobs.
        if (section === 'finished' && jobs.length === 0 && !this.bodies.has(`${section}\0${name}`)) continue;
        const body = this.body(name, section);
        const before = anchor ? anchor.nextSibling : section === 'active' ? this.table.querySelector('tbody.vm-group, tbody.finished-toggle') : this.finishedToggle.nextSibling;
        if (before !== body.tbody) this.table.insertBefore(body.tbody, before);
        anchor = body.tbody;
        body.tbody.hidden = !visibleVm || (section === 'finished' && (!finishedOpen || jobs.length === 0));
        if (section === 'active') this.renderHeader(body.header, vm, jobs.length);
        else this.renderFinishedHeader(body.header, vm, jobs.length);
        if (visibleVm && !body.tbody.hidden) shown += jobs.length;
        this.renderRows(body, name, jobs, store);
      }
    }
    for (const [id, body] of this.bodies) {
      if (!store.vms.has(id.split('\0')[1])) {
        body.tbody.remove();
        this.bodies.delete(id);
      }
    }
    this.finishedToggle.hidden = finishedCount === 0;
    setText(this.toggleButton, finishedOpen ? `▾ Hide ${finishedCount} finished job${finishedCount === 1 ? '' : 's'}` : `▸ Show ${finishedCount} finished job${finishedCount === 1 ? '' : 's'}`);
    this.toggleButton.setAttribute('aria-expanded', String(finishedOpen));
    this.emptyBody.hidden = shown > 0 || finishedCount > 0;
    const emptyCell = this.emptyBody.querySelector('td');
    setText(emptyCell, store.vms.size === 0 ? 'Waiting for the gateway…' : 'No jobs match the filters yet: the driver starts new ones every few seconds.');
    return shown;
  }

  renderRows(body, name, jobs, store) {
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
  }

  /** Cheap 1 s refresh of the ticking cells (time in state). */
  tick(store) {
    const now = Date.now();
    for (const [id, body] of this.bodies) {
      const vm = store.vms.get(id.split('\0')[1]);
      if (!vm) continue;
      for (const [key, row] of body.rows) {
        const job = vm.jobs.get(key);
        if (job) setText(row.since, formatDuration((now - Date.parse(job.stateSince)) / 1000));
      }
    }
  }

  body(name, section) {
    const id = `${section}\0${name}`;
    let body = this.bodies.get(id);
    if (body) return body;
    const tbody = el('tbody', section === 'active' ? 'vm-group' : 'vm-finished');
    tbody.dataset.vm = name;
    const header = el('tr', 'vm-row');
    const th = el('th');
    th.colSpan = COLUMNS;
    th.scope = 'rowgroup';
    header.append(th);
    tbody.append(header);
    // Placed by render, in name order; until then at the end of its section.
    this.table.insertBefore(tbody, section === 'active' ? this.finishedToggle : this.emptyBody);
    body = { tbody, header, rows: new Map() };
    this.bodies.set(id, body);
    return body;
  }

  renderFinishedHeader(header, vm, count) {
    const th = header.firstChild;
    const text = `${vm.name}|${count}`;
    if (th.dataset.text === text) return;
    th.dataset.text = text;
    th.replaceChildren(el('span', 'vm-name', vm.name), el('span', 'vm-meta', `${count} finished`));
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
  setText(row.bytes, `${amount}${job.speed ? ` · write limit ${formatRate(job.speed)}` : ''}`);
  setText(row.rate, done ? '–' : formatRate(p.rate));
  row.rate.title = job.speed ? RATE_VS_LIMIT : '';
  const converging = isConverging(job);
  setText(row.eta, done || job.ready ? '–' : converging ? 'converging' : formatDuration(p.etaSeconds));
  setClass(row.eta, converging ? 'num converging' : 'num');
  row.eta.title = converging ? CONVERGING : '';

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
  toggle(row.buttons.pause, offers('pause', job.state), busy);
  toggle(row.buttons.resume, offers('resume', job.state), busy);
  toggle(row.buttons.cancel, offers('cancel', job.state), busy);
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

/** vm2 before vm10. One collator: localeCompare with options builds one per call, which a fleet of VMs feels. */
export const naturalCompare = new Intl.Collator(undefined, { numeric: true }).compare;

export class TimelineView {
  constructor(list, limit = 150) {
    this.list = list;
    this.limit = limit;
    /** Stream positions shown (an event can come both from the history and live): bounded like the list. */
    this.seen = new Set();
  }

  /** Newest first; `older` entries (history read at load) go below everything shown. */
  add(entry, { older = false } = {}) {
    if (entry.key) {
      if (this.seen.has(entry.key)) return;
      this.seen.add(entry.key);
      if (this.seen.size > this.limit * 4) this.seen.delete(this.seen.values().next().value);
    }
    if (older && this.list.childElementCount >= this.limit) return;
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
    if (older) this.list.append(li);
    else this.list.prepend(li);
    while (this.list.childElementCount > this.limit) this.list.lastElementChild.remove();
  }
}
