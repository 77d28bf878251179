using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace DeferRuntime.Cli.Storm.Paths;

/// <summary>
/// What a top half hands its bottom half: the two stamps of each event it took from the device (its
/// intended time and its assert time), in a pre-allocated single-producer single-consumer ring (the driver's own queue between
/// hard-IRQ and deferred context, like a block driver's completion list).
/// </summary>
/// <remarks>
/// Producer: the path's top half (one run per line at a time, on whichever CPU; a softirq path has one
/// ring per CPU, filled by the top halves of that CPU). Consumer: the path's bottom half, which never runs
/// concurrently with itself on one ring. Head and tail sit on their own cache lines: the producer writes
/// the head, the consumer the tail. When the ring is full the top half leaves the rest in the device; see
/// <see cref="DeferredLinePath"/> for how it is raised again.
/// </remarks>
internal sealed class HandoffRing
{
    private readonly long[] _slots; // I: two per entry (intended, asserted)
    private readonly int _mask; // I
    private Padded _head; // producer
    private Padded _tail; // consumer

    public HandoffRing(int capacity)
    {
        if (capacity < 2 || (capacity & (capacity - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(capacity), capacity, "a power of two, at least 2");
        }
        _slots = new long[capacity * 2];
        _mask = capacity - 1;
    }

    /// <summary>Producer: true when no slot is free (reads the consumer's tail).</summary>
    public bool IsFull
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => _head.Value - Volatile.Read(ref _tail.Value) > _mask;
    }

    /// <summary>Producer: appends one event's stamps; the caller checked <see cref="IsFull"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Push(long intended, long asserted)
    {
        long head = _head.Value;
        long slot = (head & _mask) * 2;
        _slots[slot] = intended;
        _slots[slot + 1] = asserted;
        Volatile.Write(ref _head.Value, head + 1);
    }

    /// <summary>Consumer: entries ready to take.</summary>
    public long Available
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Volatile.Read(ref _head.Value) - _tail.Value;
    }

    /// <summary>Consumer: the <paramref name="i"/>-th oldest entry not yet released.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Peek(long i, out long intended, out long asserted)
    {
        long slot = ((_tail.Value + i) & _mask) * 2;
        intended = _slots[slot];
        asserted = _slots[slot + 1];
    }

    /// <summary>Consumer: frees the <paramref name="count"/> oldest entries (after reading them).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Release(long count) => Volatile.Write(ref _tail.Value, _tail.Value + count);

    [StructLayout(LayoutKind.Explicit, Size = 128)]
    private struct Padded
    {
        [FieldOffset(64)] public long Value;
    }
}
