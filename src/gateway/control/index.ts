/** Job control (issue 5): the command handler and the verb table it judges by. */
export {
  makeJobController,
  type CommandContext,
  type CommandHandler,
  type JobController,
  type JobControllerDeps,
  type JobControllerOptions,
} from './controller.js';
export type { CommandResult } from './results.js';
export { acceptsComplete, checkVerb, planQmpCommand, isStandbyCompleteRefusal, type QmpPlan, type VerbCheck } from './verbs.js';
