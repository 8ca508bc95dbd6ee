/** The job state engine: QMP events plus adaptive polling, normalized into one truthful job state machine. */
export * from './types.js';
export { JobRegistry, type JobRegistryOptions, type OwnedMonitor } from './registry.js';
export { MonitorJobs, type MonitorJobsOptions } from './monitor-jobs.js';
export { capabilitiesFromSchema, capabilitiesFromVersion, detectCapabilities, type DetectedCapabilities } from './capabilities.js';
export { reduceJob, transitionKey, sameKey, isTerminalState, type EngineInput, type JobRecord, type ReduceContext, type ReduceResult, type JobChange, type HoldKind } from './normalize.js';
export { holdTransientChanges, DEFAULT_INTERNAL_PAUSE_MS, type HoldOptions, type HoldableChange } from './pause-debounce.js';
export { pollJobs, pollMonitor, type PollCadence, type PollOutcome, type PollResult, type PollerDeps } from './poller.js';
export { advanceRate, throttlePerKey, type RateOptions, type RateEstimate } from './progress.js';
export { parseJobEvent, parseBlockJobRows, parseJobRows, mergeJobRows, type JobEvent, type JobRow, type QemuJobStatus } from './qmp-payloads.js';
