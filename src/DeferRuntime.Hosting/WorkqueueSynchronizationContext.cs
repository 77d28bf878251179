using System.Runtime.ExceptionServices;
using DeferRuntime.Cpus;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Hosting;

/// <summary>
/// A <see cref="SynchronizationContext"/> over a workqueue: <see cref="Post"/> queues the callback as a
/// (pooled) work item, so code that captures the context (an <c>await</c> without ConfigureAwait(false),
/// UI-style libraries) continues on the workqueue's workers, with its concurrency, ordering and flush
/// semantics: on an ordered workqueue, posted callbacks run one at a time in order.
/// </summary>
/// <remarks>
/// The context is current while a callback it posted runs, so continuations captured there come back
/// here. Work functions stay synchronous (DESIGN §5): each continuation is a work item of its own. For TPL
/// code, <see cref="Workqueue.TaskScheduler"/> does the same for tasks. A callback that throws is reported
/// as an oops in <see cref="Runtime.Faults"/> (an <c>async void</c> method's exception lands there).
/// </remarks>
public sealed class WorkqueueSynchronizationContext : SynchronizationContext
{
    /// <summary>A context that posts to <paramref name="workqueue"/> (not a bh workqueue: continuations may block).</summary>
    public WorkqueueSynchronizationContext(Workqueue workqueue)
    {
        ArgumentNullException.ThrowIfNull(workqueue);
        if ((workqueue.Flags & WorkqueueFlags.Bh) != 0)
        {
            throw new ArgumentException($"WorkqueueSynchronizationContext on bh workqueue '{workqueue.Name}': continuations may block and await, softirq context may not.", nameof(workqueue));
        }
        Workqueue = workqueue;
    }

    /// <summary>The workqueue callbacks are posted to.</summary>
    public Workqueue Workqueue { get; }

    /// <summary>queue_work() of <paramref name="d"/>(<paramref name="state"/>): returns at once; allocation-free once warm.</summary>
    public override void Post(SendOrPostCallback d, object? state)
    {
        ArgumentNullException.ThrowIfNull(d);
        Workqueue.QueuePooled((Context: this, Callback: d, State: state), static s => s.Context.Invoke(s.Callback, s.State));
    }

    /// <summary>
    /// Runs <paramref name="d"/> on the workqueue and waits for it, rethrowing what it threw; inline if the
    /// caller already runs a callback of this context. Waiting is refused in atomic context.
    /// </summary>
    public override void Send(SendOrPostCallback d, object? state)
    {
        ArgumentNullException.ThrowIfNull(d);
        if (ReferenceEquals(Current, this))
        {
            d(state);
            return;
        }
        if (CpuContext.InAtomic)
        {
            throw new InvalidOperationException($"WorkqueueSynchronizationContext.Send() on workqueue '{Workqueue.Name}' from atomic context: it waits for a work item; use Post().");
        }
        using var done = new ManualResetEventSlim();
        ExceptionDispatchInfo? error = null;
        Post(_ =>
        {
            try
            {
                d(state);
            }
#pragma warning disable CA1031 // rethrown on the sending thread
            catch (Exception e)
#pragma warning restore CA1031
            {
                error = ExceptionDispatchInfo.Capture(e);
            }
            finally
            {
                done.Set();
            }
        }, null);
        done.Wait();
        error?.Throw();
    }

    /// <summary>The context is stateless beyond its workqueue: copies are the context itself.</summary>
    public override SynchronizationContext CreateCopy() => this;

    private void Invoke(SendOrPostCallback callback, object? state)
    {
        var previous = Current;
        SetSynchronizationContext(this);
        try
        {
            callback(state);
        }
        finally
        {
            SetSynchronizationContext(previous);
        }
    }
}
