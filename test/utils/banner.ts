// The banner a suite prints when a real component it needs is missing, free of vitest imports so
// global-setup can print it too: SKIPPED outside CI, FAIL in CI (test/utils/gate.ts).
export const inCi = process.env.CI === 'true';

/** `what` tests FAIL/SKIPPED: `problem`, then how to fix it, framed. */
export function missingBanner(what: string, problem: string, advice: readonly string[]): string {
  const line = '='.repeat(78);
  return [line, `${what} tests ${inCi ? 'FAIL (CI=true)' : 'SKIPPED'}: ${problem}`, ...advice, line].join('\n');
}
