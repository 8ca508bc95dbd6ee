/**
 * The one way tests wait for a condition reached through I/O: poll it, with a generous deadline
 * (the machine is shared and loaded), never a fixed sleep. `what` names the condition in the
 * timeout error; a function is called only then, so it may describe the state at the failure.
 */
export async function waitFor(condition: () => boolean | Promise<boolean>, what: string | (() => string), timeoutMs = 20_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await condition())) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'string' ? what : what()}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
