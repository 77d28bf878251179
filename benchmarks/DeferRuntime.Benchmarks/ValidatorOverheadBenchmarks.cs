using BenchmarkDotNet.Attributes;
using DeferRuntime.Locking;

namespace DeferRuntime.Benchmarks;

/// <summary>
/// What the lock validator costs on the lock paths: a spinlock and a mutex built while their validator
/// was off (baseline: no class, one null check per hook) beside the same built with it on (every
/// acquisition walks the held stack and the dependency graph under the validator's lock), uncontended,
/// on one thread. The claim to check: off adds nothing measurable next to <see cref="SpinLock"/>.
/// </summary>
/// <remarks>
/// <code>
/// | bench thread |--lock/unlock--> | lock (validator off / on) |
/// </code>
/// </remarks>
[MemoryDiagnoser]
[BenchmarkCategory("Locking", "Validator")]
public class ValidatorOverheadBenchmarks
{
    private const int Ops = 1024;

    private readonly KernelSpinlock _spinOff = new("bench.validator.spin.off", new LockValidator(enabled: false));
    private readonly KernelSpinlock _spinOn = new("bench.validator.spin.on", new LockValidator(enabled: true));
    private readonly KernelMutex _mutexOff = new("bench.validator.mutex.off", new LockValidator(enabled: false));
    private readonly KernelMutex _mutexOn = new("bench.validator.mutex.on", new LockValidator(enabled: true));
    private SpinLock _dotnet = new(enableThreadOwnerTracking: false);

    [Benchmark(OperationsPerInvoke = Ops, Baseline = true)]
    public void Spinlock_ValidatorOff()
    {
        for (int i = 0; i < Ops; i++)
        {
            _spinOff.Lock();
            _spinOff.Unlock();
        }
    }

    [Benchmark(OperationsPerInvoke = Ops)]
    public void Spinlock_ValidatorOn()
    {
        for (int i = 0; i < Ops; i++)
        {
            _spinOn.Lock();
            _spinOn.Unlock();
        }
    }

    [Benchmark(OperationsPerInvoke = Ops)]
    public void SpinLock_Dotnet()
    {
        for (int i = 0; i < Ops; i++)
        {
            bool taken = false;
            _dotnet.Enter(ref taken);
            _dotnet.Exit(false);
        }
    }

    [Benchmark(OperationsPerInvoke = Ops)]
    public void Mutex_ValidatorOff()
    {
        for (int i = 0; i < Ops; i++)
        {
            _mutexOff.Lock();
            _mutexOff.Unlock();
        }
    }

    [Benchmark(OperationsPerInvoke = Ops)]
    public void Mutex_ValidatorOn()
    {
        for (int i = 0; i < Ops; i++)
        {
            _mutexOn.Lock();
            _mutexOn.Unlock();
        }
    }
}
