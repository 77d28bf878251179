using System.Diagnostics;
using DeferRuntime.Workqueues;
using Microsoft.Extensions.ObjectPool;

namespace DeferRuntime.Hosting;

/// <summary>
/// queue_work() of a fresh callback per request without allocating per call: the work item is rented from
/// an <see cref="ObjectPool{T}"/> and returned after its function has run.
/// </summary>
/// <remarks>
/// <para>The allocation-free workqueue API wants a <see cref="WorkStruct"/> allocated once and queued many
/// times, which suits a driver with one deferred job. A service queues a different job per request, with
/// its own state; allocating a WorkStruct (and a closure) per request puts the GC on the request path. Here
/// the state travels in a pooled, typed item (no boxing, no closure: pass a static lambda), so the steady
/// state allocates nothing.</para>
/// <para>A pooled item is fire-and-forget: it cannot be flushed or cancelled by itself (it may already be
/// serving another request). <see cref="Workqueue.Flush"/>, <see cref="Workqueue.Drain"/> and shutdown
/// count it like any item. Each state type has its own pool, shared by every workqueue and runtime in the
/// process, retaining up to <see cref="MaxRetainedPerStateType"/> idle items; a burst beyond that
/// allocates, and the surplus is left to the GC when it comes back.</para>
/// </remarks>
public static class WorkqueuePoolingExtensions
{
    /// <summary>Idle items kept per state type: 64 per processor, at least 256.</summary>
    public static readonly int MaxRetainedPerStateType = Math.Max(256, Environment.ProcessorCount * 64);

    /// <summary>
    /// queue_work() of <paramref name="callback"/>(<paramref name="state"/>) on <paramref name="wq"/>, in a
    /// pooled work item: allocation-free once the pool is warm (pass a static lambda). Runs once, in
    /// process context on the workqueue's worker (softirq context on a bh workqueue). Callable from any
    /// context, like queue_work(). Throws what queue_work() throws (the runtime shut down, the workqueue
    /// destroyed or draining).
    /// </summary>
    public static void QueuePooled<TState>(this Workqueue wq, TState state, Action<TState> callback)
    {
        ArgumentNullException.ThrowIfNull(wq);
        ArgumentNullException.ThrowIfNull(callback);
        var work = PooledWork<TState>.Rent(state, callback);
        try
        {
            bool queued = wq.Queue(work);
            Debug.Assert(queued, "a rented item is never pending");
        }
        catch
        {
            work.Abandon();
            throw;
        }
    }

    /// <summary>queue_work_on(): as <see cref="QueuePooled"/>, on CPU <paramref name="cpu"/>'s pool.</summary>
    public static void QueuePooledOn<TState>(this Workqueue wq, int cpu, TState state, Action<TState> callback)
    {
        ArgumentNullException.ThrowIfNull(wq);
        ArgumentNullException.ThrowIfNull(callback);
        var work = PooledWork<TState>.Rent(state, callback);
        try
        {
            bool queued = wq.QueueOn(cpu, work);
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
    private static readonly ObjectPool<PooledWork<TState>> Pool =
        new DefaultObjectPool<PooledWork<TState>>(new Policy(), WorkqueuePoolingExtensions.MaxRetainedPerStateType);

    // Set by the renter before queue_work() (whose full barrier publishes them to the worker), cleared
    // by the worker before the item goes back to the pool.
    private TState _state = default!;
    private Action<TState>? _callback;

    private PooledWork()
        : base(static w => ((PooledWork<TState>)w).Run(), $"pooled<{typeof(TState).Name}>")
    {
    }

    public static PooledWork<TState> Rent(TState state, Action<TState> callback)
    {
        var work = Pool.Get();
        work._state = state;
        work._callback = callback;
        return work;
    }

    /// <summary>queue_work() refused it: back to the pool unqueued.</summary>
    public void Abandon()
    {
        _callback = null;
        _state = default!;
        Pool.Return(this);
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
            Pool.Return(this);
        }
    }

    private sealed class Policy : IPooledObjectPolicy<PooledWork<TState>>
    {
        public PooledWork<TState> Create() => new();

        public bool Return(PooledWork<TState> obj) => true;
    }
}
