namespace DeferRuntime.Benchmarks.Support;

/// <summary>
/// The thread-pool peer of a work item that queues work on its own CPU's pool: run by a pool worker, it
/// queues every item with preferLocal, onto that worker's local queue.
/// </summary>
internal sealed class LocalQueueDriver(CountingWorkItem[] items) : IThreadPoolWorkItem
{
    public int Count => items.Length;

    public void Execute()
    {
        ThreadAffinity.WidenPoolThread();
        foreach (var item in items)
        {
            ThreadPool.UnsafeQueueUserWorkItem(item, preferLocal: true);
        }
    }
}
