using System.Diagnostics;
using DeferRuntime.Cpus;
using DeferRuntime.Interrupts;

namespace DeferRuntime.Cli.Storm.Paths;

/// <summary>
/// A driver that does all its work in the hard-IRQ handler (a timer or GPIO driver whose work is a
/// register write): no bottom half, so "bottom-half start" is the handler's entry and "end" its exit.
/// </summary>
internal sealed class HardIrqPath : LinePath
{
    private IrqAction? _action;

    public HardIrqPath(PathContext context)
        : base(StormPathKind.HardIrq, context)
    {
    }

    public override void Request() =>
        _action = Runtime.Irqs.RequestIrq(Irq, TopHalf, IrqFlags.None, "storm-hardirq");

    protected override IrqReturn TopHalf(int irq, object? devId)
    {
        long entry = Stopwatch.GetTimestamp();
        int cpu = CpuContext.CurrentCpuId;
        var source = Source;
        // The whole FIFO in one pass: the stamps are read twice (entry, then end), so take them into
        // the pass in bounded chunks without a second buffer: record entry-side stages as they come,
        // and the end stage against one clock read per chunk. An event asserted after the entry stamp
        // is timed from a fresh read: the handler took it then.
        Span<long> chunk = stackalloc long[128];
        long events = 0;
        while (true)
        {
            int n = 0;
            while (n < chunk.Length && source.TryTake(out long intended, out long asserted))
            {
                if (asserted >= entry)
                {
                    entry = Stopwatch.GetTimestamp();
                }
                Latency.RecordGeneratorLag(intended, asserted);
                Latency.Record(LatencyStage.TopHalf, cpu, entry, intended, asserted);
                Latency.Record(LatencyStage.BottomHalfStart, cpu, entry, intended, asserted);
                chunk[n++] = intended;
                chunk[n++] = asserted;
            }
            if (n == 0)
            {
                break;
            }
            n /= 2;
            Work(entry, n);
            long end = Stopwatch.GetTimestamp();
            for (int i = 0; i < n; i++)
            {
                Latency.Record(LatencyStage.BottomHalfEnd, cpu, end, chunk[2 * i], chunk[(2 * i) + 1]);
            }
            events += n;
            if (n < chunk.Length / 2)
            {
                break;
            }
        }
        if (events > 0 && CompleteBatch(events))
        {
            ThrowInjected();
        }
        return IrqReturn.Handled;
    }

    public override void Dispose() => _action?.Dispose();
}
