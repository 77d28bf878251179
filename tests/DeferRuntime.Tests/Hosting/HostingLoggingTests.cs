using DeferRuntime.Diagnostics;
using DeferRuntime.Locking;
using DeferRuntime.Workqueues;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace DeferRuntime.Tests.Hosting;

public sealed class HostingLoggingTests
{
    [Fact]
    public async Task A_throwing_tasklet_is_logged_as_an_oops_with_its_exception()
    {
        var logs = new CapturingLoggerProvider();
        using var host = TestHost.Build(logs);
        await host.StartAsync();
        var runtime = host.Services.GetRequiredService<Runtime>();
        var boom = runtime.CreateTasklet(_ => throw new InvalidOperationException("hosting-boom"), "hosting-throwing");
        boom.Schedule();
        Wait.Until(() => logs.For(10).Any(), "the oops to be logged");

        var oops = Assert.Single(logs.For(10));
        Assert.Equal(LogLevel.Error, oops.Level);
        Assert.Contains("tasklet 'hosting-throwing'", oops.Message, StringComparison.Ordinal);
        Assert.Equal("hosting-boom", oops.Exception?.Message);
        Assert.Equal(FaultKind.Oops, Assert.Single(runtime.Faults.Recent).Kind);
        await host.StopAsync();
    }

    [Fact]
    public async Task A_workqueue_stall_is_logged_by_the_watchdog()
    {
        var logs = new CapturingLoggerProvider();
        using var host = TestHost.Build(logs, b => b.AddWorkqueue("hosting-stall"), o =>
        {
            o.WorkqueueWatchdogThreshold = TimeSpan.FromMilliseconds(100);
            o.WorkqueueDetectBlockedOutside = false; // else the pool counts the blocker out and carries on
        });
        await host.StartAsync();
        var wq = host.Services.GetRequiredKeyedService<Workqueue>("hosting-stall");
        using var release = new ManualResetEventSlim();
        using var started = new ManualResetEventSlim();
        // The first item blocks outside the runtime's primitives, unseen with the detection off, so CPU 0's
        // pool still counts it running and starts nothing else: the second item waits, and the pool makes no progress.
        wq.QueueOn(0, new WorkStruct(_ =>
        {
            started.Set();
            release.Wait();
        }, "hosting-blocker"));
        Wait.For(started, "the blocker to start");
        wq.QueueOn(0, new WorkStruct(_ => { }, "hosting-starved"));
        try
        {
            Wait.Until(() => logs.For(13).Any(), "the watchdog's report to be logged");
        }
        finally
        {
            release.Set();
        }

        var stall = logs.For(13).First();
        Assert.Equal(LogLevel.Error, stall.Level);
        Assert.Contains("hosting-starved", stall.Message, StringComparison.Ordinal);
        Assert.Contains(host.Services.GetRequiredService<Runtime>().Faults.Recent, f => f.Kind == FaultKind.WorkqueueStall);
        await host.StopAsync();
    }

    [Fact]
    public async Task Lock_validator_reports_are_logged()
    {
        var logs = new CapturingLoggerProvider();
        var validator = new LockValidator(); // private: the default one must stay clean for the locking tests
        using var host = TestHost.Build(logs, b => b.Services.AddSingleton(validator));
        await host.StartAsync();
        var a = new KernelMutex("hosting-lockdep-a", validator);
        var b = new KernelMutex("hosting-lockdep-b", validator);
        using (a.Enter())
        using (b.Enter())
        {
        }
        using (b.Enter())
        using (a.Enter()) // b -> a after a -> b: an inversion, reported when possible, not when it deadlocks
        {
        }
        Wait.Until(() => logs.For(14).Any(), "the validator's report to be logged");

        var report = logs.For(14).First();
        Assert.Equal(LogLevel.Warning, report.Level);
        Assert.Contains("circular locking dependency", report.Message, StringComparison.Ordinal);
        Assert.Contains("hosting-lockdep-a", report.Message, StringComparison.Ordinal);
        await host.StopAsync();
    }
}
