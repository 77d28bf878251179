using System.Runtime.CompilerServices;
using BenchmarkDotNet.Attributes;
using DeferRuntime.Benchmarks.Support;
using DeferRuntime.Cpus;

namespace DeferRuntime.Benchmarks;

/// <summary>
/// A per-CPU event counter: <see cref="PerCpuOperations.ThisCpuInc(PerCpu{long})"/> (this_cpu_inc) and a
/// get_cpu_var()/put_cpu_var() section with a plain increment, beside what a .NET user would write for a
/// per-core counter. Per operation: one increment. Also the "this_cpu ops are 0 B" proof (MemoryDiagnoser).
/// </summary>
/// <remarks>
/// <code>
/// | bench thread: CPU 0's core (bound to CPU 0 for the PerCpu rows) |--inc--> slot of CPU 0 / the shared word
/// | contender:    CPU 1's core (bound to CPU 1 for the PerCpu rows) |--inc--> slot of CPU 1 / the shared word
///                 (Threads = 2 only; the same operation in a loop, started in GlobalSetup)
/// </code>
/// Rows:
/// <list type="bullet">
/// <item>Baseline: <see cref="Interlocked.Increment(ref long)"/> on one shared long: exact and simplest; with
/// a second core incrementing, the line bounces between the cores on every operation.</item>
/// <item><see cref="ThreadLocal{T}"/> of long, <c>Value++</c>: no sharing, but a lookup per get and per set,
/// and summing needs <c>trackAllValues</c> and <c>Values</c> (a list allocated per read).</item>
/// <item>A padded counter array striped by <see cref="Thread.GetCurrentProcessorId"/>, Interlocked.Increment
/// on the stripe: the usual hand-written per-core counter, and what this_cpu_inc() from a thread of no
/// CPU does.</item>
/// <item>ThisCpuInc on the bound thread, and from a thread of no CPU (the slot of the core it runs on).</item>
/// <item>GetCpuVar: preempt_disable(), a plain increment, preempt_enable(): the non-atomic section.</item>
/// </list>
/// cpu/0 and cpu/1 stay parked: nothing here kicks them.
/// </remarks>
[MemoryDiagnoser]
[BenchmarkCategory("PerCpu")]
public class PerCpuBenchmarks
{
    private const int Ops = 1024;

    private Runtime _runtime = null!;
    private CpuBinding? _binding;
    private PerCpu<long> _perCpu = null!;
    private readonly ThreadLocal<long> _threadLocal = new();
    private readonly PaddedCounter[] _stripes = new PaddedCounter[Environment.ProcessorCount];
    private PaddedCounter _shared;
    private Incrementer? _contender;

    [Params(1, 2)]
    public int Threads { get; set; }

    // One setup per row: each binds the bench thread or not, and gives the contender (Threads = 2) the row's own operation.
    [GlobalSetup(Target = nameof(PerCpu_ThisCpuInc))]
    public void SetupThisCpuInc() => Setup(bind: true, () => _perCpu.ThisCpuInc());

    [GlobalSetup(Target = nameof(PerCpu_ThisCpuInc_NoCpu))]
    public void SetupThisCpuIncNoCpu() => Setup(bind: false, () => _perCpu.ThisCpuInc());

    [GlobalSetup(Target = nameof(PerCpu_GetCpuVarIncrement))]
    public void SetupGetCpuVar() => Setup(bind: true, () =>
    {
        using var scope = _perCpu.GetCpuVar();
        scope.Value++;
    });

    [GlobalSetup(Target = nameof(Interlocked_SharedLong))]
    public void SetupShared() => Setup(bind: false, () => Interlocked.Increment(ref _shared.Value));

    [GlobalSetup(Target = nameof(ThreadLocal_Increment))]
    public void SetupThreadLocal() => Setup(bind: false, () => _threadLocal.Value++);

    [GlobalSetup(Target = nameof(ProcessorIdStriped_Increment))]
    public void SetupStriped() => Setup(bind: false, () => StripedIncrement(_stripes));

