/**
 * UnackedBook on a real file: what a process killed at any point leaves is what the next one reads
 * (copying the file stands for the kill: nothing is flushed or closed), one slot per VM, and the
 * record of earlier versions is still understood.
 */
import { copyFileSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { UnackedBook } from '../../../src/fleet/unacked.js';

describe('UnackedBook', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bjf-book-'));
  const open: UnackedBook[] = [];
  afterEach(() => {
    for (const book of open.splice(0)) book.close();
  });
  let n = 0;
  const book = (file = join(dir, `b${++n}.json`)): UnackedBook => {
    const b = new UnackedBook(file);
    open.push(b);
    return b;
  };
  /** The next process's view, as if this one were killed now. */
  const afterKill = (b: UnackedBook): UnackedBook => {
    const copy = join(dir, `killed${++n}.json`);
    copyFileSync(b.file, copy);
    return book(copy);
  };

  it('a killed process leaves exactly the VMs served beyond Redis, each with its last offset', () => {
    const b = book();
    for (let i = 0; i < 1000; i++) b.ahead(`vm${i}`, 'e1', 10 + i);
    for (let i = 0; i < 1000; i += 2) b.caughtUp(`vm${i}`);
    b.ahead('vm1', 'e1', 5000);
    const next = afterKill(b);
    expect(next.wasUnacked('vm0', 'e1', 0)).toBe(false);
    expect(next.wasUnacked('vm1', 'e1', 4999)).toBe(true);
    expect(next.wasUnacked('vm1', 'e1', 5000)).toBe(false); // Redis got it after all
    expect(next.wasUnacked('vm1', 'e2', 0)).toBe(false); // another epoch: not those offsets
    expect(next.wasUnacked('vm999', 'e1', 1008)).toBe(true);
    // One slot per VM: the file does not grow with events, and a VM's record is one slot.
    const size = statSync(b.file).size;
    for (let i = 0; i < 100; i++) b.ahead('vm3', 'e1', 2000 + i);
    expect(statSync(b.file).size).toBe(size);
    expect(size).toBe(256 * 1001);
  });

  it('what the previous process left stays recorded until each VM is opened again; reopened may carry what was served since', () => {
    const first = book();
    first.ahead('a', 'e1', 7);
    first.ahead('b', 'e1', 9);
    const second = afterKill(first);
    expect(second.wasUnacked('a', 'e1', 6)).toBe(true);
    second.reopened('a');
    second.reopened('b', { epoch: 'e2', offset: 3 });
    const third = afterKill(second);
    expect(third.wasUnacked('a', 'e1', 0)).toBe(false);
    expect(third.wasUnacked('b', 'e2', 2)).toBe(true);
    expect(third.wasUnacked('b', 'e1', 0)).toBe(false);
  });

  it('a clean close is trusted whatever the boot; an unclean one of another boot counts every VM; garbage counts every VM', () => {
    const b = book();
    b.ahead('a', 'e1', 7);
    const file = b.file;
    open.splice(open.indexOf(b), 1);
    b.close();
    const lines = readFileSync(file, 'utf8').split('\n');
    expect(JSON.parse(lines[0]!)).toMatchObject({ v: 2, closed: true });
    const otherBoot = lines[0]!.replace(/"boot":"[^"]*"/, '"boot":"another-boot"');
    const closedElsewhere = join(dir, 'closed-elsewhere.json');
    writeFileSync(closedElsewhere, [otherBoot, ...lines.slice(1)].join('\n'));
    const trusted = book(closedElsewhere);
    expect([trusted.wasUnacked('a', 'e1', 6), trusted.wasUnacked('x', 'e1', 0)]).toEqual([true, false]);
    const uncleanElsewhere = join(dir, 'unclean-elsewhere.json');
    writeFileSync(uncleanElsewhere, [otherBoot.replace('"closed":true', '"closed":false'), ...lines.slice(1)].join('\n'));
    expect(book(uncleanElsewhere).wasUnacked('x', 'e1', 0)).toBe(true);
    const garbage = join(dir, 'garbage.json');
    writeFileSync(garbage, '{"v":2,"bo');
    expect(book(garbage).wasUnacked('x', 'e1', 0)).toBe(true);
  });

  it('reads the one-object record of earlier versions', () => {
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const old = join(dir, 'old.json');
    writeFileSync(old, `${JSON.stringify({ boot, vms: { a: ['e1', 12] } })}      `);
    const b = book(old);
    expect(b.wasUnacked('a', 'e1', 11)).toBe(true);
    expect(b.wasUnacked('a', 'e1', 12)).toBe(false);
  });
});
