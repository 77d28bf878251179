using DeferRuntime.Cpus;

namespace DeferRuntime.Tests.Workqueues;

/// <summary>Async code reaches a workqueue through its TaskScheduler (DESIGN §5).</summary>
public class TaskSchedulerTests
{
    [Fact]
    public void Tasks_on_an_ordered_workqueue_run_one_at_a_time_in_order_on_its_workers()
    {
        using var rt = TestRuntime.Boot(2);
        using var wq = rt.AllocOrderedWorkqueue("tasks");
        var order = new List<int>();
        var meter = new OverlapMeter();
        var tasks = Enumerable.Range(0, 200).Select(i => Task.Factory.StartNew(() =>
        {
            meter.Enter();
            order.Add(i);
            Assert.StartsWith("kworker/u", Thread.CurrentThread.Name, StringComparison.Ordinal);
            meter.Exit();
        }, CancellationToken.None, TaskCreationOptions.None, wq.TaskScheduler)).ToArray();
        Assert.All(tasks, t => Assert.True(((IAsyncResult)t).AsyncWaitHandle.WaitOne(Wait.Ceiling)));
        Assert.All(tasks, t => Assert.True(t.IsCompletedSuccessfully));
        Assert.Equal(Enumerable.Range(0, 200), order);
        Assert.Equal(1, meter.Max);
        Assert.Equal(1, wq.TaskScheduler.MaximumConcurrencyLevel);
    }

    [Fact]
    public void Await_resumes_on_the_same_workqueue_and_flush_waits_for_queued_tasks()
    {
        using var rt = TestRuntime.Boot(2);
        using var wq = rt.AllocWorkqueue("async");
        var threads = new System.Collections.Concurrent.ConcurrentQueue<(string? Name, int Cpu)>();
        async Task Body()
        {
            threads.Enqueue((Thread.CurrentThread.Name, CpuContext.CurrentCpuId));
            await Task.Yield();
            threads.Enqueue((Thread.CurrentThread.Name, CpuContext.CurrentCpuId));
            // Not a wait for anything: a timer-completed await resumes from the runtime's timer thread,
            // the case that must still come back to the workqueue. Nothing here depends on its length.
            await Task.Delay(1);
            threads.Enqueue((Thread.CurrentThread.Name, CpuContext.CurrentCpuId));
        }
        var task = Task.Factory.StartNew(Body, CancellationToken.None, TaskCreationOptions.None, wq.TaskScheduler).Unwrap();
        // Blocking on purpose: resuming a test continuation on a kworker would run the runtime's Dispose there.
        Assert.True(((IAsyncResult)task).AsyncWaitHandle.WaitOne(Wait.Ceiling));
        Assert.True(task.IsCompletedSuccessfully, task.Exception?.ToString());
        Assert.Equal(3, threads.Count);
        Assert.All(threads, t => Assert.StartsWith("kworker/", t.Name, StringComparison.Ordinal));
        Assert.All(threads, t => Assert.InRange(t.Cpu, 0, 1));

        int ran = 0;
        for (int i = 0; i < 50; i++)
        {
            _ = Task.Factory.StartNew(() => Interlocked.Increment(ref ran), CancellationToken.None, TaskCreationOptions.None, wq.TaskScheduler);
        }
        wq.Flush();
        Assert.Equal(50, Volatile.Read(ref ran));
    }

    [Fact]
    public void Bh_workqueues_have_no_task_scheduler()
    {
        using var rt = TestRuntime.Boot(1);
        Assert.Throws<InvalidOperationException>(() => rt.SystemBhWq.TaskScheduler);
    }
}
