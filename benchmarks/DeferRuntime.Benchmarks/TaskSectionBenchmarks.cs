using BenchmarkDotNet.Attributes;
using DeferRuntime.Benchmarks.Support;
using DeferRuntime.Cpus;
using DeferRuntime.Locking;

namespace DeferRuntime.Benchmarks;

/// <summary>
/// The uncontended cost of a non-preemptible section on a task of a CPU: what per-CPU exclusivity
/// (the task gate) adds to preempt_disable(), spin_lock() and spin_lock_irqsave(). Per operation: one
/// section around a plain counter increment.
/// </summary>
/// <remarks>
/// <code>
/// | bench thread: kthread_bind to CPU 0, pinned to cpu/0's core |
/// |   preempt_disable / spin_lock / spin_lock_irqsave / local_bh_disable  ... ++counter ... enable/unlock |
///   cpu/0 (Hybrid idle): parked, never kicked; no other task of CPU 0 takes a section (the gate's bias stays)
/// </code>
/// Peers, on the same thread, protecting the same counter the way a .NET user would:
/// <see cref="SpinLock"/> (baseline; the target is KernelSpinlock within 1.5x of it), <see cref="Lock"/>
/// and <see cref="Monitor"/>. The same class runs unchanged against the commit before the task gate, which
/// is how RESULTS.md gives before and after.
/// </remarks>
[MemoryDiagnoser]
[BenchmarkCategory("Locking", "TaskSection")]
public class TaskSectionBenchmarks
{
    private const int Ops = 1024;

    private BoundThread _bound = null!;
    private readonly KernelSpinlock _kernel = new("bench.task-section", new LockValidator(enabled: false));
    private SpinLock _spinLock = new(enableThreadOwnerTracking: false);
    private readonly Lock _lock = new();
    private readonly object _monitor = new();
    private long _counter;

    [GlobalSetup]
    public void Setup() => _bound = new BoundThread();

    [GlobalCleanup]
    public void Cleanup()
    {
        _bound.Dispose();
        if (_counter == 0)
        {
            throw new InvalidOperationException("no section ran: the benchmark measured nothing");
        }
    }

    [Benchmark(OperationsPerInvoke = Ops, Baseline = true)]
    public void SpinLock_EnterExit()
    {
        for (int i = 0; i < Ops; i++)
        {
            bool taken = false;
            _spinLock.Enter(ref taken);
            _counter++;
            _spinLock.Exit(false);
        }
    }

    [Benchmark(OperationsPerInvoke = Ops)]
    public void Lock_EnterExit()
    {
        for (int i = 0; i < Ops; i++)
        {
            _lock.Enter();
            _counter++;
            _lock.Exit();
        }
    }

    [Benchmark(OperationsPerInvoke = Ops)]
    public void Monitor_EnterExit()
    {
        for (int i = 0; i < Ops; i++)
        {
            Monitor.Enter(_monitor);
            _counter++;
            Monitor.Exit(_monitor);
        }
    }

    [Benchmark(OperationsPerInvoke = Ops)]
    public void PreemptDisable_Enable()
    {
        for (int i = 0; i < Ops; i++)
        {
            CpuContext.PreemptDisable();
            _counter++;
            CpuContext.PreemptEnable();
        }
    }

    [Benchmark(OperationsPerInvoke = Ops)]
    public void KernelSpinlock_LockUnlock()
    {
        var l = _kernel;
        for (int i = 0; i < Ops; i++)
        {
            l.Lock();
            _counter++;
            l.Unlock();
        }
    }

    [Benchmark(OperationsPerInvoke = Ops)]
    public void KernelSpinlock_IrqSaveRestore()
    {
        var l = _kernel;
        for (int i = 0; i < Ops; i++)
        {
            var flags = l.LockIrqSave();
            _counter++;
            l.UnlockIrqRestore(flags);
        }
    }

    [Benchmark(OperationsPerInvoke = Ops)]
    public void LocalBhDisable_Enable()
    {
        for (int i = 0; i < Ops; i++)
        {
            var bh = CpuContext.LocalBhDisable();
            _counter++;
            bh.Dispose();
        }
    }
}
