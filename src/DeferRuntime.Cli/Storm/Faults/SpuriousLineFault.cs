using System.Diagnostics;
using DeferRuntime.Diagnostics;
using DeferRuntime.Interrupts;

namespace DeferRuntime.Cli.Storm.Faults;

/// <summary>
/// --fault irq-none: a device stuck asserting a level line that its only driver does not recognise
/// (every run returns IRQ_NONE) — the screaming interrupt kernel/irq/spurious.c exists for. The line
/// re-fires at each unmask until note_interrupt() has seen 99,900 unhandled of 100,000 runs and disables
/// it ("nobody cared"). The report shows the line disabled and the warning.
/// </summary>
internal sealed class SpuriousLineFault : IDisposable
{
    private readonly Runtime _runtime;
    private readonly IrqAction _action;
    private long _runs; // A: handler runs (each returned IRQ_NONE)
    private bool _asserted;

    public SpuriousLineFault(Runtime runtime)
    {
        _runtime = runtime;
        Irq = runtime.Irqs.AllocateIrq(IrqTrigger.Level);
        _action = runtime.Irqs.RequestIrq(Irq, (_, _) =>
        {
            Interlocked.Increment(ref _runs);
            return IrqReturn.None;
        }, IrqFlags.None, "storm-irq-none");
    }

    public int Irq { get; }

    /// <summary>The device starts screaming: asserts the level and never lets go.</summary>
    public void Start()
    {
        _runtime.Irqs.AssertLevel(Irq);
        _asserted = true;
    }

    /// <summary>Waits (up to <paramref name="ceiling"/>, a hang guard) for the detector to disable the line, then the device lets go.</summary>
    public SpuriousReport Finish(TimeSpan ceiling)
    {
        var clock = Stopwatch.StartNew();
        while (!_runtime.Irqs.GetStats(Irq).SpuriousDisabled && clock.Elapsed < ceiling)
        {
            Thread.Sleep(5);
        }
        if (_asserted)
        {
            _runtime.Irqs.DeassertLevel(Irq);
            _asserted = false;
        }
        var stats = _runtime.Irqs.GetStats(Irq);
        string prefix = $"irq {Irq}:";
        var warning = _runtime.Faults.Recent.FirstOrDefault(f => f.Exception is KernelWarningException && f.Exception.Message.StartsWith(prefix, StringComparison.Ordinal) && f.Exception.Message.Contains("nobody cared", StringComparison.Ordinal));
        return new SpuriousReport(Irq, Interlocked.Read(ref _runs), stats.Unhandled, stats.SpuriousDisabled, warning?.Exception.Message);
    }

    public void Dispose() => _action.Dispose();
}

/// <summary>What the spurious detector did with the screaming line.</summary>
/// <param name="Irq">The line.</param>
/// <param name="HandlerRuns">Handler runs (all returned IRQ_NONE).</param>
/// <param name="Unhandled">Unhandled chain runs the descriptor counted.</param>
/// <param name="Disabled">The detector disabled the line.</param>
/// <param name="Warning">The "nobody cared ... Disabling IRQ #N" warning from the fault log.</param>
internal sealed record SpuriousReport(int Irq, long HandlerRuns, long Unhandled, bool Disabled, string? Warning);
