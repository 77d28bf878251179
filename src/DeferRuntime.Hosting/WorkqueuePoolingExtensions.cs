using System.ComponentModel;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Hosting;

/// <summary>
/// The pooled-work API as it first shipped here, in the Hosting package: it now lives in the core library
/// as <see cref="Workqueue.QueuePooled{TState}"/> and <see cref="Workqueue.QueuePooledOn{TState}"/>
/// (instance methods, which <c>wq.QueuePooled(...)</c> binds to whether or not this namespace is imported).
/// Kept so that code calling these methods by their class name still compiles and runs the same.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public static class WorkqueuePoolingExtensions
{
    /// <summary>Idle items kept per state type: <see cref="Workqueue.MaxPooledPerStateType"/>.</summary>
    public static readonly int MaxRetainedPerStateType = Workqueue.MaxPooledPerStateType;

    /// <summary><see cref="Workqueue.QueuePooled{TState}"/>.</summary>
    public static void QueuePooled<TState>(this Workqueue wq, TState state, Action<TState> callback)
    {
        ArgumentNullException.ThrowIfNull(wq);
        wq.QueuePooled(state, callback);
    }

    /// <summary><see cref="Workqueue.QueuePooledOn{TState}"/>.</summary>
    public static void QueuePooledOn<TState>(this Workqueue wq, int cpu, TState state, Action<TState> callback)
    {
        ArgumentNullException.ThrowIfNull(wq);
        wq.QueuePooledOn(cpu, state, callback);
    }
}
