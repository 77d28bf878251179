using System.Diagnostics;
using DeferRuntime.Hosting;
using DeferRuntime.Interrupts;
using DeferRuntime.Locking;
using DeferRuntime.Workqueues;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace DeferRuntime.Tests.Hosting;

public sealed class HostingLifecycleTests
{
    [Fact]
    public async Task Host_start_boots_the_runtime_and_stop_drains_every_accepted_item()
    {
        var logs = new CapturingLoggerProvider();
        using var host = TestHost.Build(logs, b => b.AddWorkqueue("hosting-drain", WorkqueueFlags.Unbound, maxActive: 4));
        await host.StartAsync();

        var runtime = host.Services.GetRequiredService<Runtime>();
        Assert.False(runtime.IsShutDown);
        Assert.Equal(2, runtime.Cpus.Count);
        var wq = host.Services.GetRequiredKeyedService<Workqueue>("hosting-drain");
        Assert.Same(wq, host.Services.GetRequiredService<DeferRuntimeHost>().GetWorkqueue("hosting-drain"));
        Assert.Equal(WorkqueueFlags.Unbound, wq.Flags);
        Assert.Equal(4, wq.MaxActive);

        // Accepted work that cannot finish before the stop begins: every item waits on a gate that opens
        // only once shutdown has started; a tasklet queues more (work chained from a bottom half).
        const int Items = 200;
        const int Chained = 50;
        var gate = new Completion();
        long ran = 0;
        for (int i = 0; i < Items; i++)
        {
            wq.QueuePooled(gate, g =>
            {
                g.WaitForCompletion();
                Interlocked.Increment(ref ran);
            });
        }
        var chain = runtime.CreateTasklet(_ =>
        {
            for (int i = 0; i < Chained; i++)
            {
                wq.QueuePooled(0, _ => Interlocked.Increment(ref ran));
            }
        }, "hosting-chain");
        chain.Schedule();
        var far = new DelayedWork(_ => Interlocked.Increment(ref ran), "hosting-far");
        runtime.SystemWq.QueueDelayed(far, TimeSpan.FromHours(1)); // armed, not due: not run early

        var stop = host.StopAsync();
        Wait.Until(() => runtime.IsShutDown, "the hosted service to begin the runtime's shutdown");
        Assert.Throws<ObjectDisposedException>(() => wq.QueuePooled(0, _ => { })); // no new work from outside
        gate.CompleteAll();
        await stop.WaitAsync(Wait.Ceiling);

        Assert.Equal(Items + Chained, Interlocked.Read(ref ran));
        var report = host.Services.GetRequiredService<DeferRuntimeHost>().ShutdownReport;
        Assert.NotNull(report);
        Assert.True(report.Completed, report.Abandoned);
        Assert.Equal(1, report.AbandonedDelayedWork);
        Assert.Single(logs.For(22)); // "stopped: everything accepted ran"
        Assert.Single(logs.For(24)); // the armed timer, reported
        // Nothing went wrong (lock-validator reports, id 14, are process-wide: other tests make them on purpose).
        Assert.DoesNotContain(logs.Entries, e => e.Level >= LogLevel.Warning && e.EventId.Id != 14);
    }

