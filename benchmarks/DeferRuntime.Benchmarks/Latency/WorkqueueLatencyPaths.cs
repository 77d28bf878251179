using DeferRuntime.Benchmarks.Support;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Benchmarks.Latency;

/// <summary>
/// queue_work() from a thread of no CPU (the producer, core P) on system_wq of a one-CPU runtime on core
/// C; latency = send start -> first instruction of the work function on kworker/0:M. Hot: gaps of 0-5 µs,
/// so the idle worker is still polling its pool (the runtime's Hybrid poll window, 50 µs). Idle: gaps
/// past the poll window, so the worker is parked and the kick is a futex wake.
/// </summary>
/// <remarks>
/// <code>
///   core P                                   core C
/// | producer (no CPU) |---queue_work------->| kworker/0:M (idle: polling, or parked) -> item |
/// |  spin on probe    |&lt;---probe line-------|                                                |
/// </code>
/// The runtime is booted Hybrid, not Poll: cpu/0 has nothing to do here (queue_work does not kick it),
/// parks after its poll window and leaves core C to the worker. With <c>pollWindow</c> the runtime's
/// <see cref="RuntimeOptions.WorkerPollWindow"/> is set past the gap: the idle worker never parks, the
/// idle pool behaves as a hot one, and core C is busy polling all the time (the price of that row).
/// </remarks>
internal sealed class WorkqueuePath(long idleGapNs, TimeSpan? pollWindow = null) : LatencyPath
{
    private Runtime? _runtime;
    private WorkStruct? _item;

    public override string Name => idleGapNs == 0
        ? "DeferRuntime: foreign queue_work -> kworker item start (hot pool: worker polling)"
        : pollWindow is { } window
            ? $"DeferRuntime: foreign queue_work -> kworker item start (idle pool: gap >= {idleGapNs / 1000} µs, WorkerPollWindow {window.TotalMilliseconds} ms: worker polling, a core busy)"
            : $"DeferRuntime: foreign queue_work -> kworker item start (idle pool: gap >= {idleGapNs / 1000} µs, worker parked)";

    public override long MinGapNs => idleGapNs;

    public override int? Samples => IdleSamples(idleGapNs);

    public override void Start(LatencyProbe probe)
    {
        _runtime = ForeignTopology.BootRemoteCpu(IdlePolicy.Hybrid, pollWindow);
        _item = new WorkStruct(_ => probe.OnCallback(), "latency");
        // The pool's first workers are made on first use: make them now, outside the measurement.
        var warm = new WorkStruct(_ => { }, "warm");
        _runtime.SystemWq.Queue(warm);
        warm.FlushWork();
    }

    public override void Send() => _runtime!.SystemWq.Queue(_item!);

    public override void Dispose() => _runtime?.Dispose();
}
