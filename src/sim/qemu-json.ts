/**
 * JSON as QEMU writes it on a QMP monitor: `{"return": {}}` with a space after every `:` and `,`,
 * each message terminated by CRLF (monitor_puts turns `\n` into `\r\n`). Clients that split on
 * lines or choke on spacing meet the same bytes here as on a real monitor.
 */
import { performance } from 'node:perf_hooks';

export function qemuJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(qemuJson).join(', ')}]`;
  const parts: string[] = [];
  for (const [key, member] of Object.entries(value)) {
    if (member !== undefined) parts.push(`${JSON.stringify(key)}: ${qemuJson(member)}`);
  }
  return `{${parts.join(', ')}}`;
}

export function qemuFrame(message: unknown): string {
  return `${qemuJson(message)}\r\n`;
}

/** QEMU's event timestamp: wall clock split into seconds and microseconds (`g_get_real_time()`). */
export function qemuTimestamp(
  nowMs: number = performance.timeOrigin + performance.now(),
): { seconds: number; microseconds: number } {
  const micros = Math.round(nowMs * 1000);
  return { seconds: Math.floor(micros / 1_000_000), microseconds: micros % 1_000_000 };
}
