using System.Diagnostics;
using System.Runtime.CompilerServices;
using DeferRuntime.Cpus;

namespace DeferRuntime.Timers;

/// <summary>
/// struct hrtimer_clock_base (HRTIMER_BASE_MONOTONIC_SOFT) of one CPU: the queued hrtimers in a binary
/// min-heap ordered by expiry, then by arming order, so equal deadlines run in the order they were
/// started. The heap index lives in the timer, so removal is O(log n); the array grows by doubling and
/// is kept, so after warm-up nothing allocates. (The kernel uses a red-black timerqueue; a heap gives the
/// same operations with less pointer chasing and no per-node allocation.)
/// </summary>
/// <remarks>Legend: <c>L:</c> <see cref="BaseLock"/>; never held while a callback runs, never with another base's lock.</remarks>
internal sealed class HrtimerBase : ILockedBase
{
    internal const long NoExpiry = long.MaxValue;

    private readonly CpuTimers _owner; // I
    private Hrtimer?[] _heap = new Hrtimer?[8]; // L: [0, _count) a min-heap
    private int _count; // L
    private long _sequence; // L: arming order, the tie-break

    internal HrtimerBase(CpuTimers owner) => _owner = owner;

    public Lock BaseLock { get; } = new();

    public VirtualCpu Cpu => _owner.Cpu;

    internal int Count
    {
        get
        {
            lock (BaseLock)
            {
                return _count;
            }
        }
    }

    /// <summary>The earliest queued expiry (ns), or <see cref="NoExpiry"/>. Caller holds <see cref="BaseLock"/>.</summary>
    internal long NextExpiryLocked() => _count == 0 ? NoExpiry : _heap[0]!.ExpiresValue;

    internal long NextExpiry()
    {
        lock (BaseLock)
        {
            return NextExpiryLocked();
        }
    }

    /// <summary>enqueue_hrtimer(): queues <paramref name="timer"/> at its expiry. Caller holds <see cref="BaseLock"/>.</summary>
    internal void Enqueue(Hrtimer timer)
    {
        Debug.Assert(BaseLock.IsHeldByCurrentThread, "enqueue without the base lock");
        Debug.Assert(timer.HeapIndex < 0, "enqueue of a queued hrtimer");
        if (_count == _heap.Length)
        {
            Array.Resize(ref _heap, _count * 2);
        }
        timer.Sequence = ++_sequence;
        int index = _count++;
        _heap[index] = timer;
        SiftUp(timer, index);
    }

    /// <summary>__remove_hrtimer(): takes a queued timer out. Caller holds <see cref="BaseLock"/>.</summary>
    internal void Remove(Hrtimer timer)
    {
        Debug.Assert(BaseLock.IsHeldByCurrentThread, "remove without the base lock");
        int index = timer.HeapIndex;
        Debug.Assert(index >= 0 && ReferenceEquals(_heap[index], timer), "remove of a timer not queued here");
        int lastIndex = --_count;
        var last = _heap[lastIndex]!;
        _heap[lastIndex] = null;
        Volatile.Write(ref timer.HeapIndex, -1);
        if (index != lastIndex)
        {
            // The last element fills the hole and moves whichever way its key says.
            if (index > 0 && Less(last, _heap[(index - 1) / 2]!))
            {
                SiftUp(last, index);
            }
            else
            {
                SiftDown(last, index);
            }
        }
    }

    /// <summary>
    /// __hrtimer_run_queues() for the soft base: runs every timer due by now, in heap order, then
    /// reprograms the CPU's clock event. Timers started while it runs (a callback's restart included)
    /// wait for the next run even if already due, so a callback that restarts without moving its expiry
    /// costs one clock event per run instead of looping here forever.
    /// </summary>
    internal void Run(ThreadContext ctx)
    {
        var cpu = Cpu;
        var runtime = cpu.Runtime;
        long next;
        BaseLock.Enter();
        try
        {
            long now = runtime.KtimeGetNs();
            long lastSequence = _sequence;
            while (_count > 0 && !runtime.IsPanicked)
            {
                var timer = _heap[0]!;
                if (timer.ExpiresValue > now || timer.Sequence > lastSequence)
                {
                    break;
                }
                Remove(timer);
                Volatile.Write(ref timer.RunningOn, this);
                BaseLocking.RunUnlocked(BaseLock, ctx, timer, static t => t.Invoke(), static t => $"hrtimer '{t.Name}'");
                // __run_hrtimer(): re-queue on HRTIMER_RESTART unless the callback started it itself. Not
                // once callbacks are closed (shutdown gave up): a refused callback returned nothing, and its
                // last answer would re-arm it at a past expiry, to be refused again at every tick.
                if (timer.Result == HrtimerRestart.Restart && timer.HeapIndex < 0 && !runtime.CallbacksClosed)
                {
                    Enqueue(timer);
                }
                Volatile.Write(ref timer.RunningOn, null);
            }
            next = NextExpiryLocked();
        }
        finally
        {
            BaseLock.Exit();
        }
        if (next != NoExpiry)
        {
            _owner.Program(next, deferrable: false);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool Less(Hrtimer a, Hrtimer b) =>
        a.ExpiresValue < b.ExpiresValue || (a.ExpiresValue == b.ExpiresValue && a.Sequence < b.Sequence);

    private void SiftUp(Hrtimer timer, int index)
    {
        while (index > 0)
        {
            int parent = (index - 1) / 2;
            var p = _heap[parent]!;
            if (!Less(timer, p))
            {
                break;
            }
            _heap[index] = p;
            p.HeapIndex = index;
            index = parent;
        }
        _heap[index] = timer;
        Volatile.Write(ref timer.HeapIndex, index);
    }

    private void SiftDown(Hrtimer timer, int index)
    {
        while (true)
        {
            int child = (2 * index) + 1;
            if (child >= _count)
            {
                break;
            }
            var c = _heap[child]!;
            if (child + 1 < _count && Less(_heap[child + 1]!, c))
            {
                child++;
                c = _heap[child]!;
            }
            if (!Less(c, timer))
            {
                break;
            }
            _heap[index] = c;
            c.HeapIndex = index;
            index = child;
        }
        _heap[index] = timer;
        Volatile.Write(ref timer.HeapIndex, index);
    }
}
