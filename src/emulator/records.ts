/** Keeps the last `max` items; memory stays bounded however long the benchmark runs. */
export class BoundedLog<T> {
  readonly #max: number
  #items: T[] = []

  constructor (max: number) {
    this.#max = max
  }

  push (item: T): void {
    this.#items.push(item)
    // Trim in batches: amortised O(1) per push instead of a shift per request.
    if (this.#items.length >= this.#max * 2) this.#items = this.#items.slice(-this.#max)
  }

  get items (): readonly T[] {
    return this.#items.length > this.#max ? this.#items.slice(-this.#max) : this.#items
  }

  clear (): void {
    this.#items = []
  }
}
