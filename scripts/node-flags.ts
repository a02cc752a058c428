/**
 * V8 flags every Conveyor service runs with: under `npm start`, in the bench and in the image (whose
 * Dockerfile repeats them on each service's command line; a test keeps the two equal). Measured with
 * `npm run bench`, neither costs throughput beyond the run-to-run spread (docs/scaling.md has the figures):
 * - V8 sizes the young generation for big hosts; 4 MB semi-spaces cut the API's and the worker's resident
 *   memory by about 100 MB each under load.
 * - Left to itself, V8 lets the old generation grow to about four times what survived the last full
 *   collection before it collects again (35 MB live, 200 MB heap under batch submits); a growth factor of 2
 *   cut the API's peak from about 290 to 200 MB and the worker's from 175 to 130, for up to 15% more API CPU
 *   under batch submits.
 */
export const SERVICE_NODE_FLAGS: readonly string[] = Object.freeze(['--max-semi-space-size=4', '--heap-growing-percent=100']);
