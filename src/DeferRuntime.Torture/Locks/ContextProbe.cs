using DeferRuntime.Cpus;
using DeferRuntime.Interrupts;
using DeferRuntime.Tasklets;
using DeferRuntime.Torture.Harness;

namespace DeferRuntime.Torture.Locks;

/// <summary>
/// A device that keeps interrupting every CPU while the irq and bh lock variants are tortured, so their
/// holds can be checked against what they promise beyond exclusion: spin_lock_irq* keeps hard IRQs off
/// the holder's CPU, spin_lock_bh keeps softirqs off it. One edge line per CPU (affinity that CPU),
/// whose handler counts per CPU and, for the bh check, schedules that CPU's tasklet, which counts too. A
/// holder reads its CPU's count after taking the lock and again before releasing it: any change means a
/// handler ran on its CPU inside the hold.
/// </summary>
internal sealed class ContextProbe : IDisposable
{
    private const int Stride = 8; // one counter per cache line

    private readonly Runtime _runtime;
    private readonly HeldContext _context;
    private readonly long[] _hardirqs;  // A: per CPU, incremented by that CPU's handler
    private readonly long[] _softirqs;  // A: per CPU, incremented by that CPU's tasklet
    private readonly int[] _irqs;
    private readonly IrqAction[] _actions;
    private readonly Tasklet[] _tasklets;
    private readonly Thread _device;
    private readonly CancellationTokenSource _stop = new();

    public ContextProbe(Runtime runtime, HeldContext context)
    {
        _runtime = runtime;
        _context = context;
        int cpus = runtime.Cpus.Count;
        _hardirqs = new long[(cpus + 1) * Stride];
        _softirqs = new long[(cpus + 1) * Stride];
        _irqs = new int[cpus];
        _actions = new IrqAction[cpus];
        _tasklets = new Tasklet[cpus];
        for (int cpu = 0; cpu < cpus; cpu++)
        {
            _tasklets[cpu] = runtime.CreateTasklet(_ => Interlocked.Increment(ref _softirqs[(CpuContext.CurrentCpuId + 1) * Stride]), $"torture_probe/{cpu}");
            _irqs[cpu] = runtime.Irqs.AllocateIrq(IrqTrigger.Edge);
            runtime.Irqs.IrqSetAffinity(_irqs[cpu], cpu);
            _actions[cpu] = runtime.Irqs.RequestIrq(_irqs[cpu], Handler, IrqFlags.None, $"torture_probe/{cpu}");
        }
        _device = new Thread(DeviceMain) { Name = "torture_probe", IsBackground = true };
    }

    /// <summary>"hardirq" or "softirq".</summary>
    public string Name => _context == HeldContext.Hardirq ? "hardirq" : "softirq";

    /// <summary>Handler (or tasklet) runs on all CPUs so far.</summary>
    public long Events
    {
        get
        {
            var counts = _context == HeldContext.Hardirq ? _hardirqs : _softirqs;
            long sum = 0;
            for (int cpu = 0; cpu < _irqs.Length; cpu++)
            {
                sum += Volatile.Read(ref counts[(cpu + 1) * Stride]);
            }
            return sum;
        }
    }

    public void Start() => _device.Start();

    /// <summary>The count a holder on <paramref name="cpu"/> compares across its hold.</summary>
    public long Read(int cpu) => Volatile.Read(ref (_context == HeldContext.Hardirq ? _hardirqs : _softirqs)[(cpu + 1) * Stride]);

    public void Dispose()
    {
        _stop.Cancel();
        if (_device.IsAlive)
        {
            _device.Join();
        }
        foreach (var action in _actions)
        {
            action.Dispose(); // free_irq(): waits for a running handler
        }
        foreach (var tasklet in _tasklets)
        {
            tasklet.Kill();
        }
        _stop.Dispose();
    }

    private IrqReturn Handler(int irq, object? dev)
    {
        int cpu = CpuContext.CurrentCpuId;
        Interlocked.Increment(ref _hardirqs[(cpu + 1) * Stride]);
        if (_context == HeldContext.Softirq)
        {
            _tasklets[cpu].Schedule(); // from hard-IRQ context: runs on this CPU at irq exit
        }
        return IrqReturn.Handled;
    }

    /// <summary>
    /// Asserts every line about once a millisecond: enough that interrupts arrive during holds (the long
    /// holds above all), little enough not to steal a core from the writers on a small machine.
    /// </summary>
    private void DeviceMain()
    {
        var stop = _stop.Token.WaitHandle;
        do
        {
            foreach (int irq in _irqs)
            {
                _runtime.Irqs.AssertEdge(irq);
            }
        }
        while (!stop.WaitOne(1));
    }
}
