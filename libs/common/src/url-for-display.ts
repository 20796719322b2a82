/**
 * A URL as logs, audit records and admin views may show it: its origin only. Webhook URLs carry
 * the receiver's credential in the query, the user info or the path itself (Slack's
 * /services/T…/B…/<secret>, Discord's /api/webhooks/<id>/<token>), so no part after the origin is safe.
 */
export function urlForDisplay(value: string): string {
  try {
    return new URL(value).origin;
  } catch {
    return '(not a URL)';
  }
}
