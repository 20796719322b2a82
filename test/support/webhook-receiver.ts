/**
 * A webhook receiver for the e2e suites and the benchmark: a node:http server on 127.0.0.1 that
 * records every POST (headers, raw body, arrival time) and answers 204, or what it is told to
 * answer next (`failNext`), to every POST (`failUntilRecovered`) or to some (`failMatching`), or
 * after a delay (`delayMs`). It verifies nothing itself: suites check
 * signatures with the standardwebhooks verifier, as a real receiver would.
 */
import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import { AddressInfo } from 'node:net';

export interface ReceivedWebhook {
  webhookId: string;
  timestamp: string;
  signature: string;
  /** The raw body, as signed. */
  body: string;
  payload: { type: string; timestamp: string; data: Record<string, unknown> };
  /** Date.now() when the request ended. */
  receivedAtMs: number;
  /**
   * What this receiver answered; CLIENT_GONE when the sender hung up (or died) before the answer
   * (during `delayMs`), so nothing was answered.
   */
  answered: number;
  /** The path the broker posted to (several endpoints can share one receiver). */
  path: string;
}

/** `answered` of a POST whose sender went away before it was answered (nginx's 499): not accepted. */
export const CLIENT_GONE = 499;

interface PlannedAnswer {
  status: number;
  headers?: Record<string, string>;
}

export class WebhookReceiver {
  readonly received: ReceivedWebhook[] = [];
  /** The webhook-id of every POST as it arrives, before any delay or answer. */
  readonly arrivals: string[] = [];
  /** Milliseconds to wait before answering (a slow receiver; over 10 s is a timeout). */
  delayMs = 0;
  private readonly planned: PlannedAnswer[] = [];
  private failAll: PlannedAnswer | null = null;
  private failWhen: { matches: (payload: ReceivedWebhook['payload']) => boolean; answer: PlannedAnswer } | null = null;

  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(): Promise<WebhookReceiver> {
    const server = createServer();
    server.keepAliveTimeout = 5_000;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const receiver = new WebhookReceiver(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    server.on('request', (request: IncomingMessage, response: ServerResponse) => void receiver.handle(request, response));
    return receiver;
  }

  /** The next `count` POSTs are answered `status` (with `headers`), then 204 again. */
  failNext(count: number, status = 500, headers?: Record<string, string>): void {
    for (let i = 0; i < count; i++) this.planned.push({ status, headers });
  }

  /** Every POST is answered `status` until `recover()`. */
  failUntilRecovered(status = 500): void {
    this.failAll = { status };
  }

  /** Every POST whose payload `matches` is answered `status` until `recover()` (others as usual). */
  failMatching(matches: (payload: ReceivedWebhook['payload']) => boolean, status = 500): void {
    this.failWhen = { matches, answer: { status } };
  }

  recover(): void {
    this.failAll = null;
    this.failWhen = null;
    this.planned.length = 0;
  }

  /** Deliveries of one event type (in arrival order). */
  ofType(type: string): ReceivedWebhook[] {
    return this.received.filter((r) => r.payload.type === type);
  }

  /** Deliveries answered 2xx, once per webhook-id. */
  acceptedIds(): string[] {
    return [...new Set(this.received.filter((r) => r.answered >= 200 && r.answered < 300).map((r) => r.webhookId))];
  }

  /** Waits until `check` returns something truthy (polling every 25 ms), or fails after `timeoutMs`. */
  async waitFor<T>(what: string, check: (received: ReceivedWebhook[]) => T | undefined | false, timeoutMs = 10_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const result = check(this.received);
      if (result) return result;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; received: ${this.received.map((r) => `${r.payload.type}(${r.answered})`).join(', ') || 'nothing'}`);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    this.arrivals.push(String(request.headers['webhook-id']));
    if (this.delayMs > 0) {
      // A sender that hangs up (a timeout, or a killed process) ends the wait: nobody is left to answer.
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.delayMs);
        response.once('close', () => resolve());
      });
      clearTimeout(timer);
    }
    const gone = response.destroyed || request.socket.destroyed;
    let payload: ReceivedWebhook['payload'];
    try {
      payload = JSON.parse(body) as ReceivedWebhook['payload'];
    } catch {
      payload = { type: '(not JSON)', timestamp: '', data: {} };
    }
    const answer: PlannedAnswer = gone ? { status: CLIENT_GONE } : this.failAll ?? (this.failWhen?.matches(payload) ? this.failWhen.answer : undefined) ?? this.planned.shift() ?? { status: 204 };
    this.received.push({
      webhookId: String(request.headers['webhook-id']),
      timestamp: String(request.headers['webhook-timestamp']),
      signature: String(request.headers['webhook-signature']),
      body,
      payload,
      receivedAtMs: Date.now(),
      answered: answer.status,
      path: request.url ?? '/',
    });
    if (!gone) response.writeHead(answer.status, answer.headers).end();
  }
}
