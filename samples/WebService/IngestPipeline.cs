using System.Buffers;
using System.Collections.Concurrent;
using DeferRuntime.Hosting;
using DeferRuntime.Locking;
using DeferRuntime.Tasklets;
using DeferRuntime.Workqueues;
using Microsoft.Extensions.DependencyInjection;

namespace DeferRuntime.Samples.WebService;

/// <summary>One reading as the top half took it.</summary>
public readonly record struct Reading(long Seq, string Device, double Value);

/// <summary>
/// A driver-shaped request pipeline. The request thread runs only the top half (<see cref="Accept"/>):
/// number the reading, put it on the RX queue, tasklet_schedule(). The tasklet (softirq context, may not
/// sleep) takes everything queued so far in batches of up to 32 and queues each batch on the "ingest-store"
/// workqueue (process context, may sleep), where the slow part runs: here a 2 ms msleep standing for a disk
/// or network write. However many requests arrive while the tasklet is pending, it runs once for them.
/// </summary>
/// <remarks>
/// Nothing accepted is lost at shutdown: the web server stops first (no new top halves), then the
/// hosting's drain runs the pending tasklet and every batch it queues, so <see cref="Stored"/> reaches
/// <see cref="Accepted"/> before the process exits.
/// </remarks>
public sealed class IngestPipeline
{
    /// <summary>The workqueue the bottom half runs on (registered with AddWorkqueue).</summary>
    public const string StoreWorkqueue = "ingest-store";

    private const int BatchSize = 32;

    private readonly ConcurrentQueue<Reading> _rx = new(); // top half -> tasklet: the RX ring
    private readonly Tasklet _rxTasklet;
    private readonly Workqueue _store;
    private long _accepted, _stored, _batches, _taskletRuns;

    /// <summary>Made by DI once the runtime has booted.</summary>
    public IngestPipeline(Runtime runtime, [FromKeyedServices(StoreWorkqueue)] Workqueue store)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        _store = store;
        _rxTasklet = runtime.CreateTasklet(_ => RxAction(), "ingest-rx");
    }

    /// <summary>Readings accepted by the top half.</summary>
    public long Accepted => Interlocked.Read(ref _accepted);

    /// <summary>Readings the bottom half has stored.</summary>
    public long Stored => Interlocked.Read(ref _stored);

    /// <summary>Batches queued on the workqueue.</summary>
    public long Batches => Interlocked.Read(ref _batches);

    /// <summary>Tasklet runs: fewer than requests under load, since a scheduled tasklet absorbs later schedules.</summary>
    public long TaskletRuns => Interlocked.Read(ref _taskletRuns);

    /// <summary>The top half, on the request thread: O(1), no waiting, then defer.</summary>
    public long Accept(string device, double value)
    {
        long seq = Interlocked.Increment(ref _accepted);
        _rx.Enqueue(new Reading(seq, device, value));
        _rxTasklet.Schedule(); // tasklet_schedule(): a no-op if already scheduled
        return seq;
    }

    /// <summary>The tasklet: softirq context. Moves readings into batches and queues them; never sleeps.</summary>
    private void RxAction()
    {
        Interlocked.Increment(ref _taskletRuns);
        while (!_rx.IsEmpty)
        {
            var batch = ArrayPool<Reading>.Shared.Rent(BatchSize);
            int count = 0;
            while (count < BatchSize && _rx.TryDequeue(out var reading))
            {
                batch[count++] = reading;
            }
            if (count == 0)
            {
                ArrayPool<Reading>.Shared.Return(batch);
                break;
            }
            Interlocked.Increment(ref _batches);
            // queue_work() of a pooled item carrying (pipeline, batch, count): no closure, no WorkStruct per batch.
            _store.QueuePooled((Pipeline: this, Batch: batch, Count: count), static s => s.Pipeline.Store(s.Batch, s.Count));
        }
    }

    /// <summary>The work item: process context, so it may sleep.</summary>
    private void Store(Reading[] batch, int count)
    {
        Delay.Msleep(2); // the write this service would do
        Interlocked.Add(ref _stored, count);
        ArrayPool<Reading>.Shared.Return(batch);
    }
}
