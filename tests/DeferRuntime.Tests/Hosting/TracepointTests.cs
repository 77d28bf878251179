using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Diagnostics.Tracing;
using DeferRuntime.Diagnostics;
using DeferRuntime.Hosting;
using DeferRuntime.Interrupts;
using DeferRuntime.Softirqs;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Tests.Hosting;

/// <summary>
/// The tests that enable the process-wide DeferRuntime event source, and the ones that need it off, run
/// one at a time (an EventListener in one would put allocations in the other's hot paths).
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class TracepointGroup
{
    public const string Name = "DeferRuntime event source";
}

[Collection(TracepointGroup.Name)]
public sealed class TracepointTests
{
    private sealed class Capture : EventListener
    {
        // Initialised after the base constructor, which may already report the source: hence the ?. below.
        private readonly ConcurrentQueue<EventWrittenEventArgs> _events = new();

        public IReadOnlyCollection<EventWrittenEventArgs> Events => _events;

        protected override void OnEventSourceCreated(EventSource eventSource)
        {
            if (eventSource.Name == DeferRuntimeEventSource.SourceName)
            {
                EnableEvents(eventSource, EventLevel.Verbose, EventKeywords.All);
            }
        }

        protected override void OnEventWritten(EventWrittenEventArgs eventData) => _events?.Enqueue(eventData);
    }

    private static object? Payload(EventWrittenEventArgs e, string name) => e.PayloadNames!.IndexOf(name) is var i and >= 0 ? e.Payload![i] : null;

    [Fact]
    public void The_kernel_tracepoints_reach_an_EventListener_with_their_names_and_payloads()
    {
        using var runtime = TestRuntime.Boot(2);
        Assert.False(DeferRuntimeEventSource.WorkqueueOn);
        var capture = new Capture();
        try
        {
            Assert.True(DeferRuntimeEventSource.IrqOn && DeferRuntimeEventSource.SoftirqOn && DeferRuntimeEventSource.TaskletOn && DeferRuntimeEventSource.WorkqueueOn);

            int irq = runtime.Irqs.AllocateIrq();
            long handled = 0;
            using (runtime.Irqs.RequestIrq(irq, (_, _) =>
            {
                Interlocked.Increment(ref handled);
                return IrqReturn.Handled;
            }, IrqFlags.None, "tp-irq"))
            {
                runtime.Irqs.AssertEdge(irq);
                Wait.Until(() => Interlocked.Read(ref handled) == 1, "the handler to run");
                runtime.Irqs.SynchronizeIrq(irq);
            }

            var tasklet = runtime.CreateTasklet(_ => { }, "tp-tasklet");
            tasklet.Schedule();
            Wait.Until(() => tasklet.RunCount == 1 && !tasklet.IsRunning, "the tasklet to run");

            var wq = runtime.AllocOrderedWorkqueue("tp-wq");
            var work = new WorkStruct(_ => { }, "tp-work");
            wq.Queue(work);
            work.FlushWork();
            Wait.Until(() => capture.Events.Any(e => e.EventName == "workqueue_execute_end" && (string?)Payload(e, "function") == "tp-work"), "the execute_end event");
        }
        finally
        {
            capture.Dispose();
        }
        Assert.False(DeferRuntimeEventSource.WorkqueueOn); // the last session left: the hot paths are back to one branch
        var events = capture.Events.ToArray();

        var entry = Assert.Single(events, e => e.EventName == "irq_handler_entry" && (string?)Payload(e, "name") == "tp-irq");
        var exit = Assert.Single(events, e => e.EventName == "irq_handler_exit" && (string?)Payload(e, "name") == "tp-irq");
        Assert.Equal(1, (int)Payload(exit, "ret")!); // IRQ_HANDLED
        Assert.Equal(Payload(entry, "irq"), Payload(exit, "irq"));

        Assert.Single(events, e => e.EventName == "tasklet_entry" && (string?)Payload(e, "name") == "tp-tasklet");
        Assert.Single(events, e => e.EventName == "tasklet_exit" && (string?)Payload(e, "name") == "tp-tasklet");
        foreach (var name in new[] { "softirq_raise", "softirq_entry", "softirq_exit" })
        {
            Assert.Contains(events, e => e.EventName == name && (int)Payload(e, "vec")! == (int)SoftirqVector.Tasklet && (string?)Payload(e, "name") == "TASKLET");
        }

        var queued = Assert.Single(events, e => e.EventName == "workqueue_queue_work" && (string?)Payload(e, "function") == "tp-work");
        Assert.Equal("tp-wq", Payload(queued, "workqueue"));
        Assert.Equal(-1, Payload(queued, "req_cpu")); // queued from a thread of no CPU
        Assert.Equal(-1, Payload(queued, "cpu")); // an ordered workqueue is unbound
        object? id = Payload(queued, "work");
        var sequence = events.Where(e => e.EventName!.StartsWith("workqueue_", StringComparison.Ordinal) && Equals(Payload(e, "work"), id) && (string?)Payload(e, "function") == "tp-work")
            .Select(e => e.EventName!).ToArray();
        Assert.Equal(["workqueue_queue_work", "workqueue_activate_work", "workqueue_execute_start", "workqueue_execute_end"], sequence);
    }

