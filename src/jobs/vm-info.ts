/**
 * One VM's status and the facts its info reports (backend, QEMU version, commands, problems by
 * code), kept by the VM's engine and read by metrics, /v1/info and a fleet edge. Emits on every
 * change of status, reason, version or problems; never per command (counters are read on demand).
 */
import { Subject, type Observable } from 'rxjs';
import type { BackendKind, VmInfo, VmProblem, VmStatus } from './types.js';

type Version = { major: number; minor: number; micro: number };

export class VmInfoBook {
  private current: VmStatus = 'connecting';
  /** Why the VM is not connected, while it is not. */
  private reason: string | undefined;
  private readonly problems: Record<string, number> = {};
  private lastProblem: VmProblem | undefined;
  private readonly updates = new Subject<VmInfo>();

  readonly info$: Observable<VmInfo> = this.updates.asObservable();

  constructor(
    private readonly vm: string,
    private readonly backend: BackendKind,
    /** What the backend knows now: commands written, QEMU's version once told. */
    private readonly facts: () => { commandsSent: number; qemu: Version | undefined; libvirt?: Version | undefined },
  ) {}

  get status(): VmStatus {
    return this.current;
  }

  setStatus(status: VmStatus, reason: string | undefined): void {
    this.current = status;
    this.reason = reason;
    this.changed();
  }

  /** Counts a problem by its stable code (the caller decides whether it changes the status). */
  problem(problem: VmProblem): void {
    this.problems[problem.code] = (this.problems[problem.code] ?? 0) + 1;
    this.lastProblem = problem;
  }

  /** Something the info shows changed (e.g. the version became known). */
  changed(): void {
    if (this.updates.observed) this.updates.next(this.info());
  }

  info(): VmInfo {
    const { commandsSent, qemu, libvirt } = this.facts();
    const info: VmInfo = { vm: this.vm, status: this.current, backend: this.backend, commandsSent, problems: { ...this.problems } };
    if (this.current !== 'connected' && this.reason !== undefined) info.reason = this.reason;
    if (qemu) info.qemu = { major: qemu.major, minor: qemu.minor, micro: qemu.micro };
    if (libvirt) info.libvirt = { major: libvirt.major, minor: libvirt.minor, micro: libvirt.micro };
    if (this.lastProblem) info.lastProblem = this.lastProblem;
    return info;
  }

  complete(): void {
    this.updates.complete();
  }
}