    [GlobalCleanup]
    public void Cleanup()
    {
        _contender?.Stop();
        _binding?.Dispose();
        ThreadAffinity.Pin(ThreadAffinity.OriginalCores);
        long perCpu = _perCpu.Sum(), stripes = 0;
        foreach (ref var s in _stripes.AsSpan())
        {
            stripes += s.Value;
        }
        _runtime.Dispose();
        Console.WriteLine($"// per-CPU sum {perCpu:N0} (CPU 0: {_perCpu.For(0):N0}), shared {_shared.Value:N0}, stripes {stripes:N0}, bench thread's ThreadLocal {_threadLocal.Value:N0}, contender rounds {_contender?.Rounds ?? 0:N0}");
        if (perCpu + _shared.Value + stripes + _threadLocal.Value == 0)
        {
            throw new InvalidOperationException("no counter moved: the benchmark measured nothing");
        }
    }

    /// <summary>this_cpu_inc() on a task of CPU 0: one locked add on CPU 0's slot.</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public void PerCpu_ThisCpuInc()
    {
        var v = _perCpu;
        for (int i = 0; i < Ops; i++)
        {
            v.ThisCpuInc();
        }
    }

    /// <summary>this_cpu_inc() from a thread of no CPU: the slot of the CPU pinned to the core it runs on.</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public void PerCpu_ThisCpuInc_NoCpu()
    {
        var v = _perCpu;
        for (int i = 0; i < Ops; i++)
        {
            v.ThisCpuInc();
        }
    }

    /// <summary>get_cpu_var(); value++; put_cpu_var(): preempt_disable/enable around a plain increment.</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public void PerCpu_GetCpuVarIncrement()
    {
        var v = _perCpu;
        for (int i = 0; i < Ops; i++)
        {
            using var scope = v.GetCpuVar();
            scope.Value++;
        }
    }

    /// <summary>Interlocked.Increment on one long every thread shares.</summary>
    [Benchmark(OperationsPerInvoke = Ops, Baseline = true)]
    public void Interlocked_SharedLong()
    {
        for (int i = 0; i < Ops; i++)
        {
            Interlocked.Increment(ref _shared.Value);
        }
    }

    /// <summary>ThreadLocal&lt;long&gt;.Value++.</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public void ThreadLocal_Increment()
    {
        var t = _threadLocal;
        for (int i = 0; i < Ops; i++)
        {
            t.Value++;
        }
    }

    /// <summary>Interlocked.Increment on stripe GetCurrentProcessorId() % stripes of a padded array.</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public void ProcessorIdStriped_Increment()
    {
        var stripes = _stripes;
        for (int i = 0; i < Ops; i++)
        {
            StripedIncrement(stripes);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StripedIncrement(PaddedCounter[] stripes) =>
        Interlocked.Increment(ref stripes[(uint)Thread.GetCurrentProcessorId() % (uint)stripes.Length].Value);

    private void Setup(bool bind, Action contenderRound)
    {
        _runtime = Runtime.Boot(new RuntimeOptions());
        _perCpu = new PerCpu<long>(_runtime);
        var benchCpu = _runtime.Cpus[0];
        ThreadAffinity.Pin(benchCpu.Core);
        if (bind)
        {
            _binding = benchCpu.BindCurrentThread();
        }
        if (Threads == 2)
        {
            _contender = new Incrementer(_runtime.Cpus[1 % _runtime.Cpus.Count], bind, contenderRound);
        }
    }

    /// <summary>A thread on another CPU's core (bound to that CPU if asked) running one increment in a loop until stopped.</summary>
    private sealed class Incrementer
    {
        private readonly Thread _thread;
        private volatile bool _stop;
        private long _rounds;

        public Incrementer(VirtualCpu cpu, bool bind, Action round)
        {
            using var started = new ManualResetEventSlim();
            _thread = new Thread(() =>
            {
                ThreadAffinity.Pin(cpu.Core);
                using var binding = bind ? cpu.BindCurrentThread() : null;
                started.Set();
                while (!_stop)
                {
                    round();
                    _rounds++;
                }
            })
            { IsBackground = true, Name = "contender" };
            _thread.Start();
            started.Wait();
        }

        public long Rounds => Volatile.Read(ref _rounds);

        public void Stop()
        {
            _stop = true;
            _thread.Join();
        }
    }
}
