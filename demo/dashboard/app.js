// blockjob-gateway dashboard: wiring of the protocol client, the job store and the views.
// The client is the package's own (blockjob-gateway/client), served by the gateway at /lib/.
import { GatewayClient } from './lib/client/index.js';
import { loadRecentTransitions } from './history.js';
import { readJobs } from './jobs-http.js';
import { isActive, JobsView, matches, naturalCompare, TimelineView } from './view.js';

const TOKEN_KEY = 'blockjob-gateway.token';
/** Finished jobs kept per VM beyond what the gateway's snapshot holds. */
const MAX_FINISHED_PER_VM = 50;

const $ = (id) => document.getElementById(id);

const store = {
  /** vm -> { name, status, reason, jobs: Map(jobKey -> job), activeCount } */
  vms: new Map(),
  /** `${vm}/${jobKey}` -> { ok, busy, text } : the last command result per job */
  results: new Map(),
  filters: { vm: '', state: '', type: '' },
  /** VM names in display order, sorted again only when a VM is added (not every frame). */
  vmOrder: [],
  canControl: false,
  firstSeen: new Map(),
};

const jobsView = new JobsView($('jobs'), () => scheduleRender());
const timeline = new TimelineView($('timeline'));

// --- token: URL fragment (#token=…) > sessionStorage > prompt when the gateway asks for one ---------
function takeTokenFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get('token');
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  params.delete('token');
  // Keep the token out of the address bar, history and screenshots.
  const rest = params.toString();
  history.replaceState(null, '', `${location.pathname}${location.search}${rest ? `#${rest}` : ''}`);
}

function askForToken() {
  const form = $('token-form');
  form.hidden = false;
  $('token-input').focus();
}

$('token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const value = $('token-input').value.trim();
  if (!value) return;
  sessionStorage.setItem(TOKEN_KEY, value);
  $('token-input').value = '';
  $('token-form').hidden = true;
  client.close();
  client.start();
});

// --- store updates ----------------------------------------------------------------------------------
function vmEntry(name) {
  let vm = store.vms.get(name);
  if (!vm) {
    vm = { name, status: 'connecting', reason: undefined, jobs: new Map(), activeCount: 0 };
    store.vms.set(name, vm);
    vmsChanged = true;
  }
  return vm;
}

function putJob(vm, job) {
  const key = jobKey(job);
  const seenKey = `${job.vm}/${key}`;
  if (!store.firstSeen.has(seenKey)) store.firstSeen.set(seenKey, Date.now());
  job.firstSeen = store.firstSeen.get(seenKey);
  const previous = vm.jobs.get(key);
  // Progress arrives more often than transitions: keep the fresher numbers.
  if (previous?.progressAt && (!job.progress || previous.progressAt > Date.parse(job.updatedAt))) {
    job.progress = previous.progress;
    job.progressAt = previous.progressAt;
  }
  vm.jobs.set(key, job);
}

function forget(vm, job) {
  const key = `${vm.name}/${jobKey(job)}`;
  vm.jobs.delete(jobKey(job));
  store.firstSeen.delete(key);
  store.results.delete(key);
}

/** Every map here is bounded: finished jobs beyond the cap go, with what was kept about them. */
function trimFinished(vm) {
  const finished = [...vm.jobs.values()].filter((job) => !isActive(job)).sort((a, b) => b.firstSeen - a.firstSeen);
  for (const job of finished.slice(MAX_FINISHED_PER_VM)) forget(vm, job);
  vm.activeCount = [...vm.jobs.values()].filter(isActive).length;
}

/** A VM was added since the name order and the filter's options were last built (a fleet's snapshot adds thousands at once). */
let vmsChanged = false;
function syncVmOrder() {
  if (!vmsChanged) return;
  vmsChanged = false;
  const names = [...store.vms.keys()].sort(naturalCompare);
  store.vmOrder = names;
  const select = $('filter-vm');
  const current = select.value;
  select.replaceChildren(select.options[0], ...names.map((name) => new Option(name, name)));
  select.value = names.includes(current) ? current : '';
}

