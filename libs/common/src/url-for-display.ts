/**
 * A URL as logs, audit records and admin views may show it: origin and path, without user info,
 * query or fragment, where a receiver's token often sits (webhook URLs especially).
 */
export function urlForDisplay(value: string): string {
  try {
    const url = new URL(value);
    return `${url.origin}${url.pathname}`;
  } catch {
    return '(not a URL)';
  }
}
