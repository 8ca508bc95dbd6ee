/**
 * Plain counters the hot path bumps; metrics.ts reads them at scrape time, so the core never pays
 * for label lookups per message and stays free of prom-client.
 */
export class GatewayStats {
  connections = 0;
  subscriptions = 0;
  conflatedTotal = 0;
  readonly sentByType = new Map<string, { messages: number; bytes: number }>();
  readonly disconnects = new Map<number, number>();
  readonly resumes = { recovered: 0, snapshot: 0 };
  /** Set by the metrics layer: observe one delivery lag (QMP receive to fan-out done), in seconds. */
  onDeliveryLag: ((seconds: number) => void) | undefined;

  sent(type: string, bytes: number): void {
    let counter = this.sentByType.get(type);
    if (!counter) this.sentByType.set(type, (counter = { messages: 0, bytes: 0 }));
    counter.messages++;
    counter.bytes += bytes;
  }

  conflated(): void {
    this.conflatedTotal++;
  }

  disconnect(code: number): void {
    this.disconnects.set(code, (this.disconnects.get(code) ?? 0) + 1);
  }

  deliveryLag(seconds: number): void {
    this.onDeliveryLag?.(seconds);
  }
}
