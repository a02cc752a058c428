/**
 * V8 flags every Conveyor service runs with: under `npm start`, in the bench and in the image (whose
 * Dockerfile repeats them in NODE_OPTIONS; a test keeps the two equal). V8 sizes the young generation for big
 * hosts; 4 MB semi-spaces cut the API's and the worker's resident memory by about 100 MB each under load,
 * with no loss of throughput in `npm run bench`.
 */
export const SERVICE_NODE_FLAGS: readonly string[] = Object.freeze(['--max-semi-space-size=4']);
