using System.Diagnostics;
using System.Runtime.CompilerServices;
using DeferRuntime.Interrupts;

namespace DeferRuntime.Devices;

/// <summary>
/// One line of a <see cref="StormGenerator"/> as its driver sees it: the device's event FIFO, which the
/// line's hard-IRQ handler drains with <see cref="TryTake(out long, out long)"/>, and the line's counts.
/// </summary>
/// <remarks>
/// <para>An interrupt says "events are waiting", not "one event": assertions that arrive while the line
/// is already latched coalesce into one handler run, so the handler must drain the FIFO, not take one
/// event per run. A run may also find it empty (an earlier run drained what this assertion announced);
/// that run is still the device's, so return <see cref="IrqReturn.Handled"/>.</para>
/// <para>The FIFO is a pre-allocated single-producer, single-consumer ring of event stamps, two per event:
/// its <em>intended</em> time (when the storm's schedule said it was due: the time a real device would have
/// raised it) and its <em>assert</em> time (when the generator actually published and asserted it, or put it
/// in its backlog). A generator that falls behind keeps every event's intended time, so its lag shows as
/// latency measured from the intended time instead of vanishing (no coordinated omission).
/// The ring:
/// the generator thread produces, the line's handler consumes (the flow handler runs one chain per line
/// at a time, on whichever CPU, so there is one consumer at a time). Events that find it full go to the
/// generator's backlog, oldest first, and move into the ring as the driver makes room: none is dropped.</para>
/// <para>Field legend: <c>I:</c> set at creation; <c>G:</c> written by the generator thread only, read by
/// others with <see cref="Volatile"/>; <c>D:</c> written by the line's driver (its handler) only.</para>
/// </remarks>
public sealed class StormLineSource
{
    private readonly IrqController _irqs; // I
    private readonly long[] _ring; // I: the FIFO slots, two per event (intended, asserted; Stopwatch ticks); producer writes before publishing _head
    private readonly int _mask; // I: events the ring holds - 1
    private PaddedInt64 _head; // G: events published to the ring
    private PaddedInt64 _tail; // D: events taken by the driver (Handled)

    private long[] _backlog; // G: events the full ring could not take, a circular FIFO of stamp pairs (power-of-two events)
    private int _backlogStart; // G
    private int _backlogCount; // G
    private long _backlogMax; // G
    private long _backlogged; // G: events that went through the backlog

    private long _generated; // G
    private long _asserted; // G
    private long _delivered; // G
    private long _coalesced; // G
    private long _latched; // G
    private long _reasserts; // D: level lines re-asserted by the drain (an event arrived as it deasserted)
    private IrqTrigger _trigger; // G: read from the line at Start

    internal StormLineSource(IrqController irqs, StormLine line, int index, int capacity)
    {
        _irqs = irqs;
        Line = line;
        Index = index;
        _ring = new long[capacity * 2];
        _mask = capacity - 1;
        _backlog = new long[capacity * 2];
    }

    /// <summary>The line's configuration.</summary>
    public StormLine Line { get; }

    /// <summary>The interrupt line.</summary>
    public int Irq => Line.Irq;

    /// <summary>Position of the line in <see cref="StormOptions.Lines"/>.</summary>
    public int Index { get; }

    /// <summary>Events generated so far.</summary>
    public long Generated => Volatile.Read(ref _generated);

    /// <summary>Events the driver has taken so far (<see cref="TryTake(out long, out long)"/>).</summary>
    public long Handled => Volatile.Read(ref _tail.Value);

    /// <summary>Events waiting in the generator's backlog because the FIFO was full.</summary>
    public int Backlog => Volatile.Read(ref _backlogCount);

    /// <summary>
    /// Driver side, from the line's handler: takes the oldest waiting event and its assertion timestamp
    /// (<see cref="Stopwatch.GetTimestamp"/> ticks, taken just before the device published and asserted it,
    /// or when it was generated if it had to wait in the backlog). Lock-free and allocation-free. Latency
    /// measured from it leaves out the generator's own lag; see the overload with the intended time.
    /// </summary>
    /// <returns>False when the FIFO is empty; on a level line the device then stops asserting it.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryTake(out long assertTimestamp) => TryTake(out _, out assertTimestamp);

    /// <summary>
    /// Driver side, from the line's handler: takes the oldest waiting event with its two stamps
    /// (<see cref="Stopwatch.GetTimestamp"/> ticks): <paramref name="intendedTimestamp"/>, when the schedule
    /// said it was due, and <paramref name="assertTimestamp"/>, when the generator actually published and
    /// asserted it (or put it in its backlog), never earlier than the intended time. Latency from the
    /// intended time includes the generator's lag, as a real device's would not have waited for it.
    /// Lock-free and allocation-free.
    /// </summary>
    /// <returns>False when the FIFO is empty; on a level line the device then stops asserting it.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryTake(out long intendedTimestamp, out long assertTimestamp)
    {
        long tail = _tail.Value;
        if (tail == Volatile.Read(ref _head.Value))
        {
            intendedTimestamp = 0;
            assertTimestamp = 0;
            if (_trigger == IrqTrigger.Level)
            {
                EmptyOnLevelLine(tail);
            }
            return false;
        }
        long slot = (tail & _mask) * 2;
        intendedTimestamp = _ring[slot];
        assertTimestamp = _ring[slot + 1];
        // Release the slot only after reading it: the producer may overwrite it once it sees the new tail.
        Volatile.Write(ref _tail.Value, tail + 1);
        return true;
    }

