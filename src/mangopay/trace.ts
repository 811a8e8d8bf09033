/** What the Mangopay room needs of tracing (observability/tracing.ts provides it): spans, and the headers that carry them. */

export type SpanAttributes = Record<string, string | number | boolean>

export interface CallSpan {
  /** A span within this one: the bearer fetch within a mint. */
  child (name: string, attributes?: SpanAttributes, kind?: 'client' | 'internal'): CallSpan
  /** `traceparent` (and `tracestate`) for a call made within this span. */
  headers (): Record<string, string>
  setAttribute (name: string, value: string | number | boolean): void
  /** Marks the span failed, with the error's code. */
  fail (error: unknown): void
  end (): void
}

export interface CallTracer {
  /** A span with no parent (a bearer fetched ahead of need, or at start-up); none when spans are not exported. */
  root (name: string, attributes?: SpanAttributes, kind?: 'client' | 'internal'): CallSpan | undefined
}
