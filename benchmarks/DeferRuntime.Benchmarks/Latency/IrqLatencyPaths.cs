using DeferRuntime.Benchmarks.Support;
using DeferRuntime.Cpus;
using DeferRuntime.Interrupts;

namespace DeferRuntime.Benchmarks.Latency;

/// <summary>
/// A device thread (the producer, a thread of no CPU) asserts an edge line; latency = assert start ->
/// first instruction of the hard-IRQ handler on cpu/0. One path per idle policy; the idle ones wait
/// 100-150 µs between assertions, past Hybrid's 50 µs poll window, so cpu/0 is really parked.
/// </summary>
internal sealed class IrqAssertPath(IdlePolicy policy, bool idle) : LatencyPath
{
    private Runtime? _runtime;
    private IrqAction? _action;
    private int _irq;

    public override string Name => $"DeferRuntime: assert edge -> hard-IRQ handler on cpu/0 ({policy}{(idle ? ", idle past the poll window" : "")})";

    public override long MinGapNs => idle ? 100_000 : 0;

    public override int? Samples => idle ? 40_000 : null;

    public override void Start(LatencyProbe probe)
    {
        _runtime = ForeignTopology.BootRemoteCpu(policy);
        _irq = _runtime.Irqs.AllocateIrq();
        _action = _runtime.Irqs.RequestIrq(_irq, (_, p) =>
        {
            ((LatencyProbe)p!).OnCallback();
            return IrqReturn.Handled;
        }, IrqFlags.None, "latency", probe);
    }

    public override void Send() => _runtime!.Irqs.AssertEdge(_irq);

    public override void Dispose()
    {
        _action?.Dispose();
        _runtime?.Dispose();
    }
}

/// <summary>
/// The floor for a parked CPU: the same futex park/unpark cpu/N uses (<see cref="Parker"/>), a thread
/// pinned to core C parked on it, the producer unparks it; no runtime at all. Same idle gap as the
/// idle IRQ paths, so the thread is really asleep in the kernel.
/// </summary>
internal sealed class RawFutexWakePath(long gapNs = 100_000) : LatencyPath
{
    private readonly Parker _parker = new();
    private Thread? _consumer;
    private volatile bool _stop;

    public override string Name => gapNs == 100_000 ? "floor: raw futex wake of a parked pinned thread" : $"floor: raw futex wake of a parked pinned thread (gap >= {gapNs / 1000} µs)";

    public override long MinGapNs => gapNs;

    public override int? Samples => IdleSamples(gapNs);

    public override void Start(LatencyProbe probe)
    {
        _consumer = ForeignTopology.StartConsumer("futex sleeper", () =>
        {
            while (!_stop)
            {
                _parker.Park(-1);
                if (!_stop)
                {
                    probe.OnCallback();
                }
            }
        });
    }

    public override void Send() => _parker.Unpark();

    public override void Dispose()
    {
        _stop = true;
        _parker.Unpark();
        _consumer?.Join();
    }
}
