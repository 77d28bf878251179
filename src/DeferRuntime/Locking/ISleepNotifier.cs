namespace DeferRuntime.Locking;

/// <summary>
/// wq_worker_sleeping() / wq_worker_running(): how a worker pool learns that one of its workers blocked
/// in a runtime primitive and resumed, so concurrency management can start another worker meanwhile.
/// The workqueue subsystem installs one on each worker thread's context, and each irq thread is its own
/// (both leave their core's run queue while they block: the scheduler's dequeue on sleep).
/// </summary>
internal interface ISleepNotifier
{
    /// <summary>Called on the worker's own thread just before it blocks.</summary>
    void Sleeping();

    /// <summary>Called on the worker's own thread when it runs again.</summary>
    void Running();
}
