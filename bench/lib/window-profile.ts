/**
 * A CPU profile of one measured window (not the whole process, whose life is mostly setup), written
 * to bench/results/profiles/<name>.cpuprofile. A load generator profiles itself when the bench host
 * runs with `--cpu-prof` and says so in the call.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';

export async function startWindowProfile(name: string): Promise<() => Promise<void>> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  return async () => {
    const { profile } = await session.post('Profiler.stop');
    const dir = new URL('../../bench/results/profiles/', import.meta.url);
    mkdirSync(dir, { recursive: true });
    writeFileSync(new URL(`${name}.cpuprofile`, dir), JSON.stringify(profile));
    session.disconnect();
  };
}

/** Whether this process runs under `--cpu-prof` (the bench host with `npm run bench -- --cpu-prof`). */
export const profiling = (): boolean => process.execArgv.some((a) => a.startsWith('--cpu-prof'));
