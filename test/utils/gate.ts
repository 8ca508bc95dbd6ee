/**
 * One rule for suites that need a real system service (QEMU, libvirtd, Redis): present, the suite
 * runs; missing outside CI, it is skipped with a name that says what to install (global-setup prints
 * the banner once); missing in CI (CI=true), it is one failing test, because a green run that
 * silently skipped the service would prove nothing.
 */
import { describe, it } from 'vitest';
import { inCi } from './qemu-banner.js';

export interface Need {
  available: boolean;
  /** Named in the failing test: "needs <what>, which is missing on this CI machine". */
  what: string;
  /** Named in the skipped suite's name: the packages (or pieces) to install. */
  missing: () => string;
  /** The failing test's error: the full banner. */
  banner: () => string;
}

export function describeNeeding(need: Need, name: string, fn: () => void): void {
  if (need.available) {
    describe(name, fn);
  } else if (inCi) {
    describe(name, () => {
      it(`needs ${need.what}, which is missing on this CI machine`, () => {
        throw new Error(need.banner());
      });
    });
  } else {
    describe.skip(`${name} [skipped: needs ${need.missing()}]`, fn);
  }
}
