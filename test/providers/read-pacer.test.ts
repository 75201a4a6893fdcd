/**
 * The pacing of one AWS provider's reads after a throttled answer (providers/_aws.ts ReadPacer), on a fake
 * clock: when each read starts, counted, with the spread fixed at its middle (random 0.5: one spacing).
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ReadPacer, ThrottledAnswer } from '../../providers/_aws.js';

const throttled = () => Promise.reject(new ThrottledAnswer(new Error('ThrottlingException')));

describe('ReadPacer', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 1_000_000, toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  /** Starts `count` reads at once; each notes when it was sent and stays open until `answer` is called. */
  function burst(pacer: ReadPacer, count: number, signal = new AbortController().signal) {
    const sentAt: number[] = [];
    const answers: (() => void)[] = [];
    const reads = Array.from({ length: count }, () =>
      pacer.read(1, signal, () => {
        sentAt.push(Date.now());
        return new Promise<string>((resolve) => answers.push(() => resolve('ok')));
      }),
    );
    return {
      sentAt,
      reads,
      answerAll: () => {
        for (const answer of answers.splice(0)) answer();
      },
    };
  }

  it('sends everything at once until the store throttles a read', async () => {
    const pacer = new ReadPacer(() => 0.5);
    const { sentAt, reads, answerAll } = burst(pacer, 8);
    await vi.advanceTimersByTimeAsync(0);
    expect(sentAt).toEqual(Array(8).fill(1_000_000));
    answerAll();
    await Promise.all(reads);
    expect(pacer.spacingMs).toBe(0);
  });

  it('after a throttled answer, reads under way together start one spacing apart, in order; a lone first attempt is not held', async () => {
    const pacer = new ReadPacer(() => 0.5);
    await expect(pacer.read(1, new AbortController().signal, throttled)).rejects.toBeInstanceOf(
      ThrottledAnswer,
    );
    expect(pacer.spacingMs).toBe(250);
    const { sentAt, reads, answerAll } = burst(pacer, 4);
    await vi.advanceTimersByTimeAsync(0);
    // The first goes at once (nothing else under way when it came); the next waits one spacing after it.
    expect(sentAt).toEqual([1_000_000]);
    await vi.advanceTimersByTimeAsync(249);
    expect(sentAt).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(sentAt).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(500);
    expect(sentAt).toEqual([1_000_000, 1_000_250, 1_000_500, 1_000_750]);
    answerAll();
    await Promise.all(reads);
  });

  it('a throttled answer slows the reads already queued or waiting, not only those queued after it', async () => {
    const pacer = new ReadPacer(() => 0.5);
    const signal = new AbortController().signal;
    await pacer.read(1, signal, throttled).catch(() => undefined);
    const sentAt: number[] = [];
    let throttle!: () => void;
    // In flight (a lone first attempt: at once) while two more queue behind it.
    const inFlight = pacer.read(1, signal, () => {
      sentAt.push(Date.now());
      return new Promise<string>((_, reject) => {
        throttle = () => reject(new ThrottledAnswer(new Error('ThrottlingException')));
      });
    });
    const queued = [1, 2].map(() =>
      pacer.read(1, signal, async () => {
        sentAt.push(Date.now());
        return 'ok';
      }),
    );
    await vi.advanceTimersByTimeAsync(100);
    throttle();
    await inFlight.catch(() => undefined);
    expect(pacer.spacingMs).toBe(500);
    await vi.advanceTimersByTimeAsync(2_000);
    await Promise.all(queued);
    // The next one was already counting its 250 ms: it waits out the new 500 ms too (found by an outside
    // tester: it went at 250), and the one behind it 500 ms after it.
    expect(sentAt.map((at) => at - 1_000_000)).toEqual([0, 500, 1_000]);
  });

  it('each throttled answer doubles the spacing from 250 up to 500 ms; answers shrink it only a second after the last throttle', async () => {
    const pacer = new ReadPacer(() => 0.5);
    const signal = new AbortController().signal;
    const spacings: number[] = [];
    for (let i = 0; i < 5; i++) {
      await pacer.read(1, signal, throttled).catch(() => undefined);
      spacings.push(pacer.spacingMs);
    }
    expect(spacings).toEqual([250, 500, 500, 500, 500]);
    await pacer.read(1, signal, async () => 'ok');
    expect(pacer.spacingMs).toBe(500); // held: the reads under way were sent at the old rate
    await vi.advanceTimersByTimeAsync(1_000);
    await pacer.read(1, signal, async () => 'ok');
    expect(pacer.spacingMs).toBeCloseTo(475, 6);
    // Answers keep shrinking it (5 % each) until it is gone: unpaced below half the least spacing.
    let answers = 1;
    while (pacer.spacingMs > 0) {
      await pacer.read(1, signal, async () => 'ok');
      answers += 1;
    }
    expect(answers).toBe(Math.ceil(Math.log(125 / 500) / Math.log(0.95)));
  });

  it('a retry always waits its turn, and an abort while waiting rejects with the reason without sending', async () => {
    const pacer = new ReadPacer(() => 0.5);
    const controller = new AbortController();
    for (let i = 0; i < 2; i++) await pacer.read(1, controller.signal, throttled).catch(() => undefined);
    expect(pacer.spacingMs).toBe(500);
    let sent = 0;
    const send = async () => {
      sent += 1;
      return 'ok';
    };
    // Even alone, a retry starts one spacing after the last start; the next retry one more after it.
    const first = pacer.read(2, controller.signal, send);
    const waiting = pacer.read(2, controller.signal, send);
    await vi.advanceTimersByTimeAsync(499);
    expect(sent).toBe(0);
    await vi.advanceTimersByTimeAsync(1);
    await first;
    expect(sent).toBe(1);
    await vi.advanceTimersByTimeAsync(100);
    controller.abort(new Error('cycle ended'));
    await expect(waiting).rejects.toThrow('cycle ended');
    await vi.advanceTimersByTimeAsync(1_000);
    expect(sent).toBe(1);
  });
});
