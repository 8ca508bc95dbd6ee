/** Cleanups of one scenario, run newest first, once, also when the run is interrupted (Ctrl-C). */
export class Resources {
  private readonly cleanups: Array<{ label: string; run: () => unknown }> = [];

  defer(label: string, run: () => unknown): void {
    this.cleanups.push({ label, run });
  }

  async closeAll(): Promise<void> {
    for (const cleanup of this.cleanups.splice(0).reverse()) {
      try {
        await cleanup.run();
      } catch (error) {
        process.stderr.write(`bench: cleanup of ${cleanup.label} failed: ${(error as Error).message}\n`);
      }
    }
  }
}

/** Polls `check` until it is truthy; throws `what` after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => T | Promise<T>, timeoutMs = 60_000, everyMs = 50): Promise<NonNullable<T>> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value as NonNullable<T>;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
