using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using DeferRuntime.Diagnostics;
using DeferRuntime.Hosting;
using DeferRuntime.Interrupts;
using DeferRuntime.Softirqs;
using DeferRuntime.Workqueues;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace DeferRuntime.Tests.Hosting;

public sealed class HostingMetricsTests
{
    /// <summary>What a MeterListener saw: the last value of each observable series, every histogram sample.</summary>
    private sealed class Observed
    {
        public ConcurrentDictionary<string, long> Last { get; } = new();
        public ConcurrentQueue<(string Instrument, double Value, string Tags)> Samples { get; } = new();

        public static string Key(string instrument, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            var parts = new List<string>();
            foreach (var t in tags)
            {
                parts.Add($"{t.Key}={t.Value}");
            }
            parts.Sort(StringComparer.Ordinal);
            return $"{instrument}[{string.Join(",", parts)}]";
        }

        public long Sum(string instrument, string containing) =>
            Last.Where(kv => kv.Key.StartsWith(instrument + "[", StringComparison.Ordinal) && kv.Key.Contains(containing, StringComparison.Ordinal)).Sum(kv => kv.Value);
    }

    [Fact]
    public async Task The_DeferRuntime_meter_counts_what_ran_and_feeds_the_latency_histograms_while_listened()
    {
        var logs = new CapturingLoggerProvider();
        using var host = TestHost.Build(logs, b => b.AddWorkqueue("hosting-metrics", WorkqueueFlags.Unbound, maxActive: 2));
        await host.StartAsync();
        var runtime = host.Services.GetRequiredService<Runtime>();
        var factory = host.Services.GetRequiredService<IMeterFactory>();
        var wq = host.Services.GetRequiredKeyedService<Workqueue>("hosting-metrics");

        // Only this host's meter: the factory scopes it, so parallel tests' runtimes are not counted here.
        var seen = new Observed();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == RuntimeMetrics.MeterName && ReferenceEquals(instrument.Meter.Scope, factory))
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((i, v, tags, _) => seen.Last[Observed.Key(i.Name, tags)] = v);
        listener.SetMeasurementEventCallback<int>((i, v, tags, _) => seen.Last[Observed.Key(i.Name, tags)] = v);
        listener.SetMeasurementEventCallback<double>((i, v, tags, _) => seen.Samples.Enqueue((i.Name, v, Observed.Key(i.Name, tags))));
        listener.Start();

        const int Items = 100;
        for (int i = 0; i < Items; i++)
        {
            wq.QueuePooled(0, _ => { });
        }
        wq.Flush();

        var tasklet = runtime.CreateTasklet(_ => { }, "hosting-metrics-tasklet");
        for (int i = 0; i < 5; i++)
        {
            long before = tasklet.RunCount;
            tasklet.Schedule();
            Wait.Until(() => tasklet.RunCount > before && !tasklet.IsRunning, "the tasklet to run");
        }

        int irq = runtime.Irqs.AllocateIrq();
        long handled = 0;
        using var line = runtime.Irqs.RequestIrq(irq, (_, _) =>
        {
            Interlocked.Increment(ref handled);
            return IrqReturn.Handled;
        }, IrqFlags.None, "hosting-metrics-irq");
        for (int i = 0; i < 3; i++)
        {
            runtime.Irqs.AssertEdge(irq);
            Wait.Until(() => Interlocked.Read(ref handled) == i + 1, "the handler to run");
        }
        runtime.Irqs.SynchronizeIrq(irq); // the run is counted after the handler returns

        listener.RecordObservableInstruments();

        Assert.Equal(Items, seen.Last["deferruntime.work.queued[workqueue=hosting-metrics]"]);
        Assert.Equal(Items, seen.Last["deferruntime.work.executed[workqueue=hosting-metrics]"]);
        Assert.Equal(tasklet.RunCount, seen.Sum("deferruntime.tasklet.count", "cpu="));
        Assert.Equal(runtime.Cpus.Sum(c => c.GetSoftirqCount(SoftirqVector.Tasklet)), seen.Sum("deferruntime.softirq.count", "vector=TASKLET"));
        Assert.True(seen.Sum("deferruntime.softirq.count", "vector=TASKLET") >= 5);
        Assert.Equal(3, seen.Sum("deferruntime.irq.count", $"line={irq}]"));
        Assert.True(seen.Sum("deferruntime.workqueue.workers", "state=total") >= 1);
        Assert.Contains(seen.Last.Keys, k => k.StartsWith("deferruntime.softirq.ksoftirqd_wakeups[cpu=", StringComparison.Ordinal));
        Assert.Equal(0, seen.Last["deferruntime.faults[]"]);

        // Histograms: one queue-to-start sample per item (the listener was on before they were queued),
        // and raise-to-entry samples for the tasklet softirq.
        Assert.Equal(Items, seen.Samples.Count(s => s.Tags == "deferruntime.work.queue_latency[workqueue=hosting-metrics]"));
        Assert.All(seen.Samples, s => Assert.True(s.Value >= 0));
        Assert.Contains(seen.Samples, s => s.Tags == "deferruntime.softirq.raise_latency[vector=TASKLET]");

        await host.StopAsync();
    }

    [Fact]
    public void A_runtime_publishes_on_one_RuntimeMetrics_at_a_time()
    {
        using var runtime = TestRuntime.Boot(1);
        using var meter = new Meter(RuntimeMetrics.MeterName);
        using (RuntimeMetrics.Create(runtime, meter))
        {
            Assert.Throws<InvalidOperationException>(() => RuntimeMetrics.Create(runtime));
        }
        using var again = RuntimeMetrics.Create(runtime); // detached by the dispose above
        Assert.Equal(RuntimeMetrics.MeterName, again.Meter.Name);
    }
}
