/** The identity of one transition, derived the same way from the engine's change (host) and the frame (subscriber). */
export function transitionKey(vm: string, job: { id: string; incarnation: number; state: string; ready: unknown; outcome?: unknown }): string {
  return `${vm}/${job.id}/${job.incarnation}/${job.state}/${String(job.ready)}/${String(job.outcome ?? '')}`;
}
