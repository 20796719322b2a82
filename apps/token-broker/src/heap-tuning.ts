/**
 * Imported first by main.ts. V8 lets the heap grow well past what is live before it collects,
 * so a burst of work (a refresh sweep) can push RSS far above the live data. Letting it grow by
 * 25 % at most keeps a replica inside its memory budget (DESIGN) at no CPU cost the benchmarks
 * can see. A `--heap-growing-percent` given on the command line wins. The young generation's size
 * can only be set on the command line: `npm start` (package.json) and the Dockerfile pass
 * `--max-semi-space-size=4` for the same reason. Measurements: docs/decisions/0007-heap-tuning.md
 * and 0018-young-generation-4mb.md.
 */
import { setFlagsFromString } from 'node:v8';

if (!process.execArgv.some((flag) => flag.startsWith('--heap-growing-percent'))) setFlagsFromString('--heap-growing-percent=25');
