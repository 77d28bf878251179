using BenchmarkDotNet.Attributes;
using DeferRuntime.Cpus;

namespace DeferRuntime.Benchmarks;

/// <summary>
/// What a hand-over of the task gate costs: two tasks of CPU 0, on two OS cores (pinning off so both
/// run at once), take turns entering a preempt_disable() section, so every section is entered by the
/// other task than the last (each one revokes the gate's bias: a CAS and a process-wide barrier). The
/// peer is the same strict alternation with the section a <see cref="SpinLock"/>: the cost of the turn
/// hand-off itself, without the gate.
/// </summary>
/// <remarks>
/// <code>
/// | bench thread (task of CPU 0, core A) |--turn--&gt;| partner (task of CPU 0, core B) |
///        section, turn = partner            &lt;--turn--     section, turn = bench
/// </code>
/// The figure per operation is one round trip: two hand-overs.
/// </remarks>
[MemoryDiagnoser]
[BenchmarkCategory("Locking", "TaskSection")]
public class TaskGateHandOverBenchmarks
{
    private const int Ops = 256;

    private Runtime _runtime = null!;
    private CpuBinding _binding = null!;
    private Thread? _partner;
    private volatile bool _stop;
    private volatile int _turn;         // 0: the bench thread's, 1: the partner's
    private volatile bool _useGate;
    private SpinLock _spinLock = new(enableThreadOwnerTracking: false);
    private long _sections;

    [GlobalSetup]
    public void Setup()
    {
        _runtime = Runtime.Boot(new RuntimeOptions { CpuCount = 1, Pinning = false });
        _binding = _runtime.Cpus[0].BindCurrentThread();
        _partner = new Thread(Partner) { Name = "handover partner", IsBackground = true };
        _partner.Start();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _stop = true;
        _turn = 1;
        _partner!.Join();
        long handOvers = _runtime.Cpus[0].TaskGateHandOverCount;
        _binding.Dispose();
        _runtime.Dispose();
        Console.WriteLine($"// sections {_sections:N0}, task gate hand-overs {handOvers:N0}");
    }

    [Benchmark(OperationsPerInvoke = Ops, Baseline = true)]
    public void SpinLock_Alternating()
    {
        _useGate = false;
        Alternate();
    }

    [Benchmark(OperationsPerInvoke = Ops)]
    public void PreemptDisable_Alternating()
    {
        _useGate = true;
        Alternate();
    }

    private void Alternate()
    {
        for (int i = 0; i < Ops; i++)
        {
            while (_turn != 0)
            {
                Thread.SpinWait(1);
            }
            Section();
            _turn = 1;
        }
        while (_turn != 0)
        {
            Thread.SpinWait(1);
        }
    }

    private void Section()
    {
        if (_useGate)
        {
            CpuContext.PreemptDisable();
            _sections++;
            CpuContext.PreemptEnable();
        }
        else
        {
            bool taken = false;
            _spinLock.Enter(ref taken);
            _sections++;
            _spinLock.Exit(false);
        }
    }

    private void Partner()
    {
        using var binding = _runtime.Cpus[0].BindCurrentThread();
        while (true)
        {
            while (_turn != 1)
            {
                Thread.SpinWait(1);
            }
            if (_stop)
            {
                return;
            }
            Section();
            _turn = 0;
        }
    }
}
