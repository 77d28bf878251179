using BenchmarkDotNet.Attributes;
using DeferRuntime.Locking;

namespace DeferRuntime.Benchmarks;

/// <summary>
/// Lock/unlock throughput of <see cref="KernelMutex"/> beside <see cref="System.Threading.Lock"/>
/// (baseline), <see cref="Monitor"/> and <see cref="SemaphoreSlim"/>, alone (Threads = 1) and against one
/// contender thread (Threads = 2). Per operation: one acquisition and release, a counter increment inside.
/// </summary>
/// <remarks>
/// <code>
/// | bench thread |--lock/unlock--+
///                                 +--> | one mutex, one counter |
/// | contender    |--lock/unlock--+      (Threads = 2 only; started in GlobalSetup)
/// </code>
/// GlobalCleanup prints each thread's acquisitions and max/min (fairness).
/// </remarks>
[MemoryDiagnoser]
[BenchmarkCategory("Locking", "Mutex")]
public class MutexBenchmarks
{
    private const int Ops = 1024;

    private readonly KernelMutex _kernel = new("bench.mutex", new LockValidator(enabled: false));
    private readonly Lock _lock = new();
    private readonly object _monitor = new();
    private readonly SemaphoreSlim _semaphore = new(1, 1);
    private Contender? _contender;
    private long _benchAcquisitions;

    [Params(1, 2)]
    public int Threads { get; set; }

    [GlobalSetup(Target = nameof(KernelMutex_LockUnlock))]
    public void SetupKernel() => Start(() => { _kernel.Lock(); _kernel.Unlock(); });

    [GlobalSetup(Target = nameof(Lock_EnterExit))]
    public void SetupLock() => Start(() => { _lock.Enter(); _lock.Exit(); });

    [GlobalSetup(Target = nameof(Monitor_EnterExit))]
    public void SetupMonitor() => Start(() => { Monitor.Enter(_monitor); Monitor.Exit(_monitor); });

    [GlobalSetup(Target = nameof(SemaphoreSlim_WaitRelease))]
    public void SetupSemaphore() => Start(() => { _semaphore.Wait(); _semaphore.Release(); });

    private void Start(Action round) => _contender = Threads == 2 ? new Contender(round) : null;

    [GlobalCleanup]
    public void Cleanup()
    {
        _contender?.StopAndReportFairness(_benchAcquisitions);
        _semaphore.Dispose();
    }

    [Benchmark(OperationsPerInvoke = Ops)]
    public void KernelMutex_LockUnlock()
    {
        var m = _kernel;
        for (int i = 0; i < Ops; i++)
        {
            m.Lock();
            _benchAcquisitions++;
            m.Unlock();
        }
    }

    [Benchmark(OperationsPerInvoke = Ops, Baseline = true)]
    public void Lock_EnterExit()
    {
        var l = _lock;
        for (int i = 0; i < Ops; i++)
        {
            l.Enter();
            _benchAcquisitions++;
            l.Exit();
        }
    }

    [Benchmark(OperationsPerInvoke = Ops)]
    public void Monitor_EnterExit()
    {
        var o = _monitor;
        for (int i = 0; i < Ops; i++)
        {
            Monitor.Enter(o);
            _benchAcquisitions++;
            Monitor.Exit(o);
        }
    }

    [Benchmark(OperationsPerInvoke = Ops)]
    public void SemaphoreSlim_WaitRelease()
    {
        var s = _semaphore;
        for (int i = 0; i < Ops; i++)
        {
            s.Wait();
            _benchAcquisitions++;
            s.Release();
        }
    }
}
