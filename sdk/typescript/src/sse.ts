// A server-sent events parser, as the HTML standard's "event stream
// interpretation" describes it: lines end in CRLF, LF or a lone CR (also when
// a chunk boundary falls between the CR and the LF); `:` starts a comment;
// `field: value` drops one space after the colon; several `data` lines of an
// event are joined with "\n"; an empty line dispatches the event; an event
// without data lines is not dispatched; an event left unfinished at the end
// of the stream is discarded. It works on text: the caller decodes the bytes
// (a streaming `TextDecoder`, which also strips a leading BOM).

/** One dispatched event. */
export interface ServerSentEvent {
  /** The `event` field; "message" when the event had none. */
  event: string;
  /** The `data` lines, joined with "\n". */
  data: string;
  /** The last `id` seen so far in the stream ("" when none). */
  id: string;
  /** The last valid `retry` (milliseconds), if any. */
  retry: number | undefined;
}

const LINE_END = /\r\n|\r|\n/g;

export class SSEDecoder {
  private buffer = "";
  /** The previous text ended in CR: a LF right after it belongs to that line end. */
  private afterCR = false;
  private eventType = "";
  private dataLines: string[] = [];
  private lastId = "";
  private retry: number | undefined;

  /** Feeds decoded text; returns the events it completed, in order. */
  push(text: string): ServerSentEvent[] {
    if (this.afterCR && text.length > 0) {
      if (text.startsWith("\n")) text = text.slice(1);
      this.afterCR = false;
    }
    const buffer = this.buffer + text;
    const events: ServerSentEvent[] = [];
    let start = 0;
    LINE_END.lastIndex = 0;
    for (let match = LINE_END.exec(buffer); match !== null; match = LINE_END.exec(buffer)) {
      const event = this.line(buffer.slice(start, match.index));
      if (event) events.push(event);
      start = match.index + match[0].length;
      // A CR at the very end may be the first half of a CRLF split across chunks.
      if (match[0] === "\r" && start === buffer.length) this.afterCR = true;
    }
    this.buffer = buffer.slice(start);
    return events;
  }

  /**
   * The stream ended. An event not terminated by an empty line is discarded
   * (as the standard says), so this returns no events; it resets the decoder.
   */
  end(): ServerSentEvent[] {
    this.buffer = "";
    this.afterCR = false;
    this.eventType = "";
    this.dataLines = [];
    return [];
  }

  private line(line: string): ServerSentEvent | undefined {
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) return undefined; // a comment (e.g. a keep-alive)
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "event":
        this.eventType = value;
        break;
      case "data":
        this.dataLines.push(value);
        break;
      case "id":
        if (!value.includes("\0")) this.lastId = value;
        break;
      case "retry":
        if (/^\d+$/.test(value)) this.retry = Number(value);
        break;
      default:
        // Unknown fields are ignored.
        break;
    }
    return undefined;
  }

  private dispatch(): ServerSentEvent | undefined {
    const event =
      this.dataLines.length === 0
        ? undefined
        : { event: this.eventType || "message", data: this.dataLines.join("\n"), id: this.lastId, retry: this.retry };
    this.eventType = "";
    this.dataLines = [];
    return event;
  }
}
