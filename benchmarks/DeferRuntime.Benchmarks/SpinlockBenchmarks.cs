using System.Runtime.CompilerServices;
using BenchmarkDotNet.Attributes;
using DeferRuntime.Locking;

namespace DeferRuntime.Benchmarks;

/// <summary>
/// Lock/unlock throughput of <see cref="KernelSpinlock"/> (queued, bounded lock stealing) beside
/// <see cref="SpinLock"/>, alone (Threads = 1) and against one contender thread hammering the same lock
/// (Threads = 2). Per operation: one acquisition and release by the measuring thread, a counter increment
/// and an owner check inside.
/// </summary>
/// <remarks>
/// <code>
/// | bench thread |--lock/unlock--+
///                                 +--> | one lock, one counter, last owner |
/// | contender    |--lock/unlock--+      (Threads = 2 only; started in GlobalSetup)
/// </code>
/// Threads = 2 prints two fairness lines in GlobalCleanup. "measured windows" counts only while the bench
/// thread is inside a benchmark invocation (the contender's rounds are read before and after each one):
/// both threads' acquisitions, max/min, and acquisitions per hand-over (how many times in a row a thread
/// takes the lock before the other gets it: the run length, which is what contended throughput buys and
/// short-run fairness pays). "whole process" is the older measure, which also counts the contender
/// while BDN is between iterations and so over-counts it. locktorture flags max/2 > min as "???".
/// </remarks>
[MemoryDiagnoser]
[BenchmarkCategory("Locking", "Spinlock")]
public class SpinlockBenchmarks
{
    private const int Ops = 1024;
    private const int BenchThread = 1, ContenderThread = 2;

    private readonly KernelSpinlock _kernel = new("bench.spinlock", new LockValidator(enabled: false));
    private SpinLock _dotnet = new(enableThreadOwnerTracking: false);
    private Contender? _contender;
    private long _benchAcquisitions; // L: the lock
    private int _owner;              // L: the lock; who took it last (BenchThread or ContenderThread)
    private long _handOvers;         // L: the lock; times the owner changed
    private long _windowBench, _windowContender, _windowHandOvers; // bench thread only

    [Params(1, 2)]
    public int Threads { get; set; }

    [GlobalSetup(Target = nameof(KernelSpinlock_LockUnlock))]
    public void SetupKernel() => _contender = Threads == 2 ? new Contender(() =>
    {
        _kernel.Lock();
        TookIt(ContenderThread);
        _kernel.Unlock();
    }) : null;

    [GlobalSetup(Target = nameof(SpinLock_EnterExit))]
    public void SetupDotnet() => _contender = Threads == 2 ? new Contender(() =>
    {
        bool taken = false;
        _dotnet.Enter(ref taken);
        TookIt(ContenderThread);
        _dotnet.Exit(false);
    }) : null;

    [GlobalCleanup]
    public void Cleanup()
    {
        if (_contender is { } c)
        {
            long max = Math.Max(_windowBench, _windowContender), min = Math.Max(1, Math.Min(_windowBench, _windowContender));
            Console.WriteLine(
                $"// fairness (measured windows): bench thread {_windowBench:N0}, contender {_windowContender:N0} acquisitions, " +
                $"max/min {(double)max / min:F2}, {(double)(_windowBench + _windowContender) / Math.Max(1, _windowHandOvers):F1} acquisitions per hand-over");
            c.StopAndReportFairness(_benchAcquisitions); // the whole-process line
        }
    }

    [Benchmark(OperationsPerInvoke = Ops)]
    public void KernelSpinlock_LockUnlock()
    {
        var l = _kernel;
        var window = OpenWindow();
        for (int i = 0; i < Ops; i++)
        {
            l.Lock();
            _benchAcquisitions++;
            TookIt(BenchThread);
            l.Unlock();
        }
        CloseWindow(window);
    }

    [Benchmark(OperationsPerInvoke = Ops, Baseline = true)]
    public void SpinLock_EnterExit()
    {
        var window = OpenWindow();
        for (int i = 0; i < Ops; i++)
        {
            bool taken = false;
            _dotnet.Enter(ref taken);
            _benchAcquisitions++;
            TookIt(BenchThread);
            _dotnet.Exit(false);
        }
        CloseWindow(window);
    }

    /// <summary>Inside the lock: counts a hand-over when the other thread had it last.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void TookIt(int who)
    {
        if (_owner != who)
        {
            _owner = who;
            _handOvers++;
        }
    }

    private (long Contender, long HandOvers) OpenWindow() =>
        _contender is { } c ? (c.Rounds, Volatile.Read(ref _handOvers)) : default;

    private void CloseWindow((long Contender, long HandOvers) opened)
    {
        if (_contender is { } c)
        {
            _windowBench += Ops;
            _windowContender += c.Rounds - opened.Contender;
            _windowHandOvers += Volatile.Read(ref _handOvers) - opened.HandOvers; // read outside the lock: a statistic
        }
    }
}

/// <summary>A thread that runs one lock round trip in a loop until stopped, counting rounds.</summary>
internal sealed class Contender
{
    private readonly Thread _thread;
    private volatile bool _stop;
    private long _rounds;

    /// <summary>Rounds so far (read by the bench thread while the contender runs).</summary>
    public long Rounds => Volatile.Read(ref _rounds);

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
