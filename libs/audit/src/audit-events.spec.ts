import { webhookGivenUp } from './audit-events';

describe('webhookGivenUp (the hook for the webhook deliverer)', () => {
  it('records the last answer as the outcome, system as the actor, and the endpoint by its origin only', () => {
    expect(
      webhookGivenUp({
        deliveryId: '41',
        webhookId: 'msg_1',
        type: 'connection.revoked',
        endpoint: 'https://user:pass@hooks.example.com/broker?token=s3cret',
        account: 'acme',
        provider: 'copyai',
        attempts: 17,
        lastStatus: 500,
      }),
    ).toEqual({
      action: 'webhook.given_up',
      actor: 'system',
      actorKind: 'system',
      account: 'acme',
      provider: 'copyai',
      outcome: '500',
      detail: { deliveryId: '41', webhookId: 'msg_1', type: 'connection.revoked', endpoint: 'https://hooks.example.com', attempts: 17 },
    });
  });

  it('says no_answer when the receiver never answered', () => {
    const event = webhookGivenUp({ deliveryId: '42', webhookId: 'msg_2', type: 'provider.misconfigured', endpoint: 'not a url', account: null, provider: 'copper', attempts: 3, lastStatus: null });
    expect(event.outcome).toBe('no_answer');
    expect(event.detail).toMatchObject({ endpoint: '(not a URL)' });
  });
});
