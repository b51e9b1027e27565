/** Errors are logged by type and code only: messages of foreign errors may quote input. */
export function errorSummary(err: unknown): { type: string; code?: string } {
  if (err instanceof Error) return { type: err.name, code: (err as { code?: string }).code };
  return { type: typeof err };
}