// --- rendering, coalesced to one frame ---------------------------------------------------------------
let renderQueued = false;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    syncVmOrder();
    const shown = jobsView.render(store);
    let active = 0;
    let total = 0;
    for (const vm of store.vms.values()) {
      for (const job of vm.jobs.values()) {
        total++;
        if (isActive(job)) active++;
      }
    }
    $('summary').textContent =
      `${store.vms.size} VM${store.vms.size === 1 ? '' : 's'} · ${active} active job${active === 1 ? '' : 's'} · ${shown} of ${total} shown`;
  });
}

setInterval(() => jobsView.tick(store), 1000);

// --- the gateway connection --------------------------------------------------------------------------
function setStatus(kind, text) {
  $('conn').className = `conn conn-${kind}`;
  $('conn-text').textContent = text;
}

function describeTransition(message) {
  const job = message.job;
  const notes = [];
  if (message.transition.from === message.transition.to) {
    if (job.ready) notes.push('ready');
    if (job.pauseReason) notes.push(`pause: ${job.pauseReason}`);
  }
  if (job.outcome) notes.push(job.outcome + (job.pivoted === true ? ', pivoted' : ''));
  if (job.error && job.outcome === 'failed') notes.push(job.error);
  return notes.join(' · ');
}

/** A timeline line for an `event` or `vm` message, keyed by its stream position. */
function timelineEntry(message) {
  const key = `${message.vm}@${message.epoch}:${message.offset}`;
  if (message.type === 'vm') {
    return {
      key,
      at: message.ts ?? Date.now(),
      what: `${message.vm} monitor`,
      to: message.status,
      toClass: message.status === 'connected' ? 'st-ready' : 'st-aborting',
      note: message.reason ?? '',
    };
  }
  const to = message.transition.to;
  return { key, at: message.ts, what: `${message.vm}/${message.job.id}`, from: message.transition.from, to, toClass: `st-${to}`, note: describeTransition(message) };
}

/**
 * Fill "Recent transitions" from the gateway's history, once per page load: from where each stream
 * stood at the client's first sync (a fleet's `welcome` lists no VMs), the busiest VMs first.
 */
async function showRecentTransitions(positions) {
  const latest = new Map();
  for (const job of client.jobs()) latest.set(job.vm, Math.max(latest.get(job.vm) ?? 0, Date.parse(job.stateSince) || 0));
  const replayed = await loadRecentTransitions({ positions, latest, urls: location.origin, token: readToken });
  replayed.sort((a, b) => Date.parse(b.ts) - Date.parse(a.ts));
  for (const message of replayed) timeline.add(timelineEntry(message), { older: true });
}

/** What the dashboard does with each thing the client reports (wired to the client below). */
const on = {
    welcome(message) {
      store.canControl = !message.scopes || message.scopes.includes('control');
      document.body.classList.toggle('read-only', !store.canControl);
      $('role').textContent = store.canControl ? 'control access' : 'read-only access';
      for (const stream of message.vms) {
        const vm = vmEntry(stream.vm);
        vm.status = stream.status;
      }
      scheduleRender();
    },
    snapshot(name, jobs, status) {
      const vm = vmEntry(name);
      if (status) vm.status = status;
      const fresh = new Map();
      for (const job of jobs.values()) {
        const key = jobKey(job);
        const seenKey = `${name}/${key}`;
        if (!store.firstSeen.has(seenKey)) store.firstSeen.set(seenKey, Date.parse(job.stateSince) || Date.now());
        job.firstSeen = store.firstSeen.get(seenKey);
        fresh.set(key, job);
      }
      // Replace in one step: the table never shows a half-loaded VM.
      for (const job of [...vm.jobs.values()]) if (!fresh.has(jobKey(job))) forget(vm, job);
      vm.jobs = fresh;
      trimFinished(vm);
      scheduleRender();
    },
    transition(message) {
      const vm = vmEntry(message.vm);
      putJob(vm, message.job);
      trimFinished(vm);
      timeline.add(timelineEntry(message));
      scheduleRender();
    },
    vm(message) {
      const vm = vmEntry(message.vm);
      vm.status = message.status;
      vm.reason = message.status === 'connected' ? undefined : message.reason;
      timeline.add(timelineEntry(message));
      scheduleRender();
    },
    progress(message) {
      const vm = store.vms.get(message.vm);
      if (!vm) return;
      for (const job of vm.jobs.values()) {
        if (job.id !== message.job) continue;
        if (message.incarnation !== undefined && job.incarnation !== message.incarnation) continue;
        job.progress = message.progress;
        job.progressAt = Date.now();
        if (job.type === 'unknown') scheduleDetailsRefresh(message.vm);
      }
      scheduleRender();
    },
};