    [Fact]
    public async Task Stop_within_the_hosts_shutdown_timeout_logs_what_could_not_finish()
    {
        var logs = new CapturingLoggerProvider();
        using var host = TestHost.Build(logs, b => b.AddWorkqueue("hosting-stuck", WorkqueueFlags.Unbound), shutdownTimeout: TimeSpan.FromSeconds(1));
        await host.StartAsync();
        var wq = host.Services.GetRequiredKeyedService<Workqueue>("hosting-stuck");
        using var stuck = new ManualResetEventSlim();
        using var started = new ManualResetEventSlim();
        var item = new WorkStruct(_ =>
        {
            started.Set();
            stuck.Wait(); // not a runtime primitive, and released only after the stop returned
        }, "hosting-stuck-item");
        wq.Queue(item);
        Wait.For(started, "the stuck item to start");

        try
        {
            // The host's token fires after 1 s; the drain gives up, the threads are stopped, the stop returns.
            await host.StopAsync().WaitAsync(Wait.Ceiling);
        }
        finally
        {
            stuck.Set();
        }

        var report = host.Services.GetRequiredService<DeferRuntimeHost>().ShutdownReport;
        Assert.NotNull(report);
        Assert.False(report.Completed);
        Assert.True(report.Cancelled);
        Assert.Contains("hosting-stuck", report.Abandoned, StringComparison.Ordinal);
        var warning = Assert.Single(logs.For(23));
        Assert.Equal(LogLevel.Warning, warning.Level);
        Assert.Contains("work 'hosting-stuck-item' on workqueue 'hosting-stuck' (CPU 0): still running on kworker/u", warning.Message, StringComparison.Ordinal);
        Assert.Equal("hosting-stuck-item", Assert.Single(report.StillRunning).Name);
        var itemLog = Assert.Single(logs.For(27));
        Assert.Contains("StillRunning Work 'hosting-stuck-item' (workqueue hosting-stuck", itemLog.Message, StringComparison.Ordinal);
        Assert.Contains("host's shutdown timeout", warning.Message, StringComparison.Ordinal);
        // Its kworker never came back from the item (released only after the stop returned): named, left behind.
        var kworker = Assert.Single(report.StuckThreads, t => t.Running == "work item 'hosting-stuck-item'");
        Assert.StartsWith("kworker/u", kworker.Thread, StringComparison.Ordinal);
        Assert.Contains($"threads left running: {kworker}", warning.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Stop_frees_the_irq_lines_left_requested()
    {
        var logs = new CapturingLoggerProvider();
        using var host = TestHost.Build(logs);
        await host.StartAsync();
        var runtime = host.Services.GetRequiredService<Runtime>();
        int irq = runtime.Irqs.AllocateIrq();
        long handled = 0;
        var action = runtime.Irqs.RequestIrq(irq, (_, _) =>
        {
            Interlocked.Increment(ref handled);
            return IrqReturn.Handled;
        }, IrqFlags.None, "hosting-line");
        runtime.Irqs.AssertEdge(irq);
        Wait.Until(() => Interlocked.Read(ref handled) == 1, "the handler to run");

        await host.StopAsync().WaitAsync(Wait.Ceiling);

        Assert.True(action.IsFreed);
        Assert.Contains("1 IRQ action", Assert.Single(logs.For(21)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Workqueues_resolve_by_name_and_bad_registrations_fail_the_start()
    {
        var logs = new CapturingLoggerProvider();
        using (var host = TestHost.Build(logs, b => b.AddOrderedWorkqueue("hosting-ordered").AddWorkqueue("hosting-hi", WorkqueueFlags.HighPri)))
        {
            await host.StartAsync();
            var named = host.Services.GetRequiredService<DeferRuntimeHost>();
            Assert.True(host.Services.GetRequiredKeyedService<Workqueue>("hosting-ordered").IsOrdered);
            Assert.Equal(WorkqueueFlags.HighPri, host.Services.GetRequiredKeyedService<Workqueue>("hosting-hi").Flags);
            Assert.Same(host.Services.GetRequiredService<Runtime>().SystemUnboundWq, named.GetWorkqueue("events_unbound"));
            Assert.Throws<KeyNotFoundException>(() => named.GetWorkqueue("nope"));
            Assert.Equal(2, named.Workqueues.Count);
            await host.StopAsync();
        }
        Assert.Throws<InvalidOperationException>(() => TestHost.Build(logs, b => b.AddWorkqueue("twice").AddWorkqueue("twice")));

        using var bad = TestHost.Build(logs, b => b.AddWorkqueue("hosting-bad", WorkqueueFlags.Bh | WorkqueueFlags.Unbound));
        var error = await Assert.ThrowsAsync<ArgumentException>(() => bad.StartAsync());
        Assert.Contains("WQ_BH", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_container_without_a_host_shuts_the_runtime_down_when_disposed()
    {
        var services = new ServiceCollection();
        services.AddDeferRuntime(o =>
        {
            o.CpuCount = 1;
            o.Priorities = PriorityPolicy.None;
        }).AddWorkqueue("hosting-nohost");
        Runtime runtime;
        long ran = 0;
        using (var provider = services.BuildServiceProvider())
        {
            runtime = provider.GetRequiredService<Runtime>();
            var wq = provider.GetRequiredKeyedService<Workqueue>("hosting-nohost");
            for (int i = 0; i < 10; i++)
            {
                wq.QueuePooled(0, _ => Interlocked.Increment(ref ran));
            }
        }
        Assert.True(runtime.IsShutDown);
        Assert.Equal(10, Interlocked.Read(ref ran));
    }
}
