// The package (a dependency of ioredis, by its authors) ships no types: Redis Cluster's CRC16 key slot.
declare module 'cluster-key-slot' {
  export default function calculateSlot(key: string | Buffer): number;
}
