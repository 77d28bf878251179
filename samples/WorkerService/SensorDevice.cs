using System.Collections.Concurrent;
using DeferRuntime.Interrupts;
using DeferRuntime.Locking;
using DeferRuntime.Workqueues;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace DeferRuntime.Samples.WorkerService;

/// <summary>
/// A device and its driver in a worker service. The device (this background service's loop) puts a
/// sample in its FIFO every 5 ms and raises an edge on its IRQ line. The top half, in hard-IRQ context,
/// only queues the driver's one work item (queue_work() of a pre-allocated WorkStruct: 0 B); the bottom
/// half, on the "sensor" workqueue, empties the FIFO and may sleep. Edges that arrive while the item is
/// still pending coalesce into that one run, as interrupts do.
/// </summary>
/// <remarks>
/// Shutdown: the host stops this service first (no more samples), whose last act is the driver's
/// remove(): one more queue_work() so whatever is in the FIFO gets consumed. Then the hosting frees the IRQ
/// line (it was left requested on purpose) and drains the workqueue, so consumed equals produced at exit.
/// </remarks>
public sealed partial class SensorDevice(
    Runtime runtime, [FromKeyedServices(SensorDevice.Workqueue)] Workqueue wq, IHostApplicationLifetime lifetime,
    IConfiguration configuration, ILogger<SensorDevice> logger) : BackgroundService
{
    /// <summary>The workqueue the bottom half runs on.</summary>
    public const string Workqueue = "sensor";

    private readonly ConcurrentQueue<double> _fifo = new(); // the device's FIFO, read by the bottom half
    private long _produced, _consumed, _runs;
    private double _sum;

    /// <summary>Samples the device produced.</summary>
    public long Produced => Interlocked.Read(ref _produced);

    /// <summary>Samples the bottom half consumed.</summary>
    public long Consumed => Interlocked.Read(ref _consumed);

    /// <inheritdoc />
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        long limit = configuration.GetValue<long>("samples"); // --samples N: stop after N, else run until Ctrl+C
        int irq = runtime.Irqs.AllocateIrq(IrqTrigger.Edge); // irq_alloc_desc()
        var drain = new WorkStruct(_ => Drain(), "sensor-drain"); // INIT_WORK(): once
        runtime.Irqs.RequestIrq(irq, (_, _) =>
        {
            wq.Queue(drain); // the top half: defer and return
            return IrqReturn.Handled;
        }, IrqFlags.None, "sensor");
        LogStarted(logger, irq, wq.Name);

        using var tick = new PeriodicTimer(TimeSpan.FromMilliseconds(5));
        try
        {
            while ((limit == 0 || Produced < limit) && await tick.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                _fifo.Enqueue(Math.Sin(Produced / 10.0));
                Interlocked.Increment(ref _produced);
                runtime.Irqs.AssertEdge(irq); // what the hardware does
            }
        }
        catch (OperationCanceledException)
        {
            // the host is stopping
        }
        // remove(): the device is quiet; hand whatever its FIFO still holds to the bottom half.
        wq.Queue(drain);
        if (limit != 0)
        {
            lifetime.StopApplication();
        }
    }

    /// <summary>The bottom half: process context, may sleep.</summary>
    private void Drain()
    {
        Interlocked.Increment(ref _runs);
        while (_fifo.TryDequeue(out double sample))
        {
            _sum += sample; // one worker at a time: a work item never runs concurrently with itself
            Interlocked.Increment(ref _consumed);
        }
        Delay.Msleep(1); // e.g. publish the aggregate
    }

    /// <summary>Logs the totals; called once the host has stopped (after the drain).</summary>
    public void Report() => LogTotals(logger, Produced, Consumed, Interlocked.Read(ref _runs));

    [LoggerMessage(1, LogLevel.Information, "sensor on IRQ {Irq}, bottom half on workqueue '{Workqueue}'")]
    private static partial void LogStarted(ILogger logger, int irq, string workqueue);

    [LoggerMessage(2, LogLevel.Information, "sensor: produced {Produced}, consumed {Consumed} in {Runs} bottom-half runs")]
    private static partial void LogTotals(ILogger logger, long produced, long consumed, long runs);
}
