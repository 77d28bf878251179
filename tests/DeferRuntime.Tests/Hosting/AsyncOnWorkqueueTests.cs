using DeferRuntime.Hosting;
using DeferRuntime.Workqueues;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace DeferRuntime.Tests.Hosting;

public sealed class AsyncOnWorkqueueTests
{
    /// <summary>Where the calling code runs: a worker running an item of <paramref name="wq"/>, or not.</summary>
    private static bool OnWorkerOf(Workqueue wq) => Worker.Current is { CurrentPwq: { } pwq } && ReferenceEquals(pwq.Wq, wq);

    [Fact]
    public async Task The_TaskScheduler_of_a_DI_workqueue_runs_the_task_and_its_continuations_on_its_workers()
    {
        var logs = new CapturingLoggerProvider();
        using var host = TestHost.Build(logs, b => b.AddWorkqueue("hosting-tasks", WorkqueueFlags.Unbound, maxActive: 2));
        await host.StartAsync();
        var wq = host.Services.GetRequiredKeyedService<Workqueue>("hosting-tasks");
        var places = new List<(bool OnWorker, string? Thread)>();

        await Task.Factory.StartNew(async () =>
        {
            places.Add((OnWorkerOf(wq), Thread.CurrentThread.Name));
            await Task.Yield(); // queued back to TaskScheduler.Current: this workqueue
            places.Add((OnWorkerOf(wq), Thread.CurrentThread.Name));
            await Task.Delay(1); // resumed from a timer thread, by way of the captured scheduler
            places.Add((OnWorkerOf(wq), Thread.CurrentThread.Name));
        }, CancellationToken.None, TaskCreationOptions.None, wq.TaskScheduler).Unwrap().WaitAsync(Wait.Ceiling);

        Assert.Equal(3, places.Count);
        Assert.All(places, p =>
        {
            Assert.True(p.OnWorker, $"ran on {p.Thread}, not a worker of the workqueue");
            Assert.StartsWith("kworker/u", p.Thread, StringComparison.Ordinal);
        });
        await host.StopAsync();
    }

    [Fact]
    public async Task The_SynchronizationContext_posts_to_the_workqueue_and_awaits_come_back_to_it()
    {
        using var runtime = TestRuntime.Boot(2);
        var wq = runtime.AllocOrderedWorkqueue("hosting-syncctx");
        var context = new WorkqueueSynchronizationContext(wq);
        var done = new TaskCompletionSource<(bool Before, bool After, bool ContextAfter)>(TaskCreationOptions.RunContinuationsAsynchronously);

        context.Post(async _ =>
        {
            bool before = OnWorkerOf(wq);
            await Task.Delay(1); // captures the context: the continuation is posted back to the workqueue
            done.SetResult((before, OnWorkerOf(wq), ReferenceEquals(SynchronizationContext.Current, context)));
        }, null);
        var (onBefore, onAfter, contextAfter) = await done.Task.WaitAsync(Wait.Ceiling);
        Assert.True(onBefore);
        Assert.True(onAfter);
        Assert.True(contextAfter);

        // Send runs on the workqueue and waits; what the callback throws comes back to the sender.
        bool sent = false;
        context.Send(_ => sent = OnWorkerOf(wq), null);
        Assert.True(sent);
        var error = Assert.Throws<InvalidOperationException>(() => context.Send(_ => throw new InvalidOperationException("hosting-send"), null));
        Assert.Equal("hosting-send", error.Message);
        Assert.Throws<ArgumentException>(() => new WorkqueueSynchronizationContext(runtime.SystemBhWq));
    }

    [Fact]
    public void QueuePooled_runs_every_callback_once_with_its_own_state_from_many_threads()
    {
        using var runtime = TestRuntime.Boot(2);
        var wq = runtime.AllocWorkqueue("hosting-pooled", WorkqueueFlags.Unbound, maxActive: 8);
        const int Threads = 4, PerThread = 2_000;
        var seen = new int[Threads * PerThread];
        var producers = Enumerable.Range(0, Threads).Select(t => Guarded.Start(() =>
        {
            for (int i = 0; i < PerThread; i++)
            {
                wq.QueuePooled((Seen: seen, Index: (t * PerThread) + i), static s => Interlocked.Increment(ref s.Seen[s.Index]));
            }
        }, $"pooled-producer-{t}")).ToArray();
        foreach (var p in producers)
        {
            p.Join();
        }
        wq.Flush();
        Assert.All(seen, n => Assert.Equal(1, n));
    }

    [Fact]
    public void The_hosting_extension_class_still_queues_pooled_work_through_the_core()
    {
        using var runtime = TestRuntime.Boot(1);
        var wq = runtime.AllocWorkqueue("hosting-pooled-compat", WorkqueueFlags.Unbound);
        int ran = 0;
        WorkqueuePoolingExtensions.QueuePooled(wq, 1, n => Interlocked.Add(ref ran, n));
        WorkqueuePoolingExtensions.QueuePooledOn(wq, 0, 2, n => Interlocked.Add(ref ran, n));
        wq.Flush();
        Assert.Equal(3, ran);
        Assert.Equal(Workqueue.MaxPooledPerStateType, WorkqueuePoolingExtensions.MaxRetainedPerStateType);
    }
}
