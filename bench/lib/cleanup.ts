/**
 * Undo steps for everything the benchmark starts (child processes, the embedded database, temp
 * directories), run in reverse order on success, on failure and on Ctrl-C alike.
 */
export class Cleanup {
  private readonly steps: Array<{ name: string; run: () => Promise<void> | void }> = [];
  private running?: Promise<void>;

  /** Registers an undo step; the latest registered runs first. */
  add(name: string, run: () => Promise<void> | void): void {
    this.steps.push({ name, run });
  }

  /** Runs every step once, even when some fail (failures are reported, not thrown). */
  runAll(): Promise<void> {
    this.running ??= (async () => {
      while (this.steps.length > 0) {
        const step = this.steps.pop()!;
        try {
          await step.run();
        } catch (error) {
          console.error(`bench cleanup: ${step.name} failed: ${(error as Error).message}`);
        }
      }
    })();
    return this.running;
  }

  /** On SIGINT/SIGTERM: clean up, then exit with the conventional 128 + signal code. */
  onSignals(): void {
    const handle = (signal: NodeJS.Signals, code: number) => (): void => {
      console.error(`\nbench: ${signal} received, cleaning up...`);
      void this.runAll().finally(() => process.exit(code));
    };
    process.once('SIGINT', handle('SIGINT', 130));
    process.once('SIGTERM', handle('SIGTERM', 143));
  }
}