    [Fact]
    public void With_nobody_listening_the_traced_paths_allocate_nothing_even_with_metrics_published()
    {
        using var runtime = TestRuntime.Boot(2);
        using var meter = new Meter(RuntimeMetrics.MeterName + ".test-off");
        using var metrics = RuntimeMetrics.Create(runtime, meter); // published, but no MeterListener enables it
        Assert.False(DeferRuntimeEventSource.IrqOn || DeferRuntimeEventSource.SoftirqOn || DeferRuntimeEventSource.TaskletOn || DeferRuntimeEventSource.WorkqueueOn);
        runtime.OpenSoftirq(SoftirqVector.Block, () => { });
        var wq = runtime.AllocWorkqueue("alloc-wq", WorkqueueFlags.Unbound);
        var work = new WorkStruct(_ => { }, "alloc-work");
        var tasklet = runtime.CreateTasklet(_ => { }, "alloc-tasklet");
        int irq = runtime.Irqs.AllocateIrq();
        using var line = runtime.Irqs.RequestIrq(irq, (_, _) => IrqReturn.Handled, IrqFlags.None, "alloc-irq");

        long allocated = 0;
        for (int round = 0; round < 200; round++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            wq.Queue(work);
            tasklet.Schedule();
            runtime.RaiseSoftirq(SoftirqVector.Block);
            runtime.Irqs.AssertEdge(irq);
            long spent = GC.GetAllocatedBytesForCurrentThread() - before;
            if (round >= 20)
            {
                allocated += spent; // after a warm-up (tiered JIT, first-use statics)
            }
            work.FlushWork();
            Wait.Until(() => !tasklet.IsScheduled && !tasklet.IsRunning, "the tasklet to run");
        }
        Assert.Equal(0, allocated);
    }

    /// <summary>A state type of this test alone, so its pool is not shared with other tests.</summary>
    private readonly record struct PooledProbe(int Value);

    private static long s_pooledSum;

    [Fact]
    public void QueuePooled_allocates_nothing_per_call_once_the_pool_is_warm()
    {
        using var runtime = TestRuntime.Boot(2);
        var wq = runtime.AllocWorkqueue("pooled-alloc", WorkqueueFlags.Unbound, maxActive: 4);
        Interlocked.Exchange(ref s_pooledSum, 0);
        long allocated = 0;
        const int Rounds = 20, PerRound = 64;
        for (int round = 0; round < Rounds; round++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < PerRound; i++)
            {
                wq.QueuePooled(new PooledProbe(i), static p => Interlocked.Add(ref s_pooledSum, p.Value));
            }
            long spent = GC.GetAllocatedBytesForCurrentThread() - before;
            wq.Flush(); // every item ran and is back in the pool (returned before its completion is counted)
            if (round >= 2)
            {
                allocated += spent;
            }
        }
        Assert.Equal(Rounds * (PerRound * (PerRound - 1) / 2), Interlocked.Read(ref s_pooledSum)); // each ran once, with its own state
        Assert.Equal(0, allocated);
    }
}
