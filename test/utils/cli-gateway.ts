/** `blockjob-gateway serve` as a separate process in front of a lab qemu-storage-daemon. */
import { runCli, type CliRun } from './built-cli.js';
import type { Qsd } from './qsd.js';

export interface ServedGateway {
  run: CliRun;
  /** The WebSocket URL serve printed (`ws://127.0.0.1:PORT/v1/ws`). */
  ws: string;
  port: number;
}

/** Starts `serve --qmp vm1=<the daemon's gw monitor>` and waits for its banner. */
export async function serveCli(qsd: Qsd, extra: string[] = []): Promise<ServedGateway> {
  const run = runCli(['serve', '--qmp', `vm1=${qsd.address('gw')}`, '--log-format', 'json', '--log-level', 'warn', ...extra]);
  const line = await run.line(/serving .* \(WebSocket (ws:\/\/[^)]+)\)/);
  const ws = /\(WebSocket (ws:\/\/[^)]+)\)/.exec(line)![1]!;
  return { run, ws, port: Number(new URL(ws).port) };
}
