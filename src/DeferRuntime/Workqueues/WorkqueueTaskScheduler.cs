namespace DeferRuntime.Workqueues;

/// <summary>
/// How async code reaches a workqueue (DESIGN §5): a <see cref="TaskScheduler"/> that queues each task as
/// a work item of the workqueue, so it runs on that workqueue's workers with its concurrency, ordering
/// and flush semantics (an ordered workqueue runs its tasks one at a time in order; a flush waits for the
/// tasks queued before it). Work functions themselves stay synchronous: an <c>await</c> in a task
/// scheduled here resumes as a new task on the same workqueue.
/// </summary>
/// <remarks>
/// Each task gets its own work item (a Task is an allocation already), unlike the pre-allocated
/// <see cref="WorkStruct"/>s of the allocation-free API. Tasks run inline only on a worker that is
/// running an item of the same workqueue, never elsewhere, so a task never escapes its workqueue.
/// </remarks>
internal sealed class WorkqueueTaskScheduler : TaskScheduler
{
    private readonly Workqueue _wq;

    public WorkqueueTaskScheduler(Workqueue wq) => _wq = wq;

    public override int MaximumConcurrencyLevel => _wq.IsOrdered ? 1 : _wq.MaxActive * _wq.Pwqs.Length;

    protected override void QueueTask(Task task)
    {
        _wq.Queue(new TaskWork(this, task));
    }

    protected override bool TryExecuteTaskInline(Task task, bool taskWasPreviouslyQueued) =>
        !taskWasPreviouslyQueued && !_wq.IsOrdered && Worker.Current is { CurrentPwq: { } running } && ReferenceEquals(running.Wq, _wq) && TryExecuteTask(task);

    protected override IEnumerable<Task>? GetScheduledTasks() => null; // not tracked (debugger support only)

    private void Execute(Task task) => TryExecuteTask(task);

    /// <summary>One task as a work item.</summary>
    private sealed class TaskWork : WorkStruct
    {
        private readonly WorkqueueTaskScheduler _scheduler;
        private readonly Task _task;

        public TaskWork(WorkqueueTaskScheduler scheduler, Task task)
            : base(static w => ((TaskWork)w).Run(), "task")
        {
            _scheduler = scheduler;
            _task = task;
        }

        private void Run() => _scheduler.Execute(_task);
    }
}
