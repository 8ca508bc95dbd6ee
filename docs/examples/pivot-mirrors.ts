import { GatewayClient, type JobState } from 'blockjob-gateway/client';
import { nodeWebSocket } from 'blockjob-gateway/client/node';

/** Pivots every mirror of `vm` the moment it is ready and logs each outcome, until `signal` aborts. */
export async function pivotMirrors(url: string, vm: string, signal: AbortSignal, log: (line: string) => void = console.log): Promise<void> {
  const client = new GatewayClient({ urls: url, socket: nodeWebSocket, filter: { vms: [vm], types: ['mirror'] }, signal });
  const asked = new Set<string>(); // job id + incarnation: one complete per job, however often it is seen ready

  const pivot = async (job: JobState) => {
    const key = `${job.id}#${job.incarnation}`;
    if (job.ready !== true || asked.has(key)) return;
    asked.add(key);
    try {
      const result = await client.complete(vm, job.id, { await: 'concluded' });
      if (result.ok) log(`${vm}/${job.id}: outcome ${result.job.outcome}, ${result.job.pivoted ? 'pivoted' : 'not pivoted'}`);
      else log(`${vm}/${job.id}: not pivoted: ${result.error.code}: ${result.error.message}`);
    } catch (error) {
      // CLIENT_ERR_OUTCOME_UNKNOWN (connection lost mid-command), CLIENT_ERR_CLOSED (shutting down), ...
      log(`${vm}/${job.id}: ${(error as Error).message}`);
    }
  };

  client.on('snapshot', ({ jobs }) => jobs.forEach(pivot)); // mirrors already ready when we (re)connect
  client.on('transition', ({ job }) => void pivot(job)); // and every one that becomes ready later
  client.on('status', (status) => status.state === 'reconnecting' && log(`gateway: ${status.error?.message ?? `connection lost (${status.close?.code})`}; retrying`));
  client.start();
  await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
}