    /// <summary>
    /// A level line is asserted while events wait. Deassert, then look again: an event published between
    /// our empty check and the deassert had its assertion merged into the level we just dropped, so
    /// re-assert for it (both sides use full barriers: publish-then-assert against deassert-then-check).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void EmptyOnLevelLine(long tail)
    {
        _irqs.DeassertLevel(Irq);
        if (Volatile.Read(ref _head.Value) != tail)
        {
            _reasserts++;
            _irqs.AssertLevel(Irq);
        }
    }

    // ---- the generator's side (G) ----

    internal void Prepare() => _trigger = _irqs.GetStats(Irq).Trigger;

    internal bool HasBacklog => _backlogCount != 0;

    /// <summary>One event, due at <paramref name="intended"/>, stamped <paramref name="asserted"/>: into the ring and asserted, or, behind a full ring or an older backlog, into the backlog.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void Produce(long intended, long asserted)
    {
        _generated++;
        if (_backlogCount == 0)
        {
            long head = _head.Value;
            if (head - Volatile.Read(ref _tail.Value) <= _mask)
            {
                long slot = (head & _mask) * 2;
                _ring[slot] = intended;
                _ring[slot + 1] = asserted;
                Volatile.Write(ref _head.Value, head + 1);
                Assert();
                return;
            }
        }
        PushBacklog(intended, asserted);
    }

    /// <summary>Moves what the ring now has room for from the backlog, oldest first, asserting once per event moved. True when the backlog is empty.</summary>
    internal bool FlushBacklog()
    {
        long head = _head.Value;
        long free = _mask + 1 - (head - Volatile.Read(ref _tail.Value));
        int moved = 0;
        int backlogMask = _backlog.Length / 2 - 1;
        while (_backlogCount > 0 && free > 0)
        {
            long slot = (head & _mask) * 2;
            _ring[slot] = _backlog[_backlogStart * 2];
            _ring[slot + 1] = _backlog[(_backlogStart * 2) + 1];
            head++;
            free--;
            _backlogStart = (_backlogStart + 1) & backlogMask;
            _backlogCount--;
            moved++;
        }
        if (moved > 0)
        {
            Volatile.Write(ref _head.Value, head);
            for (int i = 0; i < moved; i++)
            {
                Assert();
            }
        }
        return _backlogCount == 0;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void PushBacklog(long intended, long asserted)
    {
        int events = _backlog.Length / 2;
        if (_backlogCount == events)
        {
            // Doubling: amortized, and only while the driver falls further behind; PERF: no event allocates
            // while the backlog has room.
            var grown = new long[_backlog.Length * 2];
            for (int i = 0; i < _backlogCount; i++)
            {
                int from = ((_backlogStart + i) & (events - 1)) * 2;
                grown[i * 2] = _backlog[from];
                grown[(i * 2) + 1] = _backlog[from + 1];
            }
            _backlog = grown;
            _backlogStart = 0;
            events *= 2;
        }
        int slot = ((_backlogStart + _backlogCount) & (events - 1)) * 2;
        _backlog[slot] = intended;
        _backlog[slot + 1] = asserted;
        Volatile.Write(ref _backlogCount, _backlogCount + 1);
        _backlogged++;
        if (_backlogCount > _backlogMax)
        {
            _backlogMax = _backlogCount;
        }
    }

    /// <summary>The device raises its line for one published event and counts what the controller did with it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Assert()
    {
        var result = _trigger == IrqTrigger.Edge ? _irqs.AssertEdge(Irq) : _irqs.AssertLevel(Irq);
        _asserted++;
        switch (result)
        {
            case IrqAssertResult.Delivered:
                _delivered++;
                break;
            case IrqAssertResult.Coalesced:
                _coalesced++;
                break;
            default:
                _latched++;
                break;
        }
    }

    /// <summary>A snapshot of the line's counts (each read once; consistent once the storm is over and drained).</summary>
    public StormLineStats GetStats() => new(
        Irq, Line.RatePerSecond, Line.Arrival, Volatile.Read(ref _generated), Volatile.Read(ref _asserted),
        Volatile.Read(ref _delivered), Volatile.Read(ref _coalesced), Volatile.Read(ref _latched),
        Volatile.Read(ref _tail.Value), Volatile.Read(ref _backlogCount), Volatile.Read(ref _backlogMax),
        Volatile.Read(ref _backlogged), Volatile.Read(ref _reasserts));
}

/// <summary>One storm line's counts.</summary>
/// <param name="Irq">The line.</param>
/// <param name="RatePerSecond">The requested mean rate.</param>
/// <param name="Arrival">The arrival process.</param>
/// <param name="Generated">Events generated.</param>
/// <param name="Asserted">Assertions of the line (one per event once it is in the FIFO; equals Generated once the backlog is empty).</param>
/// <param name="Delivered">Assertions that latched the line and were sent to a CPU.</param>
/// <param name="Coalesced">Assertions merged with one already latched (one handler run serves several events).</param>
/// <param name="Latched">Assertions that found the line masked: delivered at unmask.</param>
/// <param name="Handled">Events the driver drained.</param>
/// <param name="Backlog">Events waiting in the generator's backlog now.</param>
/// <param name="MaxBacklog">The largest backlog seen.</param>
/// <param name="Backlogged">Events that had to wait in the backlog because the FIFO was full.</param>
/// <param name="Reasserts">Level lines: re-assertions by the drain for an event that arrived as it deasserted.</param>
public sealed record StormLineStats(
    int Irq, double RatePerSecond, StormArrival Arrival, long Generated, long Asserted, long Delivered, long Coalesced,
    long Latched, long Handled, long Backlog, long MaxBacklog, long Backlogged, long Reasserts)
{
    /// <summary>Events generated and not yet drained (in the FIFO or the backlog).</summary>
    public long Pending => Generated - Handled;
}
