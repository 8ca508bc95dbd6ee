/** The soak's figures as text, and whether the run passed. */
import type { SoakReport } from './model.js';

/** Least-squares slope of y over x. */
export function slope(points: readonly { x: number; y: number }[]): number | undefined {
  if (points.length < 3) return undefined;
  const n = points.length;
  const mx = points.reduce((a, p) => a + p.x, 0) / n;
  const my = points.reduce((a, p) => a + p.y, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.x - mx) * (p.y - my);
    den += (p.x - mx) ** 2;
  }
  return den === 0 ? undefined : num / den;
}

/** RSS slope (MiB per hour) over the longest-lived gateway process, skipping its first 2 minutes of warm-up. */
export function rssSlope(report: SoakReport): { miBPerHour: number | undefined; overMinutes: number; life: number } {
  const lives = new Map<number, typeof report.samples>();
  for (const s of report.samples) lives.set(s.life, [...(lives.get(s.life) ?? []), s]);
  let best: typeof report.samples = [];
  let life = 0;
  for (const [l, samples] of lives) {
    if (samples.length > best.length) {
      best = samples;
      life = l;
    }
  }
  const warm = best.length > 0 ? best[0]!.at + 120_000 : 0;
  const points = best.filter((s) => s.at >= warm).map((s) => ({ x: s.at / 3_600_000, y: s.rssMiB }));
  const span = points.length > 1 ? (points[points.length - 1]!.x - points[0]!.x) * 60 : 0;
  return { miBPerHour: slope(points), overMinutes: span, life };
}

export function summarize(report: SoakReport): { text: string; ok: boolean } {
  const { main, resumer } = report.subscribers;
  const maxRss = Math.max(0, ...report.samples.map((s) => s.rssMiB));
  const maxFds = Math.max(0, ...report.samples.map((s) => s.fds));
  const lags = report.samples.flatMap((s) => (s.lagMaxMs === undefined ? [] : [s.lagMaxMs]));
  const rss = rssSlope(report);
  const ok = report.mismatches.length === 0 && main.gaps + main.duplicates + resumer.gaps + resumer.duplicates + main.lostResumes + resumer.lostResumes === 0;
  const lines = [
    `soak ${ok ? 'PASSED' : 'FAILED'}: seed ${report.seed}, ${report.jobs} jobs in ${(report.durationMs / 60_000).toFixed(1)} min`,
    `  kinds: ${JSON.stringify(report.byKind)}`,
    `  endings: ${JSON.stringify(report.byEnding)}`,
    `  transitions compared with QEMU's own: ${report.transitionsCompared}; outcomes checked: ${report.outcomesChecked}; mismatches: ${report.mismatches.length}`,
    `  complete on a pushed ready: ${report.completeOnReady.sent} sent, ${report.completeOnReady.failed} failed; complete right after start: ${report.completeEarly.ok}/${report.completeEarly.sent} ok`,
    `  commands through the gateway: ${report.commands}; jobs cut by a gateway kill (judged as subsequences): ${report.interrupted}; jobs killed with their daemon: ${report.qemuKilledJobs}; rescued: ${report.rescued}; driver steps overtaken: ${report.stuckWaits}; pause attribution differs (user pause next to a drain blip, all else equal): ${report.pauseAttributionDiffers}`,
    `  chaos: ${report.gatewayKills} gateway SIGKILL+restart, ${report.qemuKills} qemu-storage-daemon SIGKILL+restart; final SIGTERM drained in ${report.sigtermDrainMs} ms`,
    `  main subscriber: ${main.numbered} numbered messages, ${main.gaps} gaps, ${main.duplicates} duplicates, ${main.resumes} resumes (${main.lostResumes} lost)`,
    `  reconnecting subscriber: ${resumer.numbered} numbered messages, ${resumer.gaps} gaps, ${resumer.duplicates} duplicates, ${resumer.resumes} resumes (${resumer.lostResumes} lost)`,
    `  gateway: max RSS ${maxRss.toFixed(1)} MiB, RSS slope ${rss.miBPerHour === undefined ? 'n/a' : `${rss.miBPerHour.toFixed(2)} MiB/h`} over ${rss.overMinutes.toFixed(1)} min of process life ${rss.life}, max fds ${maxFds}, max event-loop lag ${lags.length ? Math.max(...lags).toFixed(1) : 'n/a'} ms`,
    ...report.mismatches.slice(0, 30).map((m) => `  MISMATCH ${m}`),
    ...[...main.problems, ...resumer.problems].slice(0, 20).map((p) => `  STREAM ${p}`),
  ];
  return { text: lines.join('\n'), ok };
}
