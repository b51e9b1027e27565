/**
 * The policy name of an API route: `/v1/chat/completions` → `chat.completions`.
 * Resource ids (`/v1/files/file-abc123/content`) become `{id}` so that one
 * operation name covers every resource of a kind and no id leaks into rules.
 */
export function operationFromPath(pathname: string): string {
  const rest = pathname.startsWith('/v1/') ? pathname.slice(4) : pathname.replace(/^\/+/, '');
  const parts: string[] = [];
  for (const segment of rest.split('/')) {
    if (segment === '') continue;
    parts.push(/^[a-z][a-z_]{0,63}$/.test(segment) ? segment : '{id}');
  }
  return parts.length > 0 ? parts.join('.') : 'root';
}
