/** Job control (issue 5): the command handler; it acts through the source's control port (src/jobs/control-port.ts). */
export {
  makeJobController,
  type CommandContext,
  type CommandHandler,
  type JobController,
  type JobControllerDeps,
  type JobControllerOptions,
} from './controller.js';
export type { CommandResult } from './results.js';