/** Progress at most this often per job. */
const PROGRESS_INTERVAL_MS = 500;

const readToken = () => sessionStorage.getItem(TOKEN_KEY) ?? undefined;
const client = new GatewayClient({
  urls: location.origin,
  token: readToken,
  progressIntervalMs: PROGRESS_INTERVAL_MS,
  maxFinishedJobsPerVm: MAX_FINISHED_PER_VM,
});
// The store keeps its own copies (it adds display fields); the client's map stays the client's.
client.on('welcome', on.welcome);
// Where each VM stream stood at the first snapshot (each `synced`; the client's own `since` holds no
// more than a resume may send): the history reads back from there.
const firstPositions = {};
const offPositions = client.on('message', (message) => {
  if (message.type === 'synced') firstPositions[message.vm] = { epoch: message.epoch, offset: message.offset };
});
const offSynced = client.on('synced', () => {
  offSynced();
  offPositions();
  void showRecentTransitions(firstPositions);
});
client.on('snapshot', ({ vm, jobs, status }) => on.snapshot(vm, jobs.map((job) => ({ ...job })), status));
client.on('transition', (message) => on.transition({ ...message, job: { ...message.job } }));
client.on('vm', on.vm);
client.on('progress', ({ message }) => on.progress(message));
client.on('message', (message) => {
  if (message.type === 'error') showResult(false, `${message.code}: ${message.message}`);
});
client.on('status', (status) => {
  switch (status.state) {
    case 'connecting':
      setStatus('connecting', status.attempt > 1 ? 'Reconnecting…' : 'Connecting…');
      return;
    case 'open':
      setStatus('live', 'Live');
      return;
    case 'reconnecting': {
      const code = status.close?.code;
      const why = code === 1001 ? 'gateway restarting' : code === 4508 ? 'too slow, resuming' : status.wasOpen ? 'connection lost' : 'cannot reach the gateway';
      setStatus('reconnecting', `Reconnecting in ${Math.max(1, Math.round(status.retryInMs / 1000))} s (${why})`);
      // A browser reports a 401 at the upgrade as a plain network error: ask over HTTP whether a token is needed.
      if (!status.wasOpen) void probeAuth();
      return;
    }
    case 'closed':
      if (status.error) setStatus('offline', `Disconnected: ${refusalText(status.error)}`);
      if (status.error?.closeCode === 4401) askForToken();
      return;
  }
});

function refusalText(error) {
  if (error.closeCode === 4401) return 'the token was refused';
  if (error.closeCode === 4403) return 'this token may not see these VMs';
  return error.message;
}

async function probeAuth() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  try {
    const response = await fetch('/v1/jobs', { headers: token ? { Authorization: `Bearer ${token}` } : {} });
    if (response.status !== 401) return;
  } catch {
    return; // the gateway is down: keep retrying
  }
  client.close();
  setStatus('offline', 'A token is required');
  askForToken();
}

/** A job row's key: a job id reused after dismiss is a new incarnation, and a new row. */
function jobKey(job) {
  return `${job.id}#${job.incarnation}`;
}

