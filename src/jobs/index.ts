/** The job state engine: QMP events plus adaptive polling, normalized into one truthful job state machine. */
export * from './types.js';
export * from './control-port.js';
export { combineSources, type CombineOptions, type CombinedSources } from './combine.js';
export { JobRegistry, type JobRegistryOptions, type OwnedMonitor } from './registry.js';
export { MonitorJobs, isQmpMonitor, type JobFeed, type MonitorJobsOptions } from './monitor-jobs.js';
export { QmpControl, planQmpCommand, libvirtOwnedJob, type QmpControlOptions, type QmpControlTarget, type QmpPlan } from './qmp-control.js';
export * from './qemu-rules.js';
export { capabilitiesFromSchema, capabilitiesFromVersion, detectCapabilities, type DetectedCapabilities } from './capabilities.js';
export { reduceJob, transitionKey, sameKey, type EngineInput, type JobRecord, type ReduceContext, type ReduceResult, type JobChange, type HoldKind } from './normalize.js';
export { holdTransientChanges, DEFAULT_INTERNAL_PAUSE_MS, type HoldOptions, type HoldableChange } from './pause-debounce.js';
export { pollJobs, pollMonitor, type PollCadence, type PollOutcome, type PollResult, type PollerDeps } from './poller.js';
export { advanceRate, type RateOptions, type RateEstimate } from './progress.js';
export { parseJobEvent, parseBlockJobRows, parseJobRows, mergeJobRows, type JobEvent, type JobRow } from './qmp-payloads.js';
export * from './libvirt/index.js';
