import { Injectable } from '@nestjs/common';

/**
 * Whether this replica is draining: it got SIGTERM, readiness answers 503 so that endpoints and
 * load balancers stop routing to it, and meanwhile the listener keeps answering whatever still
 * arrives (see RunningBroker.shutdown). Answers given while draining ask the client to close its
 * keep-alive connection, so its next request opens one to another replica.
 */
@Injectable()
export class Drain {
  private draining = false;

  get active(): boolean {
    return this.draining;
  }

  begin(): void {
    this.draining = true;
  }
}
