/**
 * Request/reply over a forked child's IPC channel: the bench host drives its load generators
 * (subscribers, the QMP simulator) and the orchestrator drives one host per scenario this way.
 * Every child dies with its parent (the IPC channel closes), so Ctrl-C never leaves one behind.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

type Handler = (args: any) => unknown;

interface Request {
  rpc: 'call';
  id: number;
  method: string;
  args: unknown;
}
interface Reply {
  rpc: 'reply';
  id: number;
  ok: boolean;
  value?: unknown;
  error?: string;
}

/** Child side: answer calls with `handlers`; exit when the parent goes away. */
export function serveRpc(handlers: Record<string, Handler>): void {
  if (!process.send) throw new Error('serveRpc: this module must run as a forked child');
  process.on('disconnect', () => process.exit(0));
  process.on('message', (message: Request) => {
    if (message?.rpc !== 'call') return;
    const reply = (body: Omit<Reply, 'rpc' | 'id'>): void => {
      process.send?.({ rpc: 'reply', id: message.id, ...body } satisfies Reply);
    };
    const handler = handlers[message.method];
    if (!handler) return reply({ ok: false, error: `unknown method ${message.method}` });
    Promise.resolve()
      .then(() => handler(message.args))
      .then(
        (value) => reply({ ok: true, value }),
        (error: unknown) => reply({ ok: false, error: error instanceof Error ? (error.stack ?? error.message) : String(error) }),
      );
  });
}

/** Parent side: a forked module answering calls. */
export class RpcChild {
  private readonly child: ChildProcess;
  private readonly pending = new Map<number, { resolve: (value: any) => void; reject: (error: Error) => void }>();
  private nextId = 1;
  private exited = false;
  readonly exit: Promise<void>;

  constructor(moduleUrl: URL, args: string[] = [], execArgv: string[] = []) {
    this.child = fork(fileURLToPath(moduleUrl), args, { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.child.on('message', (message: Reply) => {
      if (message?.rpc !== 'reply') return;
      const waiter = this.pending.get(message.id);
      if (!waiter) return;
      this.pending.delete(message.id);
      if (message.ok) waiter.resolve(message.value);
      else waiter.reject(new Error(`${this.label}: ${message.error}`));
    });
    this.exit = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exited = true;
        for (const waiter of this.pending.values()) waiter.reject(new Error(`${this.label} exited (${code ?? signal}) during a call`));
        this.pending.clear();
        resolve();
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  private get label(): string {
    return `bench child ${this.child.pid}`;
  }

  call<T = unknown>(method: string, args: unknown = {}, timeoutMs = 300_000): Promise<T> {
    if (this.exited) return Promise.reject(new Error(`${this.label} has exited`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.label}: ${method} got no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (value) => (clearTimeout(timer), resolve(value as T)),
        reject: (error) => (clearTimeout(timer), reject(error)),
      });
      this.child.send({ rpc: 'call', id, method, args } satisfies Request);
    });
  }

  /** Ask it to clean up (its `close` handler), then make sure it is gone. */
  async close(): Promise<void> {
    if (this.exited) return;
    await this.call('close', {}, 30_000).catch(() => undefined);
    this.child.disconnect?.();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await this.exit;
    clearTimeout(timer);
  }

  /** Forward a stop request (the child cleans up on SIGTERM). */
  terminate(): void {
    if (!this.exited) this.child.kill('SIGTERM');
  }
}
