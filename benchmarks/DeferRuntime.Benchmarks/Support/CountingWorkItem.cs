namespace DeferRuntime.Benchmarks.Support;

/// <summary>
/// The peers' deferred callback: a pre-allocated <see cref="IThreadPoolWorkItem"/>, so the thread pool
/// runs it with no delegate, closure or Task, and the same object can travel through a queue or a
/// channel, as a pre-allocated tasklet does. Each run bumps the counter of its benchmark.
/// </summary>
internal sealed class CountingWorkItem : IThreadPoolWorkItem
{
    private readonly DoneCounter _done;
    private readonly bool _concurrent;

    /// <param name="done">The counter each run bumps.</param>
    /// <param name="concurrent">True when several threads may run items of this counter at once (thread-pool workers): the bump is then an Interlocked add.</param>
    public CountingWorkItem(DoneCounter done, bool concurrent)
    {
        _done = done;
        _concurrent = concurrent;
    }

    public void Execute()
    {
        ThreadAffinity.WidenPoolThread();
        if (_concurrent)
        {
            Interlocked.Increment(ref _done.Line.Value);
        }
        else
        {
            // One runner at a time: a plain increment, published with a release store for the spinner.
            Volatile.Write(ref _done.Line.Value, _done.Line.Value + 1);
        }
    }
}
