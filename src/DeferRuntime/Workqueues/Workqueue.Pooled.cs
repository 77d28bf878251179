using System.Collections.Concurrent;
using System.Diagnostics;

namespace DeferRuntime.Workqueues;

// Pooled work items: queue_work() of a fresh callback and state per request without allocating per call.
//
// The allocation-free workqueue API wants a WorkStruct allocated once and queued many times, which suits a
// driver with one deferred job. A service queues a different job per request, with its own state;
// allocating a WorkStruct (and a closure) per request puts the GC on the request path. Here the state
// travels in a pooled, typed item (no boxing, no closure: pass a static lambda), so the steady state
// allocates nothing. The pool is the runtime's own (PooledWork<TState>.Pool below), not a package's.

public sealed partial class Workqueue
{
    /// <summary>Idle pooled items kept per state type by <see cref="QueuePooled"/>: 64 per processor, at least 256.</summary>
    public static readonly int MaxPooledPerStateType = Math.Max(256, Environment.ProcessorCount * 64);

    /// <summary>
    /// queue_work() of <paramref name="callback"/>(<paramref name="state"/>) on this workqueue, in a work item
    /// rented from a pool and returned after the callback ran: allocation-free once the pool is warm (pass a
    /// static lambda). Runs once, in process context on the workqueue's worker (softirq context on a bh
    /// workqueue). Callable from any context, like queue_work(). Throws what queue_work() throws (the
    /// runtime shut down, the workqueue destroyed or draining).
    /// </summary>
    /// <remarks>
    /// A pooled item is fire-and-forget: it cannot be flushed or cancelled by itself (it may already be
    /// serving another request). <see cref="Flush"/>, <see cref="Drain"/> and shutdown count it like any
    /// item. Each state type has its own pool, shared by every workqueue and runtime in the process,
    /// retaining up to <see cref="MaxPooledPerStateType"/> idle items; a burst beyond that allocates, and
    /// the surplus is left to the GC when it comes back.
    /// </remarks>
    public void QueuePooled<TState>(TState state, Action<TState> callback)
    {
        ArgumentNullException.ThrowIfNull(callback);
        var work = PooledWork<TState>.Rent(state, callback);
        try
        {
            bool queued = Queue(work);
            Debug.Assert(queued, "a rented item is never pending");
        }
        catch
        {
            work.Abandon();
            throw;
        }
    }

    /// <summary>queue_work_on(): as <see cref="QueuePooled"/>, on CPU <paramref name="cpu"/>'s pool.</summary>
    public void QueuePooledOn<TState>(int cpu, TState state, Action<TState> callback)
    {
        ArgumentNullException.ThrowIfNull(callback);
        var work = PooledWork<TState>.Rent(state, callback);
        try
        {
            bool queued = QueueOn(cpu, work);
            Debug.Assert(queued, "a rented item is never pending");
        }
        catch
        {
            work.Abandon();
            throw;
        }
    }
}

/// <summary>A work item whose function and state are set per rent: the pool's element.</summary>
internal sealed class PooledWork<TState> : WorkStruct
{
    // The pool: one item in a field (the common case of one request in flight costs one exchange), the rest
    // in a ConcurrentQueue, whose segments are ring buffers reused once they are big enough (no allocation
    // in the steady state), bounded by a count taken before each enqueue. As
    // Microsoft.Extensions.ObjectPool's DefaultObjectPool, which this replaces so the core takes no package.
    private static PooledWork<TState>? s_fast;
    private static readonly ConcurrentQueue<PooledWork<TState>> s_items = new();
    private static int s_count; // items in s_items, or about to be

    // Set by the renter before queue_work() (whose full barrier publishes them to the worker), cleared
    // by the worker before the item goes back to the pool.
    private TState _state = default!;
    private Action<TState>? _callback;

    private PooledWork()
        : base(static w => ((PooledWork<TState>)w).Run(), $"pooled<{typeof(TState).Name}>")
    {
    }

    /// <summary>Idle items in the pool now (tests).</summary>
    internal static int IdleCount => Volatile.Read(ref s_count) + (Volatile.Read(ref s_fast) is null ? 0 : 1);

    public static PooledWork<TState> Rent(TState state, Action<TState> callback)
    {
        var work = Get();
        work._state = state;
        work._callback = callback;
        return work;
    }

    /// <summary>queue_work() refused it: back to the pool unqueued.</summary>
    public void Abandon()
    {
        _callback = null;
        _state = default!;
        Return(this);
    }

    private static PooledWork<TState> Get()
    {
        var item = s_fast;
        if (item is not null && Interlocked.CompareExchange(ref s_fast, null, item) == item)
        {
            return item;
        }
        if (s_items.TryDequeue(out item))
        {
            Interlocked.Decrement(ref s_count);
            return item;
        }
        return new PooledWork<TState>();
    }

    private static void Return(PooledWork<TState> item)
    {
        if (s_fast is null && Interlocked.CompareExchange(ref s_fast, item, null) is null)
        {
            return;
        }
        if (Interlocked.Increment(ref s_count) <= Workqueue.MaxPooledPerStateType)
        {
            s_items.Enqueue(item);
            return;
        }
        Interlocked.Decrement(ref s_count); // full: the surplus is left to the GC
    }

    private void Run()
    {
        var callback = _callback!;
        var state = _state;
        _callback = null;
        _state = default!; // do not keep the request's state alive while the item idles in the pool
        try
        {
            callback(state);
        }
        finally
        {
            // Returned after the callback, not before: a renter re-queueing it while the callback still ran
            // would be a re-queue of a running item, which the workqueue serializes behind this one. What the
            // worker does after the function returns touches only the WorkStruct's own bookkeeping, which
            // a re-queue is allowed to race with (the kernel lets a work function free its own work_struct).
            Return(this);
        }
    }
}
