import { describe, expect, it } from 'vitest';
import { CommandCache } from '../../../../src/gateway/control/command-cache.js';
import { deferred } from '../../../utils/fake-source.js';

const keepAll = (): boolean => true;

describe('CommandCache', () => {
  it('a repeated key joins the pending answer and later gets the settled one; the command runs once', async () => {
    const cache = new CommandCache<string>({ maxEntries: 10, ttlMs: 1_000 });
    const reply = deferred<string>();
    let runs = 0;
    const answer = cache.add('c/1', 'pause', () => (runs++, reply.promise), keepAll)!;
    const joined = cache.lookup('c/1', 'pause');
    expect(joined.kind).toBe('hit');
    reply.resolve('done');
    expect(await answer).toBe('done');
    expect(await (joined as { answer: Promise<string> }).answer).toBe('done');
    expect(cache.lookup('c/1', 'pause')).toMatchObject({ kind: 'hit' });
    expect(runs).toBe(1);
    expect(cache.pending).toBe(0);
  });

  it('the same key for a different command is a conflict', () => {
    const cache = new CommandCache<string>({ maxEntries: 10, ttlMs: 1_000 });
    cache.add('c/1', 'pause', () => Promise.resolve('x'), keepAll);
    expect(cache.lookup('c/1', 'resume')).toEqual({ kind: 'conflict', fingerprint: 'pause' });
  });

  it('settled answers expire after the TTL', async () => {
    let now = 0;
    const cache = new CommandCache<string>({ maxEntries: 10, ttlMs: 100 }, () => now);
    await cache.add('c/1', 'pause', () => Promise.resolve('x'), keepAll);
    now = 100;
    expect(cache.lookup('c/1', 'pause').kind).toBe('hit');
    now = 101;
    expect(cache.lookup('c/1', 'pause').kind).toBe('miss');
  });

  it('answers `keep` rejects are not remembered (a retry runs again)', async () => {
    const cache = new CommandCache<string>({ maxEntries: 10, ttlMs: 1_000 });
    await cache.add('c/1', 'complete', () => Promise.resolve('dropped'), (value) => value !== 'dropped');
    expect(cache.lookup('c/1', 'complete').kind).toBe('miss');
  });

  it('bounded: the oldest settled answer makes room; when all are pending, nothing new starts', async () => {
    const cache = new CommandCache<string>({ maxEntries: 2, ttlMs: 60_000 });
    await cache.add('a', 'x', () => Promise.resolve('a'), keepAll);
    const pending = deferred<string>();
    cache.add('b', 'x', () => pending.promise, keepAll);
    expect(cache.add('c', 'x', () => Promise.resolve('c'), keepAll)).toBeDefined();
    expect(cache.lookup('a', 'x').kind).toBe('miss');
    expect(cache.size).toBe(2);
    const blocked = deferred<string>();
    cache.add('d', 'x', () => blocked.promise, keepAll); // evicts settled 'c'
    let started = false;
    expect(cache.add('e', 'x', () => ((started = true), Promise.resolve('e')), keepAll)).toBeUndefined();
    expect(started).toBe(false);
    pending.resolve('b');
    await pending.promise;
    await Promise.resolve();
    expect(cache.add('e', 'x', () => Promise.resolve('e'), keepAll)).toBeDefined();
  });
});
