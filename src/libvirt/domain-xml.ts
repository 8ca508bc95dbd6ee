/**
 * The little of a live domain XML the job source reads: each disk's target, the index of its top
 * source (libvirt's node `libvirt-<index>-format`), and whether a copy or active commit shows
 * `<mirror ... ready='yes'>`. libvirt writes this XML itself, so a small reader suffices; anything
 * it does not find is reported as absent rather than guessed.
 */

export interface DiskView {
  /** `<target dev='vda'>` */
  target: string;
  /** `<source ... index='N'>` of the top image, when libvirt numbers it. */
  sourceIndex?: number;
  /** `<mirror>` present: a copy or active commit is on this disk. */
  mirror: boolean;
  /** `<mirror ... ready='yes'>`: libvirt has seen the job ready. */
  mirrorReady: boolean;
}

const DISK = /<disk\b[^>]*>([\s\S]*?)<\/disk>/g;
const TARGET = /<target\b[^>]*\bdev=['"]([^'"]+)['"]/;
const SOURCE_INDEX = /<source\b[^>]*\bindex=['"](\d+)['"]/;
const MIRROR = /<mirror\b([^>]*)>/;
const READY = /\bready=['"](yes|pivot|abort)['"]/;

export function parseDisks(xml: string): DiskView[] {
  const disks: DiskView[] = [];
  for (const match of xml.matchAll(DISK)) {
    const body = match[1] ?? '';
    const target = TARGET.exec(body)?.[1];
    if (target === undefined) continue;
    // The mirror element holds its own <source>; the disk's top source comes before it.
    const mirror = MIRROR.exec(body);
    const own = mirror ? body.slice(0, mirror.index) : body;
    const index = SOURCE_INDEX.exec(own)?.[1];
    const disk: DiskView = { target, mirror: mirror !== null, mirrorReady: mirror !== null && READY.test(mirror[1] ?? '') };
    if (index !== undefined) disk.sourceIndex = Number(index);
    disks.push(disk);
  }
  return disks;
}