// --- details that change without a transition (the type QEMU reports in its first poll, speed) -------
const DETAIL_FIELDS = ['type', 'speed', 'autoFinalize', 'autoDismiss'];
let detailsTimer;
/** The VMs whose jobs lack details (bounded by the VMs in the store). */
const detailsWanted = new Set();
function scheduleDetailsRefresh(vm) {
  detailsWanted.add(vm);
  if (detailsTimer) return;
  detailsTimer = setTimeout(async () => {
    try {
      const wanted = new Set(detailsWanted);
      detailsWanted.clear();
      const vms = await readJobs({ token: sessionStorage.getItem(TOKEN_KEY) ?? undefined, wanted });
      for (const snapshot of vms) {
        const vm = store.vms.get(snapshot.vm);
        for (const fresh of snapshot.jobs ?? []) {
          const job = vm?.jobs.get(jobKey(fresh));
          // States come only from the stream (ordered by offset); this fills in what transitions do not carry.
          if (job) for (const field of DETAIL_FIELDS) if (fresh[field] !== undefined) job[field] = fresh[field];
        }
      }
      scheduleRender();
    } catch {
      // The next progress message tries again.
    } finally {
      detailsTimer = undefined;
    }
  }, 800);
}

function showResult(ok, text) {
  const node = $('last-result');
  node.className = `last-result ${ok ? 'ok' : 'bad'}`;
  node.textContent = text;
}

// --- actions (control-scope tokens only) ---------------------------------------------------------------
/** How long a first click on Cancel waits for the confirming second one. */
const CONFIRM_MS = 5000;

function disarm(button) {
  delete button.dataset.armed;
  button.textContent = 'Cancel';
  button.classList.remove('danger');
}

$('jobs').addEventListener('click', async (event) => {
  const button = event.target.closest('button[data-action]');
  if (!button || !store.canControl) return;
  const row = button.closest('tr');
  const { vm, job, incarnation } = row.dataset;
  const action = button.dataset.action;
  // Cancelling throws away the copy so far: ask once more, in place, for a few seconds.
  if (action === 'cancel' && button.dataset.armed !== 'yes') {
    button.dataset.armed = 'yes';
    button.textContent = 'Confirm cancel';
    button.classList.add('danger');
    setTimeout(() => disarm(button), CONFIRM_MS);
    return;
  }
  if (action === 'cancel') disarm(button);
  const key = `${vm}/${job}#${incarnation}`;
  const fields = { vm, job, action };
  if (action === 'complete') fields.when = 'ready';
  if (action === 'cancel') fields.force = true;
  store.results.set(key, {
    busy: true,
    text: action === 'complete' ? 'complete: waiting until ready…' : `${action}: sent…`,
  });
  scheduleRender();
  // A refusal is a result; only a lost connection or a closed client throws.
  const result = await client.command(fields).catch((error) => ({ ok: false, error: { code: error.code, message: error.message } }));
  const text = result.ok
    ? `${action}: accepted`
    : `${action} failed: ${result.error.code}${result.error.message ? ` (${result.error.message})` : ''}`;
  store.results.set(key, { ok: result.ok, text });
  showResult(result.ok, `${vm}/${job}: ${text}`);
  scheduleRender();
});

// --- filters ------------------------------------------------------------------------------------------
for (const [id, field] of [['filter-vm', 'vm'], ['filter-state', 'state'], ['filter-type', 'type']]) {
  $(id).addEventListener('change', (event) => {
    store.filters[field] = event.target.value;
    scheduleRender();
  });
}

async function showSimulationBadge() {
  try {
    const response = await fetch('/v1/info');
    if (!response.ok) return;
    const info = await response.json();
    $('sim-badge').hidden = info.simulated !== true;
  } catch {
    // An older gateway without /v1/info: nothing to label.
  }
}

takeTokenFromFragment();
void showSimulationBadge();
client.start();

// For tests and curious operators: the live store, read-only by convention.
window.blockjobDashboard = { store, matches };
