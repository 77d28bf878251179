using BenchmarkDotNet.Attributes;
using DeferRuntime.Locking;

namespace DeferRuntime.Benchmarks;

/// <summary>
/// Lock/unlock throughput of <see cref="KernelSpinlock"/> (FIFO ticket) beside <see cref="SpinLock"/>,
/// alone (Threads = 1) and against one contender thread hammering the same lock (Threads = 2).
/// Per operation: one acquisition and release by the measuring thread, a counter increment inside.
/// </summary>
/// <remarks>
/// <code>
/// | bench thread |--lock/unlock--+
///                                 +--> | one lock, one counter |
/// | contender    |--lock/unlock--+      (Threads = 2 only; started in GlobalSetup)
/// </code>
/// GlobalCleanup prints each thread's acquisitions and max/min: a fair lock keeps it near 1, a lock that
/// lets its holder re-take it keeps it far above (locktorture flags max/2 > min as "???").
/// </remarks>
[MemoryDiagnoser]
[BenchmarkCategory("Locking", "Spinlock")]
public class SpinlockBenchmarks
{
    private const int Ops = 1024;

    private readonly KernelSpinlock _kernel = new("bench.spinlock", new LockValidator(enabled: false));
    private SpinLock _dotnet = new(enableThreadOwnerTracking: false);
    private Contender? _contender;
    private long _benchAcquisitions;

    [Params(1, 2)]
    public int Threads { get; set; }

    [GlobalSetup(Target = nameof(KernelSpinlock_LockUnlock))]
    public void SetupKernel() => _contender = Threads == 2 ? new Contender(() => { _kernel.Lock(); _kernel.Unlock(); }) : null;

    [GlobalSetup(Target = nameof(SpinLock_EnterExit))]
    public void SetupDotnet() => _contender = Threads == 2 ? new Contender(() => { bool taken = false; _dotnet.Enter(ref taken); _dotnet.Exit(false); }) : null;

    [GlobalCleanup]
    public void Cleanup()
    {
        _contender?.StopAndReportFairness(_benchAcquisitions);
    }

    [Benchmark(OperationsPerInvoke = Ops)]
    public void KernelSpinlock_LockUnlock()
    {
        var l = _kernel;
        for (int i = 0; i < Ops; i++)
        {
            l.Lock();
            _benchAcquisitions++;
            l.Unlock();
        }
    }

    [Benchmark(OperationsPerInvoke = Ops, Baseline = true)]
    public void SpinLock_EnterExit()
    {
        for (int i = 0; i < Ops; i++)
        {
            bool taken = false;
            _dotnet.Enter(ref taken);
            _benchAcquisitions++;
            _dotnet.Exit(false);
        }
    }
}

/// <summary>A thread that runs one lock round trip in a loop until stopped, counting rounds.</summary>
internal sealed class Contender
{
    private readonly Thread _thread;
    private volatile bool _stop;
    private long _rounds;

    public Contender(Action round)
    {
        _thread = new Thread(() =>
        {
            while (!_stop)
            {
                round();
                _rounds++;
            }
        })
        { IsBackground = true, Name = "contender" };
        _thread.Start();
    }

    /// <summary>Stops the thread and prints its acquisitions beside the bench thread's, with max/min (fairness).</summary>
    public void StopAndReportFairness(long benchAcquisitions)
    {
        _stop = true;
        _thread.Join();
        long max = Math.Max(_rounds, benchAcquisitions), min = Math.Max(1, Math.Min(_rounds, benchAcquisitions));
        Console.WriteLine($"// fairness: bench thread {benchAcquisitions:N0}, contender {_rounds:N0} acquisitions, max/min {(double)max / min:F2}");
    }
}
