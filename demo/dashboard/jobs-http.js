// GET /v1/jobs a page at a time (PROTOCOL.md, HTTP endpoints): a fleet's snapshot comes in pages of
// VMs in name order, so reading what a few VMs hold may take several requests, bounded here.

/** Pages at most this large, and at most this many of them per read. */
const PAGE = 1000;
const MAX_PAGES = 100;

/**
 * @param {{ token?: string, wanted?: Set<string> }} options wanted: stop once every one of these VMs was seen
 * @returns {Promise<object[]>} the VMs read (each with its position, status and jobs), in name order
 */
export async function readJobs({ token, wanted } = {}) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const vms = [];
  let after;
  for (let page = 0; page < MAX_PAGES; page++) {
    const query = new URLSearchParams({ limit: String(PAGE), ...(after === undefined ? {} : { after }) });
    const response = await fetch(`/v1/jobs?${query}`, { headers });
    if (!response.ok) throw new Error(`GET /v1/jobs: HTTP ${response.status}`);
    const body = await response.json();
    vms.push(...body.vms);
    after = body.next;
    if (after === undefined || (wanted && [...wanted].every((vm) => vms.some((v) => v.vm === vm)))) break;
  }
  return vms;
}
